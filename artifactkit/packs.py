"""Small blobs packed into larger objects on an object store, as restic does it: the writer and
the range reader. The index format and map are pack_index.py; gc's side (dropping blobs,
repacking, sweeping what a killed writer left) is repack.py.

On S3 every small file costs one request (a PUT up, a GET down), so a dataset of small files is
bound by request latency, not bytes (bench/s3_transfer.py: objects of ~1,000 files each moved
~300x faster than one object per file). PackedBackend wraps a backend that declares
pack_small_blobs (uri.open_backend) and keeps the Backend protocol's view of blobs (objects/ab/cd…
keys) while storing small ones together:

- packs/ab/cd…  the bytes of many blobs, one after another; named by the digest of the whole.
- index/ab/cd…  which blobs a pack holds, where (pack_index.py). Written after its pack: an index
  is the commit point, so a pack without one (a killed upload) is garbage, swept by gc.

Every object is immutable and checked against its key when read; every blob read out of a pack
is still checked against its own digest by the layer above (objects.py), so a damaged pack or
index can make a blob unreadable, never wrong. Deleting blobs (gc) writes a new index without
them and deletes the old one; a pack's bytes go once no index names it, and gc repacks the live
blobs of a pack that is mostly dead (repack.py).
Blobs above PACK_BLOB_MAX, trees, manifests and records stay objects of their own.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Iterable, Iterator, Sequence

from . import repack
from .backends.base import Backend, Capabilities, ObjectInfo, Source
from .errors import IntegrityError, NotFound
from .fileio import atomic_write
from .hashing import digest_bytes
from .layout import OBJECTS, digest_of_object_key, index_key, object_key, pack_key
from .pack_index import PackIndex, _Index, _remember

PACK_BLOB_MAX = 1 << 20  # blobs up to 1 MiB are packed; a larger one is worth its own request
PACK_TARGET = 8 << 20  # a pack is sent once it holds this much
_MERGE_GAP = 256 << 10  # blobs of one pack this close are read in one GET (if the gap is no
# larger than what the range already wants: a subset pull never downloads whole packs for it)
_RANGE_MAX = 16 << 20  # bytes of one range GET
_READ_BATCH_BYTES = 64 << 20  # bytes of ranges in flight at once


class PackedBackend(Backend):
    """The Backend protocol over `inner` (a backend declaring pack_small_blobs), small blobs in
    packs (module doc). Anything not a blob key passes straight through to `inner`. Safe to
    share between threads (a training run logs evaluations while its saver thread writes
    checkpoints): one lock guards the pending blobs and the index map."""

    def __init__(self, inner, write_packs: bool = True):
        self.inner = inner
        self.write_packs = write_packs
        self.lock = threading.RLock()
        self.index = PackIndex(inner, self.lock)  # the map of the store's indexes (pack_index.py)
        self._packs_deleted = 0  # by delete() since the last sweep() (gc reports both together)
        self._pending: dict[str, bytes] = {}  # digest -> bytes not yet in a pack sent
        self._pending_bytes = 0

    # -- what the store reads of a backend: the inner one's, but the format and the folder ---
    @property
    def uri(self) -> str:
        return self.inner.uri

    @property
    def url(self) -> str:
        return self.inner.url

    @property
    def protocol(self) -> str:
        return self.inner.protocol

    @property
    def capabilities(self) -> Capabilities:
        return self.inner.capabilities  # read anew: S3 learns its own once it has probed the server

    @property
    def local_root(self) -> None:
        return None  # a packed blob is no file of its own, wherever the packs are

    @property
    def store_format(self) -> int:
        """The format a write through this backend marks the store with (objects.py): 4 where
        packs may be written, so that older artifactkit refuses the store instead of missing them."""
        return 4 if self.write_packs else 3

    def damage(self) -> list[str]:
        """What in index/ cannot be used, one line each, for verify (pack_index.PackIndex.damage)."""
        return self.index.damage()

    # -- writing ------------------------------------------------------------------------
    def write(self, key: str, data: bytes, *, create_only: bool = False) -> None:
        self.inner.write(key, data, create_only=create_only)

    def write_many(self, items: Sequence[tuple[str, Source]]) -> None:
        packable = [(key, src, self._packable(key, src)) for key, src in items]  # files read before the lock
        with self.lock:
            for key, _src, data in packable:
                if data is not None and (digest := digest_of_object_key(key)) not in self._pending:
                    self._pending[digest] = data
                    self._pending_bytes += len(data)
            if self._pending_bytes >= PACK_TARGET:
                self._send(final=False)
        # large blobs (a checkpoint's tensors) outside the lock: another thread's reads go on
        self.inner.write_many([(key, src) for key, src, data in packable if data is None])

    def _packable(self, key: str, src: Source) -> bytes | None:
        if not self.write_packs or digest_of_object_key(key) is None:
            return None
        if isinstance(src, (bytes, bytearray, memoryview)):
            return bytes(src) if len(src) <= PACK_BLOB_MAX else None
        if isinstance(src, Path):
            try:
                if src.stat().st_size <= PACK_BLOB_MAX:
                    return src.read_bytes()
            except OSError:
                return None  # the plain write reports it, naming the file
        return None  # a reader (a large file, streamed)

    def _send(self, final: bool) -> None:
        """Send the pending blobs as packs of ~PACK_TARGET (all of them if final, else only full
        packs), then their indexes: an index never names a pack that is not there. Under the lock."""
        packs: list[list[str]] = []
        digests: list[str] = []
        size = 0
        for digest, data in self._pending.items():
            digests.append(digest)
            size += len(data)
            if size >= PACK_TARGET:
                packs.append(digests)
                digests, size = [], 0
        if digests and final:
            packs.append(digests)
        if not packs:
            return
        made = []
        for digests in packs:
            entries, offset = [], 0
            for d in digests:
                entries.append((bytes.fromhex(d), offset, len(self._pending[d])))
                offset += len(self._pending[d])
            data = b"".join(self._pending[d] for d in digests)
            made.append((digest_bytes(data), data, entries))
        self.inner.write_many([(pack_key(d), data) for d, data, _ in made])
        indexes = [_Index.make(d, len(data), entries) for d, data, entries in made]
        self.inner.write_many([(index_key(ix.digest), ix.encoded) for ix in indexes])
        _remember((index_key(ix.digest), ix.encoded) for ix in indexes)
        self.index.add(indexes)
        for digests in packs:
            for d in digests:
                self._pending_bytes -= len(self._pending.pop(d))

    def sync(self) -> None:
        """Send every pending blob (the records that will reference them come after this)."""
        with self.lock:
            self._send(final=True)
        self.inner.sync()

    def forget_listings(self) -> None:
        """A log or push begins: the map is made again before it answers existence."""
        self.index.forget()
        self.inner.forget_listings()

    def read_tagged(self, key: str) -> tuple[bytes | None, str | None]:
        return self.inner.read_tagged(key)  # records, never packed: the inner store holds them

    def replace(self, key: str, data: bytes, tag: str | None) -> None:
        self.inner.replace(key, data, tag)

    # -- reading ------------------------------------------------------------------------
    def exists(self, keys: Iterable[str]) -> set[str]:
        keys = list(dict.fromkeys(keys))
        if any(digest_of_object_key(k) for k in keys):
            self.index.refresh()  # a blob gc took meanwhile must not count as there
        with self.lock:
            found = {k for k in keys if self.index.locate(k) is not None or self._is_pending(k)}
        return found | self.inner.exists([k for k in keys if k not in found])

    def _is_pending(self, key: str) -> bool:
        return digest_of_object_key(key) in self._pending

    def read(self, key: str) -> bytes:
        return next(self.read_many([key]))[1]

    def read_ranges(self, requests: Sequence[tuple[str, int, int]]) -> list[bytes]:
        return self.inner.read_ranges(requests)  # packs and indexes are the inner store's objects

    def read_many(self, keys: Sequence[str]) -> Iterator[tuple[str, bytes]]:
        """Packed blobs by range, the others as objects. A key the map does not know, or whose
        pack is gone (a gc since the map was made), is looked up again in a fresh listing once."""
        with self.lock:
            pending = {k: self._pending[d] for k in keys if (d := digest_of_object_key(k)) in self._pending}
        yield from pending.items()
        rest = [k for k in dict.fromkeys(keys) if k not in pending]
        for attempt in range(2):
            found = {k: self.index.locate(k) for k in rest}  # once each: another thread may change the map
            packed = [(k, f) for k, f in found.items() if f is not None]
            loose = [k for k, f in found.items() if f is None]
            try:
                got = self._read_packed(packed)
                got += list(self.inner.read_many(loose))
            except NotFound:
                if attempt or not any(digest_of_object_key(k) for k in rest):
                    raise  # a record that is not there (a tombstone looked for) costs no listing
                self.index.refresh(force=True)
                continue
            yield from got
            return

    def _read_packed(self, packed: list[tuple[str, tuple["_Index", int, int]]]) -> list[tuple[str, bytes]]:
        out = [(k, b"") for k, (_, _, length) in packed if length == 0]  # an empty file: nothing to read
        by_pack: dict[str, list[tuple[str, int, int]]] = {}
        for key, (ix, offset, length) in packed:
            if length:
                by_pack.setdefault(ix.pack, []).append((key, offset, length))
        runs = [(pack, run) for pack, wanted in by_pack.items() for run in _runs(wanted)]
        for part in _batches(runs):
            requests = [(pack_key(pack), run[0][1], max(o + n for _, o, n in run)) for pack, run in part]
            for (_, run), (key, start, end), data in zip(part, requests, self.inner.read_ranges(requests)):
                if len(data) != end - start:
                    raise IntegrityError(f"{self.inner.uri}/{key}: pack is shorter than its index says")
                out += [(blob_key, data[offset - start : offset - start + length]) for blob_key, offset, length in run]
        return out

    def read_to(self, key: str, path: Path) -> None:
        if digest_of_object_key(key) is None or (
            self.index.locate(key) is None and not self._is_pending(key) and key in self.inner.exists([key])
        ):
            self.inner.read_to(key, path)
            return
        atomic_write(path, self.read(key))

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        blobs = (OBJECTS + "/").startswith(prefix) or prefix.startswith(OBJECTS + "/")
        loose = set()
        for info in self.inner.list(prefix):
            if blobs and digest_of_object_key(info.key):
                loose.add(info.key)
            yield info
        if not blobs:
            return
        self.index.refresh(force=True)
        for digest, (ix, _offset, length) in self.index.where.items():
            key = object_key(digest.hex())
            if key.startswith(prefix) and key not in loose:  # a blob both loose and packed: once
                yield ObjectInfo(key=key, size=length, mtime=ix.mtime)

    # -- deleting (gc's side: repack.py) -----------------------------------------------------
    def delete(self, keys: Iterable[str]) -> None:
        """Blobs leave every copy: the loose object, and each index naming them (repack.drop_blobs).
        Other keys pass through."""
        keys = list(keys)
        with self.lock:
            for key in keys:
                data = self._pending.pop(digest_of_object_key(key) or "", None)
                self._pending_bytes -= len(data) if data is not None else 0
        self.inner.delete(keys)
        doomed = {bytes.fromhex(d) for k in keys if (d := digest_of_object_key(k))}
        if doomed:
            self._packs_deleted += repack.drop_blobs(self, doomed)

    def sweep(self, older_than: float) -> int:
        """What an interrupted writer or gc left, last written before `older_than`, and packs
        mostly dead repacked (repack.sweep). Returns the packs deleted, by this call and by
        delete() since the last one (gc's count)."""
        deleted = repack.sweep(self, older_than)
        deleted, self._packs_deleted = deleted + self._packs_deleted, 0
        return deleted


def _runs(wanted: list[tuple[str, int, int]]) -> list[list[tuple[str, int, int]]]:
    """Blobs of one pack, by offset, grouped into ranges worth one GET each: a gap is read along
    only if it is small and no larger than what the range already wants."""
    runs: list[list[tuple[str, int, int]]] = []
    start = end = want = 0
    for w in sorted(wanted, key=lambda w: w[1]):
        _key, offset, length = w
        if runs and offset - end <= min(_MERGE_GAP, want) and max(end, offset + length) - start <= _RANGE_MAX:
            runs[-1].append(w)
        else:
            runs.append([w])
            start, end, want = offset, offset, 0
        end, want = max(end, offset + length), want + length
    return runs


def _batches(runs: list) -> Iterator[list]:
    """Ranges in groups of bounded bytes and count, read concurrently one group at a time."""
    part, size = [], 0
    for pack, run in runs:
        span = max(o + n for _, o, n in run) - run[0][1]
        if part and (size + span > _READ_BATCH_BYTES or len(part) >= 64):
            yield part
            part, size = [], 0
        part.append((pack, run))
        size += span
    if part:
        yield part
