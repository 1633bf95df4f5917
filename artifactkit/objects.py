"""A store's content-addressed objects: blobs, trees (format 2) and flat manifests (format 1).

Each object is immutable, named by the digest of its bytes and checked against it on every read;
writing one the store has already refreshes it instead (touched on a local store), so a concurrent
gc keeps what a caller is about to reference. ObjectStore knows no names, versions or runs: Store
(store.py) builds those on top of it. The store's format marker lives here too, since the first
write into a store (of a blob, a tree or a record) marks it.
"""

from __future__ import annotations

import re
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Iterable, Iterator

from .backends.base import Backend, ObjectInfo
from .errors import AlreadyExists, IntegrityError, InvalidInput, NotFound
from .hashing import HashingReader, digest_bytes, hash_file
from .ingest import refresh
from .layout import FORMAT_KEY, OBJECTS, digest_of_object_key, manifest_key, object_key, tree_key
from .records import check_digest
from .statcache import NullStatCache, StatCache, default_stat_cache
from .trees import Tree, compress_tree, decompress_tree, parse_tree

# The store layout this code writes and the newest it reads (docs/architecture.md, "Formats").
# A store without the marker is format 1 (every store written before the marker existed).
# 2: versions name a root tree (trees.py); format-1 versions (one flat manifest) still read.
# 3: a tree is evidence that its blobs are there (docs/architecture.md, "Commit order and trust"): older gc would not
# keep them.
# 4: small blobs may live in packs (packs.py): older code would not find them. Only a backend
# that writes packs marks a store 4 (Backend.store_format); the others still write 3.
STORE_FORMAT = 4  # the newest this code reads
WRITTEN_FORMAT = Backend.store_format  # what a store of plain blob files is marked (3)
_STREAM_BYTES = 16 << 20  # blobs larger than this are copied between stores in chunks
_FORMAT_TEXT = re.compile(rb'\{"format": ?([1-9][0-9]{0,5})\}\n?\Z')


