"""One grammar for stores, artifact versions and runs, for every backend.

store    a path or an fsspec URL             ./.artifactkit  s3://team/ak  memory://t
version  NAME, NAME:vN or NAME:ALIAS          chess:v1  r7f3-model:best
run      <store>/runs/<run-id>                s3://team/ak/runs/7f3k2a
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any

from .errors import InvalidInput
from .layout import RUNS, run_prefix
from .names import NAME_RE, RUN_ID_RE, VERSION_RE
from .redact import redact_uri

PACK_OPTION = "pack"  # storage option: pack=false keeps one object per blob (tools that expect them)

DEFAULT_STORE = "./.artifactkit"
_SCHEME_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
_LOOKS_LIKE_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):")


def default_store_uri() -> str:
    return os.environ.get("ARTIFACTKIT_STORE") or DEFAULT_STORE


def scheme(uri: str) -> str | None:
    m = _SCHEME_RE.match(uri)
    return m.group(1).lower() if m else None


def check_store_uri(uri: str) -> None:
    """Refuse a store string that looks like a URL but is not one: `s3:/bucket/x` or `wandb:me/p`
    would otherwise become a local folder named `s3:` and the command would succeed. Whoever
    means such a folder writes `./s3:`."""
    if not uri:
        raise InvalidInput("empty store URI")
    m = _LOOKS_LIKE_SCHEME.match(uri)
    if m is None or scheme(uri) is not None or (os.name == "nt" and len(m.group(1)) == 1):  # C:\ on Windows
        return
    word, rest = m.group(1), uri[m.end() :]
    hint = f" (did you mean {word}://{rest.lstrip('/')}?)" if rest.startswith("/") else ""
    raise InvalidInput(
        f"invalid store URI {uri!r}: {word}: without // is no URL scheme{hint}; "
        f"for a local folder of that name write ./{uri}"
    )


def open_backend(uri: str, storage_options: dict[str, Any] | None = None):
    """The backend for a store URI, from the registry by scheme (backends/base.py); one that
    declares pack_small_blobs gets its small blobs packed (packs.py), unless --storage-option
    pack=false (reading understands both either way)."""
    check_store_uri(uri)
    from .backends.base import backend_factory

    options = dict(storage_options or {})
    pack = options.pop(PACK_OPTION, True)
    backend = backend_factory(scheme(uri))(uri, options)
    if not backend.capabilities.pack_small_blobs:
        return backend
    from .backends.fs import _truthy
    from .packs import PackedBackend

    return PackedBackend(backend, write_packs=_truthy(pack))


def open_folder(path: str | os.PathLike):
    """The backend of a store in a local folder, whatever its name looks like (this machine's
    blob cache): the registry's entry for plain paths, no URL parsing."""
    from .backends.base import backend_factory

    return backend_factory(None)(os.fspath(path), None)


@dataclass(frozen=True)
class Ref:
    """An artifact version reference: a name and an optional version (vN) or alias."""

    name: str
    selector: str | None = None  # "v3", "best", … ; None means latest

    @property
    def version(self) -> int | None:
        return int(self.selector[1:]) if self.selector and VERSION_RE.fullmatch(self.selector) else None

    def __str__(self) -> str:
        return f"{self.name}:{self.selector}" if self.selector else self.name


def parse_ref(text: str) -> Ref:
    name, _, selector = text.partition(":")
    if not NAME_RE.fullmatch(name) or (selector and not NAME_RE.fullmatch(selector)):
        raise InvalidInput(f"invalid artifact reference {text!r}: expected NAME, NAME:vN or NAME:ALIAS")
    return Ref(name, selector or None)


def looks_like_ref(text: str) -> bool:
    """NAME:SELECTOR and not a path or URL (used where an argument may be either)."""
    return scheme(text) is None and ":" in text and "/" not in text and os.sep not in text


def split_run_uri(uri: str) -> tuple[str, str]:
    """'<store>/runs/<id>' -> (store URI, run id)."""
    head, sep, run_id = uri.rstrip("/").rpartition(f"/{RUNS}/")
    if not sep or not RUN_ID_RE.fullmatch(run_id):
        raise InvalidInput(f"invalid run URI {redact_uri(uri)!r}: expected <store>/runs/<run-id>")
    return head or ".", run_id


def run_uri(store_uri: str, run_id: str) -> str:
    return f"{store_uri.rstrip('/')}/{run_prefix(run_id)}"
