"""Small blobs packed into larger objects on an object store, as restic does it.

On S3 every small file costs one request (a PUT up, a GET down), so a dataset of small files is
bound by request latency, not bytes (bench/s3_transfer.py: objects of ~1,000 files each moved
~300x faster than one object per file). PackedBackend wraps a remote backend and keeps the
Backend protocol's view of blobs (objects/ab/cd… keys) while storing small ones together:

- packs/ab/cd…  the bytes of many blobs, one after another; named by the digest of the whole.
- index/ab/cd…  which blobs a pack holds, where: {"pack": D, "size": N, "blobs": [[digest,
  offset, length], …]}, named by the digest of its own bytes. Written after its pack: an index
  is the commit point, so a pack without one (a killed upload) is garbage, swept by gc.

Every object is immutable and checked against its key when read; every blob read out of a pack
is still checked against its own digest by the layer above (objects.py), so a damaged pack or
index can make a blob unreadable, never wrong. Deleting blobs (gc) writes a new index without
them and deletes the old one; a pack's bytes go once no index names it, and gc repacks the live
blobs of a pack that is mostly dead.
Blobs above PACK_BLOB_MAX, trees, manifests and records stay objects of their own.
"""

from __future__ import annotations

import json
import os
import struct
from array import array
import re
import threading
import time
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

from .errors import ArtifactkitError, IntegrityError, NotFound
from .fileio import atomic_write
from .hashing import cache_dir, digest_bytes
from .layout import (INDEX, OBJECTS, PACKS, digest_of_index_key, digest_of_object_key, digest_of_pack_key, index_key,
                      object_key, pack_key)
from .backends.base import Backend, Capabilities, ObjectInfo, Source

PACK_BLOB_MAX = 1 << 20  # blobs up to 1 MiB are packed; a larger one is worth its own request
PACK_TARGET = 8 << 20  # a pack is sent once it holds this much
_MERGE_GAP = 256 << 10  # blobs of one pack this close are read in one GET (if the gap is no
# larger than what the range already wants: a subset pull never downloads whole packs for it)
_RANGE_MAX = 16 << 20  # bytes of one range GET
_READ_BATCH_BYTES = 64 << 20  # bytes of ranges in flight at once
_REPACK_MIN = 1 << 20  # gc repacks a pack of at least this size…
_REPACK_LIVE = 0.5  # …once less than this fraction of its bytes is live
_MAP_TTL = 2.0  # seconds the index map answers existence within one log (until its sync)
_INDEX_MAX = 64 << 20  # bytes of one index object (~1 M blobs): anything larger is refused
_PACK_MAX = 4 << 30  # a pack's size as an index may state it
_ENTRY_MAX = 64 << 20  # one packed blob's length as an index may state it
_DIGEST = re.compile(r"[0-9a-f]{32}\Z")


