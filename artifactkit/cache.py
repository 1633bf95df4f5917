"""This machine's cache of blobs pulled from remote stores.

The cache is a plain local store (its objects/ folder, same layout), shared by every remote store
because blobs are named by their content. Every cached blob is checked against its digest when
read, so a damaged entry costs a download, never wrong bytes. It only grows; deleting the folder
(or running `artifactkit gc --store <cache dir>/blobs`) is always safe.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Mapping

from .backends.local import LocalBackend
from .errors import ArtifactkitError, IntegrityError
from .hashing import NullStatCache, cache_dir
from .store import Store


class BlobCache:
    def __init__(self, root: str | os.PathLike):
        self.store = Store(LocalBackend(root), NullStatCache())

    @property
    def root(self) -> Path:
        return self.store.local_root

    def get_many(self, digests: Iterable[str]) -> dict[str, bytes]:
        """The blobs the cache holds intact, by digest; damaged entries are dropped."""
        out: dict[str, bytes] = {}
        damaged = []
        for digest in digests:
            try:
                out[digest] = self.store.read_blob(digest)
            except IntegrityError:
                damaged.append(digest)
            except ArtifactkitError:  # not cached (or unreadable): it will be downloaded
                continue
        self.store.delete_blobs(damaged)
        return out

    def put_many(self, blobs: Mapping[str, bytes]) -> None:
        """Keep verified blobs. A cache that cannot be written (disk full, read-only) only costs
        future downloads, so it never fails the pull that fills it."""
        try:
            self.store.write_blobs(blobs.items())
        except ArtifactkitError:
            pass


def default_blob_cache() -> BlobCache | None:
    """The cache under hashing.cache_dir(); ARTIFACTKIT_CACHE_DIR=off disables it, as it does
    the stat cache."""
    if os.environ.get("ARTIFACTKIT_CACHE_DIR") == "off":
        return None
    return BlobCache(cache_dir() / "blobs")