class ObjectStore:
    """Blobs, trees and manifests by digest over a Backend (see the module docstring)."""

    def __init__(self, backend, stat_cache: StatCache | NullStatCache | None = None):
        self.backend = backend
        self.stat_cache = stat_cache if stat_cache is not None else default_stat_cache()
        self._format: int | None = None  # the marker's format once read (0: no marker yet)

    @property
    def uri(self) -> str:
        """The store as every message and report shows it (credentials removed)."""
        return self.backend.uri

    @property
    def url(self) -> str:
        """The full address, to open this store again (another process, a run URI): never shown."""
        return self.backend.url

    def format(self) -> int:
        """The store's format (1 for a store without the marker); InvalidInput for a store of a
        newer format than this code knows, or a damaged marker. Read once per Store."""
        if self._format is None:
            try:
                data = self.backend.read(FORMAT_KEY)
            except NotFound:
                self._format = 0
            else:
                m = _FORMAT_TEXT.fullmatch(data)
                if m is None:
                    raise InvalidInput(
                        f'{self._where(FORMAT_KEY)}: not a store format marker (expected {{"format": N}}, '
                        f"found {data[:40]!r})"
                    )
                self._format = int(m.group(1))
        if self._format > STORE_FORMAT:
            raise InvalidInput(
                f"{self.uri}: store format {self._format} is newer than this artifactkit reads "
                f"(up to {STORE_FORMAT}); upgrade artifactkit to use this store"
            )
        return self._format or 1

    def _ensure_format(self) -> None:
        """Before the first write: refuse a newer store, and mark the store with the format this
        code writes (never lowering it: a format-N reader reads every older format)."""
        self.format()
        written = self.backend.store_format
        if self._format < written:
            self.backend.write(FORMAT_KEY, b'{"format": %d}\n' % written)
            self._format = written

    @property
    def remote(self) -> bool:
        """Blobs cost a download (worth a local cache): not a local folder, not in-process memory."""
        return self.backend.capabilities.remote

    @property
    def local_root(self) -> Path | None:
        """The folder of a store on this machine's disk, else None (Backend.local_root)."""
        return self.backend.local_root

    def _where(self, key: str) -> str:
        return f"{self.uri}/{key}"

    # -- trees and manifests ------------------------------------------------------------
    def read_tree(self, digest: str) -> Tree:
        """One tree, checked against its digest and validated (trees.py)."""
        return parse_tree(self.tree_bytes(digest), self._where(tree_key(digest)))

    def tree_bytes(self, digest: str) -> bytes:
        """A tree's canonical JSON (stored zlib-compressed), checked against its digest."""
        key = tree_key(check_digest(digest))
        canonical = decompress_tree(self.backend.read(key), self._where(key))
        if digest_bytes(canonical) != digest:
            raise IntegrityError(f"{self._where(key)}: tree bytes do not match their digest")
        return canonical

    def missing_trees(self, digests: Iterable[str]) -> list[str]:
        """The trees this store lacks (one batched check); those it has are refreshed."""
        wanted = list(dict.fromkeys(digests))
        present = refresh(self.backend, [tree_key(check_digest(d)) for d in wanted])
        return [d for d in wanted if tree_key(d) not in present]

    def put_trees(self, trees: list[tuple[str, bytes]]) -> None:
        """Store trees (digest, canonical bytes), children before parents. Existing ones are
        refreshed (touched: a concurrent gc keeps them); the others written. Durable with the
        next sync, which comes before any record references them."""
        for digest, data in trees:
            if digest_bytes(data) != digest:
                raise IntegrityError(f"{self._where(tree_key(digest))}: tree bytes do not match their digest")
        self._ensure_format()
        present = refresh(self.backend, [tree_key(check_digest(d)) for d, _ in trees])
        new = [(tree_key(d), compress_tree(data)) for d, data in trees if tree_key(d) not in present]
        if new:
            # The blobs written so far first: a tree in a store is evidence that its blobs are
            # there (a log trusts the tree of an unchanged folder, treelog.py), even after a crash.
            self.backend.sync()
            self.backend.write_many(new)

    def _manifest_bytes(self, digest: str) -> bytes:
        key = manifest_key(check_digest(digest))
        data = self.backend.read(key)
        if digest_bytes(data) != digest:
            raise IntegrityError(f"{self._where(key)}: manifest bytes do not match their digest")
        return data

    def put_manifest(self, digest: str, canonical: bytes) -> None:
        """Write a manifest (create-or-same: manifests are write-once and named by their digest),
        after making the blobs written so far durable, since it references them. An existing one is
        refreshed (touched), so a concurrent gc keeps it; if a gc took it meanwhile, write again."""
        key = manifest_key(check_digest(digest))
        if digest_bytes(canonical) != digest:
            raise IntegrityError(f"{self._where(key)}: manifest bytes do not match their digest")
        self._ensure_format()
        self.backend.sync()
        for _ in range(2):
            try:
                self.backend.write(key, canonical, create_only=True)
                return
            except AlreadyExists:
                pass  # same name, same bytes
            if refresh(self.backend, [key]):
                return

    # -- blobs ------------------------------------------------------------------------------
    def read_blob(self, digest: str) -> bytes:
        data = self.backend.read(object_key(check_digest(digest)))
        check_blob(self.uri, digest, data)
        return data

    def read_blobs(self, digests: Iterable[str]) -> Iterator[tuple[str, bytes]]:
        """(digest, bytes) for every digest, in any order, concurrently where the backend can;
        each checked against its digest (IntegrityError names the key of a corrupt one)."""
        keys = [object_key(check_digest(d)) for d in dict.fromkeys(digests)]
        for key, data in self.backend.read_many(keys):
            digest = digest_of_object_key(key)
            check_blob(self.uri, digest, data)
            yield digest, data

    def read_blob_to(self, digest: str, path: Path) -> None:
        """Stream one blob into a local file and check it there, in chunks (a large blob is never
        held whole); the caller renames the file into place only if this returns."""
        key = object_key(check_digest(digest))
        self.backend.read_to(key, path)
        if hash_file(path)[0] != digest:
            raise IntegrityError(f"{self._where(key)}: blob is corrupt (content does not match its digest)")

    @contextmanager
    def open_blob(self, digest: str) -> Iterator[BinaryIO]:
        """A readable file of one blob, checked against its digest before it is handed out (a
        large blob is never held whole): a local store's own immutable file, hashed in chunks;
        for other stores a verified temporary copy, removed on exit."""
        local = self.local_blob_path(digest)
        if local is not None:
            if not local.is_file():
                raise NotFound(f"{self._where(object_key(digest))} not found")
            if hash_file(local)[0] != digest:
                raise IntegrityError(
                    f"{self._where(object_key(digest))}: blob is corrupt (content does not match its digest)"
                )
            with local.open("rb") as f:
                yield f
            return
        with tempfile.TemporaryDirectory(prefix="ak-blob-") as tmp:
            path = Path(tmp) / "blob"
            self.read_blob_to(digest, path)
            with path.open("rb") as f:
                yield f

    def forget_listings(self) -> None:
        """A log or push begins: existence is asked of the store afresh, not answered from a
        listing an earlier one made (a long-lived process must not count a blob a gc took since)."""
        self.backend.forget_listings()

    def missing_blobs(self, digests: Iterable[str]) -> list[str]:
        """The digests this store has no blob for, in one batched existence check. Those it has
        are refreshed (ingest.refresh), so a concurrent gc keeps what the caller is about to reuse."""
        wanted = list(dict.fromkeys(digests))
        present = refresh(self.backend, [object_key(check_digest(d)) for d in wanted])
        return [d for d in wanted if object_key(d) not in present]

    def write_blobs(self, items: Iterable[tuple[str, bytes | Path]]) -> None:
        """Store blobs (bytes, or a local file) under digests the caller has verified. They are
        durable once put_manifest (or sync) returns."""
        self.backend.write_many([(object_key(check_digest(d)), data) for d, data in items])

    def copy_blobs(self, src: "ObjectStore", digests: Iterable[str], sizes: dict[str, int] | None = None) -> None:
        """Copy blobs from another store, each verified on the way. One larger than _STREAM_BYTES
        by `sizes` is streamed, one at a time, never held whole (push of a 600 MB file held 635 MB)."""
        digests = list(digests)
        large = {d for d in digests if (sizes or {}).get(d, 0) > _STREAM_BYTES}
        self.write_blobs(list(src.read_blobs(d for d in digests if d not in large)))
        for digest in sorted(large):
            self._copy_large(src, digest)

    def _copy_large(self, src: "ObjectStore", digest: str) -> None:
        key = object_key(check_digest(digest))
        local = src.local_blob_path(digest)
        if local is None:  # a remote source: a verified local copy first, streamed both ways
            with tempfile.TemporaryDirectory(prefix="ak-blob-") as tmp:
                path = Path(tmp) / "blob"
                src.read_blob_to(digest, path)
                self.write_blobs([(digest, path)])
            return
        if not local.is_file():
            raise NotFound(f"{src._where(key)} not found")
        corrupt = f"{src._where(key)}: blob is corrupt (content does not match its digest)"
        self.backend.write_many([(key, HashingReader(local, digest, corrupt))])  # checked before it is named

    def list_blobs(self) -> Iterator[tuple[str, ObjectInfo]]:
        """(digest, size and mtime) of every blob; stray files under objects/ are left out."""
        for info in self.backend.list(OBJECTS + "/"):
            digest = digest_of_object_key(info.key)
            if digest is not None:
                yield digest, info

    def delete_blobs(self, digests: Iterable[str]) -> None:
        self.backend.delete([object_key(check_digest(d)) for d in digests])

    def delete_trees(self, digests: Iterable[str]) -> None:
        self.backend.delete([tree_key(check_digest(d)) for d in digests])

    def local_blob_path(self, digest: str) -> Path | None:
        """The blob's file on this machine's disk (immutable: safe to read in place), if local."""
        root = self.local_root
        return root / object_key(check_digest(digest)) if root is not None else None

    def sync(self) -> None:
        """Make every blob written so far durable (before a record may reference it)."""
        self.backend.sync()

    def refresh(self, keys: list[str]) -> set[str]:
        """The keys the store holds, in one batch; on a local store each is touched (ingest.refresh),
        so a concurrent gc keeps it (treelog: the trees of unchanged folders)."""
        return refresh(self.backend, keys)

    # -- objects as stored, for the maintenance of the store (verify, gc, du: maintenance.py,
    # usage.py), which judges every object itself: nothing here is checked against its key --------
    def list_keys(self, prefix: str) -> Iterator[ObjectInfo]:
        """Every object under `prefix` (stray files and gc's trash names included)."""
        return self.backend.list(prefix)

    def read_unchecked(self, keys: list[str]) -> Iterator[tuple[str, bytes]]:
        """(key, bytes as stored) of each key, in any order: verify hashes them itself."""
        return self.backend.read_many(keys)

    def read_unchecked_to(self, key: str, path: Path) -> None:
        """One object, as stored, streamed into a local file (verify hashes it there)."""
        self.backend.read_to(key, path)

    def delete_keys(self, keys: list[str]) -> None:
        """gc's deletes on a store that is not a local folder (where gc renames files aside)."""
        self.backend.delete(keys)

    def storage_damage(self) -> list[str]:
        """What the backend's own bookkeeping cannot use (unreadable pack indexes), for verify."""
        return self.backend.damage()

    def sweep(self, older_than: float) -> int:
        """After gc: what an interrupted writer left in the backend's own bookkeeping (packs no
        index names), last written before `older_than`. Returns the packs deleted."""
        return self.backend.sweep(older_than)


def check_blob(store_uri: str, digest: str, data: bytes) -> None:
    if digest_bytes(data) != digest:
        raise IntegrityError(f"{store_uri}/{object_key(digest)}: blob is corrupt (content does not match its digest)")