class PackedBackend(Backend):
    """The Backend protocol over `inner` (a backend declaring pack_small_blobs), small blobs in
    packs (module doc). Anything not a blob key passes straight through to `inner`. Safe to share between threads (a training run logs evaluations while its saver thread
    writes checkpoints): one lock guards the pending blobs and the map."""

    def __init__(self, inner, write_packs: bool = True):
        self.inner = inner
        self.write_packs = write_packs
        self._lock = threading.RLock()
        self._packs_deleted = 0  # by delete() since the last sweep() (gc reports both together)
        self._indexes: dict[str, _Index] = {}  # index key -> the index (usable ones only)
        self._where = _BlobMap()  # blob digest -> (index, offset, length)
        self._damage: dict[str, str] = {}  # index key -> why it cannot be read (verify reports it)
        self._dangling: dict[str, tuple[str, _Index]] = {}  # index key -> (why, index): its pack is
        # gone or not whole; made anew by each listing
        self._listed_at = -1e9  # time.monotonic() of the last listing of index/ and packs/
        self._complete = False  # that listing read every index it listed (none vanished meanwhile)
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

    # -- the index map ------------------------------------------------------------------
    def _refresh(self, force: bool = False) -> None:
        """List index/ then packs/ (an index is written after its pack, so a listed index's pack
        is listed too), read the indexes not seen yet, and map every blob of every index whose
        pack is there whole. Within _MAP_TTL of the last listing, only if forced. An index gone
        between the listing and its read (a gc replaced it) means listing again (up to 3 times)."""
        with self._lock:
            if not force and time.monotonic() - self._listed_at < _MAP_TTL:
                return
            for _ in range(3):
                self._complete = self._list_and_map()
                if self._complete:
                    break
            self._listed_at = time.monotonic()

    def _list_and_map(self) -> bool:
        """One listing of index/ and packs/, mapped; False if a listed index vanished meanwhile."""
        listed = {i.key: i for i in self.inner.list(INDEX + "/") if digest_of_index_key(i.key)}
        packs = {d: i.size for i in self.inner.list(PACKS + "/") if (d := digest_of_pack_key(i.key))}
        self._damage = {k: why for k, why in self._damage.items() if k in listed}
        new = [k for k in listed if k not in self._indexes and k not in self._damage]
        for key in [k for k in new if listed[k].size > _INDEX_MAX]:
            self._damage[key] = f"{self.inner.uri}/{key}: index of {listed[key].size} bytes refused (at most {_INDEX_MAX})"
        parsed = {}
        wanted = [k for k in new if k not in self._damage]
        for key, data in self._index_bytes(wanted):
            try:
                parsed[key] = _Index.parse(self.inner.uri, key, data, listed[key].mtime)
            except IntegrityError as e:
                self._damage[key] = str(e)
        indexes = {k: ix for k, ix in {**self._indexes, **parsed}.items() if k in listed}
        self._dangling = {}
        for key, ix in indexes.items():
            if ix.pack not in packs:
                self._dangling[key] = (f"{self.inner.uri}/{key}: names {pack_key(ix.pack)}, which is not in the store", ix)
            elif packs[ix.pack] != ix.size:
                self._dangling[key] = (f"{self.inner.uri}/{key}: names {pack_key(ix.pack)} of {ix.size} bytes, "
                                       f"but it has {packs[ix.pack]}", ix)
        usable = {k: ix for k, ix in indexes.items() if k not in self._dangling}
        where = self._where if usable.keys() >= self._indexes.keys() else _BlobMap()
        where.add(ix for k, ix in usable.items() if k not in self._indexes or where is not self._where)
        self._where, self._indexes = where, usable
        return all(k in parsed or k in self._damage for k in wanted)

    def _index_bytes(self, keys: list[str]) -> Iterator[tuple[str, bytes]]:
        """Each index's bytes: from this machine's cache where it holds them (an index is named by
        its digest, so any copy with the right digest is the index), else read and cached. A cached
        copy that does not match its name is read again; the store's is checked by the caller. One
        deleted since the listing (a gc replaced it) is left out."""
        folder = _index_cache()
        fetch = []
        for key in keys:
            try:
                data = (folder / key).read_bytes() if folder is not None else None
            except OSError:
                data = None
            if data is not None and digest_bytes(data) == digest_of_index_key(key):
                yield key, data
            else:
                fetch.append(key)
        try:
            got = list(self.inner.read_many(fetch))
        except NotFound:
            got = []
            for key in fetch:
                try:
                    got.append((key, self.inner.read(key)))
                except NotFound:
                    pass
        for key, data in got:
            if digest_bytes(data) == digest_of_index_key(key):
                _remember([(key, data)])
            yield key, data

    def _locate(self, key: str) -> tuple["_Index", int, int] | None:
        """(index, offset, length) of a packed blob's key, from the map as it is; None otherwise."""
        digest = digest_of_object_key(key)
        return None if digest is None else self._where.get(bytes.fromhex(digest))

    def damage(self) -> list[str]:
        """What in index/ cannot be used (unreadable, invalid, naming a pack that is gone or not
        whole): one line each, for verify. Their blobs are simply not found; nothing wrong is read.
        An index a gc deleted while we listed is not reported."""
        self._refresh(force=True)
        dangling = dict(self._dangling)
        still = self.inner.exists(list(dangling)) if dangling else set()
        return sorted([*self._damage.values(), *(why for k, (why, _) in dangling.items() if k in still)])

    # -- writing ------------------------------------------------------------------------
    def write(self, key: str, data: bytes, *, create_only: bool = False) -> None:
        self.inner.write(key, data, create_only=create_only)

    def write_many(self, items: Sequence[tuple[str, Source]]) -> None:
        packable = [(key, src, self._packable(key, src)) for key, src in items]  # files read before the lock
        with self._lock:
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
        for ix in indexes:  # each slot written is atomic: a reader on another thread never sees half of one
            self._indexes[index_key(ix.digest)] = ix
            self._where.add([ix])
        for digests in packs:
            for d in digests:
                self._pending_bytes -= len(self._pending.pop(d))

    def sync(self) -> None:
        """Send every pending blob (the records that will reference them come after this)."""
        with self._lock:
            self._send(final=True)
        self.inner.sync()

    def forget_listings(self) -> None:
        """A log or push begins: the map is made again before it answers existence."""
        self._listed_at = -1e9
        self.inner.forget_listings()

    # -- reading ------------------------------------------------------------------------
    def exists(self, keys: Iterable[str]) -> set[str]:
        keys = list(dict.fromkeys(keys))
        if any(digest_of_object_key(k) for k in keys):
            self._refresh()  # a blob gc took meanwhile must not count as there
        with self._lock:
            found = {k for k in keys if self._locate(k) is not None or self._is_pending(k)}
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
        with self._lock:
            pending = {k: self._pending[d] for k in keys if (d := digest_of_object_key(k)) in self._pending}
        yield from pending.items()
        rest = [k for k in dict.fromkeys(keys) if k not in pending]
        for attempt in range(2):
            found = {k: self._locate(k) for k in rest}  # once each: another thread may change the map
            packed = [(k, f) for k, f in found.items() if f is not None]
            loose = [k for k, f in found.items() if f is None]
            try:
                got = self._read_packed(packed)
                got += list(self.inner.read_many(loose))
            except NotFound:
                if attempt or not any(digest_of_object_key(k) for k in rest):
                    raise  # a record that is not there (a tombstone looked for) costs no listing
                self._refresh(force=True)
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
        if digest_of_object_key(key) is None or (self._locate(key) is None and not self._is_pending(key)
                                                 and key in self.inner.exists([key])):
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
        self._refresh(force=True)
        for digest, (ix, _offset, length) in self._where.items():
            key = object_key(digest.hex())
            if key.startswith(prefix) and key not in loose:  # a blob both loose and packed: once
                yield ObjectInfo(key=key, size=length, mtime=ix.mtime)

    # -- deleting -----------------------------------------------------------------------
    def delete(self, keys: Iterable[str]) -> None:
        """Blobs leave every copy: the loose object, and each index naming them, replaced by one
        without them (written first); a pack none of whose blobs is left goes once a fresh
        listing shows no index naming it. Other keys pass through."""
        keys = list(keys)
        with self._lock:
            for key in keys:
                data = self._pending.pop(digest_of_object_key(key) or "", None)
                self._pending_bytes -= len(data) if data is not None else 0
        self.inner.delete(keys)
        doomed = {bytes.fromhex(d) for k in keys if (d := digest_of_object_key(k))}
        if not doomed:
            return
        with self._lock:
            self._refresh(force=True)  # only indexes still there are replaced (another gc may have)
            hit = [(k, ix) for k, ix in self._indexes.items() if any(b[0] in doomed for b in ix.blobs)]
            if not hit:
                return
            kept = [ix.without(doomed) for _, ix in hit]
            self.inner.write_many([(index_key(ix.digest), ix.encoded) for ix in kept if ix.blobs])
            self.inner.delete([k for k, _ in hit])
            empty = {ix.pack for ix in kept if not ix.blobs} - {ix.pack for ix in kept if ix.blobs}
            self._packs_deleted += self._delete_unnamed(empty)

    def _delete_unnamed(self, packs: set[str]) -> int:
        """Delete those of `packs` that no index names, by a fresh listing; none while an index
        cannot be read (it might name them). Returns how many."""
        with self._lock:
            self._refresh(force=True)
            if self._damage or not self._complete:  # an index we could not read might name them
                return 0
            named = {ix.pack for ix in self._indexes.values()} | {ix.pack for _, ix in self._dangling.values()}
            gone = [pack_key(p) for p in packs - named]
            self.inner.delete(gone)
            return len(gone)

    def _repack(self) -> int:
        """Reclaim the bytes of dead blobs (they leave their index, not their pack): a pack of at
        least _REPACK_MIN bytes less than _REPACK_LIVE live is read whole (one GET), its live
        blobs checked against their digests and sent again in new packs, in their old order; once
        a fresh listing shows every one of them in a new usable index, the old indexes and packs
        are deleted (a reader holding the old map finds the blobs anew on its miss). A pack that
        cannot be read or holds a blob that does not check is left for verify to name. Memory: one
        old pack and the pending new one. Returns the packs deleted."""
        if not self.write_packs:
            return 0  # pack=false: never turn packs into one object per blob behind the user's back
        with self._lock:
            self._refresh(force=True)
            if self._damage or not self._complete:
                return 0
            entries: dict[str, dict[bytes, tuple[int, int]]] = {}
            size: dict[str, int] = {}
            for ix in self._indexes.values():
                size[ix.pack] = ix.size
                entries.setdefault(ix.pack, {}).update((d, (o, n)) for d, o, n in ix.blobs)
        moved = set()
        for pack, live in sorted(entries.items()):
            if size[pack] < _REPACK_MIN or sum(n for _, n in live.values()) >= size[pack] * _REPACK_LIVE:
                continue
            try:
                [data] = self.inner.read_ranges([(pack_key(pack), 0, size[pack])])
            except ArtifactkitError:
                continue
            blobs = [(object_key(d.hex()), data[o : o + n]) for d, (o, n) in sorted(live.items(), key=lambda e: e[1])]
            if len(data) == size[pack] and all(digest_bytes(b) == digest_of_object_key(k) for k, b in blobs):
                self.write_many(blobs)
                moved.add(pack)
        if not moved:
            return 0
        self.sync()  # the new packs and their indexes, before anything old goes
        with self._lock:
            self._refresh(force=True)
            elsewhere = {d for ix in self._indexes.values() if ix.pack not in moved for d, _, _ in ix.blobs}
            if self._damage or not self._complete or any(d not in elsewhere for p in moved for d in entries[p]):
                return 0  # a new pack is not (yet) usable: keep the old ones, the next gc tries again
            self.inner.delete([k for k, ix in self._indexes.items() if ix.pack in moved])
            self._listed_at = -1e9
            return self._delete_unnamed(moved)

    def sweep(self, older_than: float) -> int:
        """Delete what an interrupted writer or gc left, last written before `older_than`: packs
        no index names (a killed upload between a pack and its index; listed before the indexes,
        so a pack sent again with its index meanwhile is kept) and indexes naming a pack that is
        gone; first, packs mostly dead are repacked (_repack). Returns the packs deleted, by this
        call and by delete() since the last one (gc's count)."""
        deleted = self._repack()
        old = {d for i in self.inner.list(PACKS + "/")
               if (d := digest_of_pack_key(i.key)) and i.mtime is not None and i.mtime < older_than}
        deleted += self._delete_unnamed(old)
        with self._lock:
            dangling = set(self._dangling)
        self.inner.delete([i.key for i in self.inner.list(INDEX + "/")
                           if i.key in dangling and i.mtime is not None and i.mtime < older_than])
        self._listed_at = -1e9
        deleted, self._packs_deleted = deleted + self._packs_deleted, 0
        return deleted


