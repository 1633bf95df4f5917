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
from .errors import ArtifactkitError
from .hashing import cache_dir, digest_bytes
from .layout import object_key


class BlobCache:
    def __init__(self, root: str | os.PathLike):
        self.backend = LocalBackend(root)

    @property
    def root(self) -> Path:
        return self.backend.root

    def get_many(self, digests: Iterable[str]) -> dict[str, bytes]:
        """The blobs the cache holds intact, by digest; damaged entries are dropped."""
        out: dict[str, bytes] = {}
        damaged = []
        for digest in digests:
            key = object_key(digest)
            try:
                data = self.backend.read(key)
            except ArtifactkitError:  # not cached (or unreadable): it will be downloaded
                continue
            if digest_bytes(data) == digest:
                out[digest] = data
            else:
                damaged.append(key)
        self.backend.delete(damaged)
        return out

    def put_many(self, blobs: Mapping[str, bytes]) -> None:
        """Keep verified blobs. A cache that cannot be written (disk full, read-only) only costs
        future downloads, so it never fails the pull that fills it."""
        try:
            self.backend.write_many([(object_key(d), data) for d, data in blobs.items()])
        except ArtifactkitError:
            pass


def default_blob_cache() -> BlobCache | None:
    """The cache under hashing.cache_dir(); ARTIFACTKIT_CACHE_DIR=off disables it, as it does
    the stat cache."""
    if os.environ.get("ARTIFACTKIT_CACHE_DIR") == "off":
        return None
    return BlobCache(cache_dir() / "blobs")


def wants_cache(backend) -> bool:
    """Remote stores get a cache; a local folder or an in-process memory store would only be copied."""
    return not isinstance(backend, LocalBackend) and getattr(backend, "protocol", None) != "memory"
