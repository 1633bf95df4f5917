"""Options every command shares, and opening the store they name."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from artifactkit.errors import InvalidInput

StoreOpt = Annotated[
    Optional[str],
    typer.Option("--store", help="Store URI: a path or fsspec URL. Default: $ARTIFACTKIT_STORE, else ./.artifactkit"),
]
StorageOpts = Annotated[
    Optional[list[str]],
    typer.Option("--storage-option", "-o", help="key=value passed to the fsspec filesystem (repeatable)"),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object as the last line of stdout")]


def parse_storage_options(pairs: list[str] | None) -> dict[str, object]:
    out: dict[str, object] = {}
    for n, pair in enumerate(pairs or [], 1):
        key, sep, value = pair.partition("=")
        if not sep or not key:
            # never echo the text: a forgotten '=' may leave a secret in it
            raise InvalidInput(f"invalid --storage-option number {n}: expected key=value")
        out[key] = _coerce(value)
    return out


def _coerce(value: str) -> object:
    low = value.lower()
    if low in ("true", "false"):
        return low == "true"
    try:
        return int(value)
    except ValueError:
        return value


def open_store(store: str | None, storage_options: list[str] | None = None, create: bool = False):
    """The store a command names. Only a command that writes the first version (create=True:
    log-dataset, the destination of push) may name a location that holds no store yet."""
    from artifactkit.store import open_store as _open

    return _open(store, parse_storage_options(storage_options), must_exist=not create)
