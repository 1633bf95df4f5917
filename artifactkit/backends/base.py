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

from ..errors import BackendError

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
    # A read crosses a network (a request per object): worth this machine's blob cache (cache.py).
    # False for a local folder and for stores held in this process's memory.
    remote: bool = True


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    mtime: float | None  # seconds since the epoch; None where the system does not say


class Backend(Protocol):
    """What the store asks of a storage system, and all it asks: the layers above never ask which
    class they hold. A backend subclasses this class (explicitly, as typing allows a Protocol) and
    so inherits the defaults of the optional members below (local_root, store_format and the
    methods whose docstring says "Default:"); the others each backend provides."""

    uri: str  # what messages show: credentials and query string removed (redact.redact_uri)
    url: str  # the full address, to open the same store again; may hold credentials: never shown
    protocol: str  # the URL scheme it serves ("file" for a local folder), for messages
    capabilities: Capabilities
    # The folder of a store on this machine's disk, where each key is a file: the store may then
    # use os calls on it (a touch, rename aside and hard link in gc, flock, reading a blob in
    # place). None (the default) everywhere else.
    local_root: Path | None = None
    # The format a write through this backend marks the store with (objects.py): 3, a store of
    # plain blob objects; a backend that may write something older code would miss says more.
    store_format: int = 3

    def read(self, key: str) -> bytes: ...

    def read_many(self, keys: Sequence[str]) -> Iterator[tuple[str, bytes]]:
        """Yield (key, bytes) for every key, in any order; concurrent where the system allows."""
        ...

    def read_ranges(self, requests: Sequence[tuple[str, int, int]]) -> list[bytes]:
        """The bytes [start, end) of each (key, start, end), in order. Default: each object read
        whole and sliced (a backend with ranged reads says so by overriding this)."""
        return [self.read(key)[start:end] for key, start, end in requests]

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

    def read_tagged(self, key: str) -> tuple[bytes | None, str | None]:
        """(the object's bytes, a tag that changes with every write of it, e.g. S3's ETag), or
        (None, None) if there is no such key. Only on a backend whose capabilities say
        conditional_replace (fencing.py's compare-and-swap). Default: not supported."""
        raise BackendError(f"{self.uri}: conditional writes are not supported here")

    def replace(self, key: str, data: bytes, tag: str | None) -> None:
        """Write key only if it still has this tag (None: only if it does not exist), else
        AlreadyExists (changed or created meanwhile) or NotFound (deleted meanwhile). Only with
        conditional_replace. Default: not supported."""
        raise BackendError(f"{self.uri}: conditional writes are not supported here")

    def forget_listings(self) -> None:
        """A log or push begins: answer existence afresh from now on, not from a listing kept
        earlier. Default: nothing (a backend that keeps no listing)."""

    def damage(self) -> list[str]:
        """What of the backend's own bookkeeping cannot be used (packs.py: an unreadable pack
        index), one line each, for verify. Default: none."""
        return []

    def sweep(self, older_than: float) -> int:
        """After gc's deletes: remove what an interrupted writer of the backend's own
        bookkeeping left, last written before `older_than` (packs.py: packs no index names).
        Returns how many packs went. Default: nothing to sweep."""
        return 0


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