def _index_cache() -> Path | None:
    """Where indexes read from any store are kept on this machine (None: ARTIFACTKIT_CACHE_DIR=off)."""
    return None if os.environ.get("ARTIFACTKIT_CACHE_DIR") == "off" else cache_dir()


def _remember(indexes: Iterable[tuple[str, bytes]]) -> None:
    """Keep indexes (key, bytes) in this machine's cache."""
    folder = _index_cache()
    if folder is None:
        return
    for key, data in indexes:
        try:
            atomic_write(folder / key, data)
        except OSError:
            return  # a cache that cannot be written costs a read next time, nothing more


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


_ROW = struct.Struct("<16sQI")  # one packed blob: digest, offset, length (28 bytes, no padding)


class _Blobs:
    """The blobs of one index as rows of 28 bytes in one bytes object (16-byte digest, 8-byte
    offset, 4-byte length; as tuples of objects they held ~150 bytes a blob). A lookup reads one
    row: one place in memory. Iterates as (digest, offset, length) tuples made on the way."""

    __slots__ = ("rows",)

    def __init__(self, rows: Iterable[tuple[bytes, int, int]] = ()):
        self.rows = b"".join(_ROW.pack(*row) for row in rows)

    def __len__(self) -> int:
        return len(self.rows) // _ROW.size

    def __iter__(self) -> Iterator[tuple[bytes, int, int]]:
        return _ROW.iter_unpack(self.rows)

    def digest(self, row: int) -> bytes:
        return self.rows[28 * row : 28 * row + 16]


