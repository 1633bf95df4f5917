"""The Backend protocol: bytes by key, with declared capabilities.

Keys are relative POSIX paths ("objects/ab/cdef…"). Backends raise only artifactkit's NotFound,
AlreadyExists and BackendError, and every message names the store URI and the key.

Backends are found by URL scheme in one registry (below), as fsspec finds its filesystems.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Protocol, Sequence, Union

Source = Union[bytes, memoryview, Path]  # what write_many accepts: bytes in hand, or a local file
# (every backend also streams from a hashing.HashingReader, calling its check() before the object
# becomes visible under its key)


@dataclass(frozen=True)
class Capabilities:
    atomic_create: bool  # create_only writes are exclusive even across processes and machines
    atomic_replace: bool  # a plain write replaces the old value in one step (readers never see half)
    # Each object costs a request, so small blobs travel in packs (packs.py). Declared by the
    # backend; the store is wrapped where it is opened (uri.open_backend), so a new object-store
    # backend gets packs by saying so here, and nothing below asks which backend it holds.
    pack_small_blobs: bool = False
    # read_tagged/replace exist: a write conditional on the object's current ETag (If-Match, or
    # If-None-Match: * where absent), refused if another writer changed it in between. A run
    # holder's fenced writes are compare-and-swaps on such a backend (fencing.py).
    conditional_replace: bool = False


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    mtime: float | None  # seconds since the epoch; None where the system does not say


class Backend(Protocol):
    uri: str  # what messages show: credentials and query string removed (redact.redact_uri)
    url: str  # the full address, to open the same store again; may hold credentials: never shown
    capabilities: Capabilities

    def read(self, key: str) -> bytes: ...

    def read_many(self, keys: Sequence[str]) -> Iterator[tuple[str, bytes]]:
        """Yield (key, bytes) for every key, in any order; concurrent where the system allows."""
        ...

    def read_to(self, key: str, path: Path) -> None:
        """Stream one object into a local file (for objects too large to hold in memory)."""
        ...

    def write(self, key: str, data: bytes, *, create_only: bool = False) -> None:
        """Write one object durably. create_only raises AlreadyExists if the key is taken."""
        ...

    def write_many(self, items: Sequence[tuple[str, Source]]) -> None:
        """Write many immutable objects (blobs); durability comes with the next sync()."""
        ...

    def exists(self, keys: Iterable[str]) -> set[str]:
        """The subset of keys that exist, in one batched check."""
        ...

    def list(self, prefix: str) -> Iterator[ObjectInfo]: ...

    def delete(self, keys: Iterable[str]) -> None: ...

    def sync(self) -> None:
        """Make everything written so far durable before records that reference it are written."""
        ...

    def forget_listings(self) -> None:
        """A log or push begins: answer existence afresh from now on, not from a listing kept
        earlier (a no-op for a backend that keeps none)."""
        ...


# -- the registry ---------------------------------------------------------------------------
# scheme -> "module:callable" (or the callable), imported only when a store of that scheme is
# opened, so a local store never imports fsspec or s3fs. The callable takes (uri, storage_options)
# and returns a Backend. A plain path has no scheme and is served as "file". Every other scheme
# goes to the generic fsspec backend, where fsspec's own registry accepts or refuses it.
Factory = Callable[[str, "dict[str, Any] | None"], Backend]
_FSSPEC = "artifactkit.backends.fs:FsspecBackend"
_REGISTRY: dict[str, str | Factory] = {
    "file": "artifactkit.backends.local:open_local",
    "s3": "artifactkit.backends.s3:S3Backend",
    "s3a": "artifactkit.backends.s3:S3Backend",
}


def register_backend(scheme: str, factory: str | Factory) -> None:
    """Serve `scheme://` stores with `factory` ("module:callable" or a callable)."""
    _REGISTRY[scheme.lower()] = factory


def backend_factory(scheme: str | None) -> Factory:
    """The factory for a URL scheme (None: a local path), imported on first use."""
    target = _REGISTRY.get((scheme or "file").lower(), _FSSPEC)
    if not isinstance(target, str):
        return target
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)
