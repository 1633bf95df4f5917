"""This machine's cache of blobs pulled from remote stores.

The cache is a plain local store (its objects/ folder, same layout), shared by every remote store
because blobs are named by their content. Every cached blob is checked against its digest when
read, so a damaged entry costs a download, never wrong bytes. Deleting the folder is always safe.

It is capped (DEFAULT_MAX_BYTES, or $ARTIFACTKIT_CACHE_MAX_BYTES, or max_bytes=) with
least-recently-used eviction: a blob's mtime is its last use (a hit touches it), and after a
write that takes the cache over its cap the oldest blobs go until it is under. The size is counted
once per BlobCache (one walk of the folder) and kept up to date as blobs are written; eviction
walks the folder again, so several processes sharing the cache converge on the cap.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Mapping

from .errors import ArtifactkitError, IntegrityError, InvalidInput
from .hashing import cache_dir
from .statcache import NullStatCache
from .store import Store
from .uri import open_folder

DEFAULT_MAX_BYTES = 5_000_000_000
MAX_BYTES_ENV = "ARTIFACTKIT_CACHE_MAX_BYTES"


def max_bytes_from_env() -> int:
    """The cap: $ARTIFACTKIT_CACHE_MAX_BYTES (bytes, a whole number) or DEFAULT_MAX_BYTES."""
    text = os.environ.get(MAX_BYTES_ENV, "").strip()
    if not text:
        return DEFAULT_MAX_BYTES
    if not text.isdigit():
        raise InvalidInput(f"${MAX_BYTES_ENV}: expected a number of bytes (e.g. 5000000000), got {text!r}")
    return int(text)


class BlobCache:
    def __init__(self, root: str | os.PathLike, max_bytes: int | None = None):
        self.store = Store(open_folder(root), NullStatCache())
        self.max_bytes = max_bytes_from_env() if max_bytes is None else max_bytes
        if self.max_bytes < 0:
            raise InvalidInput(f"blob cache max_bytes: expected 0 or more, got {self.max_bytes}")
        self._size: int | None = None  # bytes held, counted on first write

    @property
    def root(self) -> Path:
        return self.store.local_root

    def size(self) -> int:
        """Bytes of the blobs held now (one walk of the folder)."""
        return sum(info.size for _, info in self.store.list_blobs())

    def get_many(self, digests: Iterable[str]) -> dict[str, bytes]:
        """The blobs the cache holds intact, by digest; damaged entries are dropped. Each hit is
        touched: its mtime says it was used now."""
        out: dict[str, bytes] = {}
        damaged = []
        for digest in digests:
            try:
                out[digest] = self.store.read_blob(digest)
            except IntegrityError:
                damaged.append(digest)
                continue
            except ArtifactkitError:  # not cached (or unreadable): it will be downloaded
                continue
            _touch(self.store.local_blob_path(digest))
        self.store.delete_blobs(damaged)
        return out

    def put_many(self, blobs: Mapping[str, bytes]) -> None:
        """Keep verified blobs, then evict the least recently used while over the cap. A cache
        that cannot be written (disk full, read-only) only costs future downloads, so it never
        fails the pull that fills it."""
        try:
            if self._size is None:
                self._size = self.size()
            self.store.write_blobs(blobs.items())
            self._size += sum(len(b) for b in blobs.values())
            if self._size > self.max_bytes:
                self._size = self.evict()
        except (ArtifactkitError, OSError):
            pass

    def evict(self) -> int:
        """Delete the least recently used blobs until the cache holds at most max_bytes; returns
        the bytes left."""
        blobs = sorted(self.store.list_blobs(), key=lambda item: (item[1].mtime or 0.0, item[0]))
        held = sum(info.size for _, info in blobs)
        doomed = []
        for digest, info in blobs:
            if held <= self.max_bytes:
                break
            doomed.append(digest)
            held -= info.size
        self.store.delete_blobs(doomed)
        return held


def _touch(path: Path | None) -> None:
    try:
        if path is not None:
            os.utime(path)
    except OSError:
        pass  # recency is a hint: a cache we cannot touch still serves


def default_blob_cache() -> BlobCache | None:
    """The cache under hashing.cache_dir(); ARTIFACTKIT_CACHE_DIR=off disables it, as it does
    the stat cache."""
    if os.environ.get("ARTIFACTKIT_CACHE_DIR") == "off":
        return None
    return BlobCache(cache_dir() / "blobs")