class _BlobMap:
    """Blob digest -> (index, offset, length) of the newest copy, for every usable index: an open
    addressing hash table of 8-byte slots (index number and row in it; 0 is empty) over the
    indexes' own arrays, which hold the digests: 8-16 bytes a blob besides them (a dict held
    ~120). Slots are placed by Python's hash of the digest, keyed per process, so an index of
    digests chosen to collide cannot make the map slow. Nothing is removed from a map: one that
    loses an index is made anew. A slot is written whole (one array item) and a grown table is
    swapped in whole, so a reader on another thread sees the map before or after each change."""

    def __init__(self) -> None:
        self._indexes: list[_Index] = []
        self._slots = array("Q", bytes(8 * 1024))  # a power of two, at most 3/4 full
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def add(self, indexes: Iterable["_Index"]) -> None:
        indexes = list(indexes)
        wanted = self._count + sum(len(ix.blobs) for ix in indexes)
        if wanted * 4 > len(self._slots) * 3:
            self._grow(wanted)  # once, before any is placed
        for ix in indexes:
            number = len(self._indexes)
            self._indexes.append(ix)
            for row in range(len(ix.blobs)):
                self._put(self._slots, (number << 32 | row) + 1)

    def get(self, digest: bytes) -> tuple["_Index", int, int] | None:
        slots = self._slots
        mask = len(slots) - 1
        at = hash(digest) & mask
        while ref := slots[at]:
            ix, row = self._indexes[(ref - 1) >> 32], (ref - 1) & 0xFFFFFFFF
            rows = ix.blobs.rows
            if rows[28 * row : 28 * row + 16] == digest:
                _, offset, length = _ROW.unpack_from(rows, 28 * row)
                return ix, offset, length
            at = (at + 1) & mask
        return None

    def items(self) -> Iterator[tuple[bytes, tuple["_Index", int, int]]]:
        for ref in array("Q", self._slots):  # a copy: the map may grow meanwhile
            if ref:
                ix, row = self._indexes[(ref - 1) >> 32], (ref - 1) & 0xFFFFFFFF
                digest, offset, length = _ROW.unpack_from(ix.blobs.rows, 28 * row)
                yield digest, (ix, offset, length)

    def _put(self, slots: array, ref: int) -> None:
        """Place ref; a digest already there keeps the newest copy (gc sees its age)."""
        indexes = self._indexes
        ix, row = indexes[(ref - 1) >> 32], (ref - 1) & 0xFFFFFFFF
        digest = ix.blobs.rows[28 * row : 28 * row + 16]
        mask = len(slots) - 1
        at = hash(digest) & mask
        while old := slots[at]:
            old_ix, old_row = indexes[(old - 1) >> 32], (old - 1) & 0xFFFFFFFF
            if old_ix.blobs.rows[28 * old_row : 28 * old_row + 16] == digest:
                if (old_ix.mtime or 0) < (ix.mtime or 0):
                    slots[at] = ref
                return
            at = (at + 1) & mask
        slots[at] = ref
        if slots is self._slots:
            self._count += 1

    def _grow(self, wanted: int) -> None:
        size = len(self._slots)
        while wanted * 4 > size * 3:
            size *= 2
        grown = array("Q", bytes(8 * size))
        for ref in self._slots:
            if ref:
                self._put(grown, ref)
        self._slots = grown


class _Index:
    """One index object: a pack's digest and size, and (digest, offset, length) of its blobs."""

    def __init__(self, digest: str, pack: str, size: int, blobs: "_Blobs | list[tuple[bytes, int, int]]",
                 encoded: bytes | None, mtime: float | None):
        blobs = blobs if isinstance(blobs, _Blobs) else _Blobs(blobs)
        self.digest, self.pack, self.size, self.blobs, self.encoded, self.mtime = digest, pack, size, blobs, encoded, mtime

    @classmethod
    def make(cls, pack: str, size: int, blobs: list[tuple[bytes, int, int]]) -> "_Index":
        encoded = json.dumps({"pack": pack, "size": size, "blobs": [[d.hex(), o, n] for d, o, n in blobs]},
                             separators=(",", ":")).encode()
        return cls(digest_bytes(encoded), pack, size, blobs, encoded, time.time())

    def without(self, digests: set[bytes]) -> "_Index":
        return _Index.make(self.pack, self.size, [b for b in self.blobs if b[0] not in digests])

    @classmethod
    def parse(cls, uri: str, key: str, data: bytes, mtime: float | None) -> "_Index":
        """An index read from a store: untrusted. Checked against the key it was read from, and
        every field that becomes a key, an offset or a length, before any of it is used."""
        where = f"{uri}/{key}"
        if len(data) > _INDEX_MAX or digest_bytes(data) != digest_of_index_key(key):
            raise IntegrityError(f"{where}: index bytes do not match their digest")
        try:
            doc = json.loads(data)
            pack, size, rows = doc["pack"], doc["size"], doc["blobs"]
        except (ValueError, KeyError, TypeError, RecursionError):
            raise IntegrityError(f"{where}: not a pack index") from None
        if not (isinstance(pack, str) and _DIGEST.match(pack) and _is_int(size) and 0 <= size <= _PACK_MAX
                and isinstance(rows, list)):
            raise IntegrityError(f"{where}: invalid pack index (pack, size or blobs)")
        for row in rows:
            if not (isinstance(row, list) and len(row) == 3 and isinstance(row[0], str) and _DIGEST.match(row[0])
                    and _is_int(row[1]) and _is_int(row[2]) and row[1] >= 0 and 0 <= row[2] <= _ENTRY_MAX
                    and row[1] + row[2] <= size):
                raise IntegrityError(f"{where}: invalid blob entry {str(row)[:80]} (digest, offset, length within the pack)")
        blobs = _Blobs((bytes.fromhex(d), offset, length) for d, offset, length in rows)
        return cls(digest_of_index_key(key), pack, size, blobs, None, mtime)  # bytes not kept: 28 B a blob


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)
