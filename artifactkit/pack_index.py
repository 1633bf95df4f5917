"""The pack indexes of a store, and the map they make (as restic's index package).

index/ab/cd…  which blobs a pack holds, where: {"pack": D, "size": N, "blobs": [[digest, offset,
length], …]}, named by the digest of its own bytes. Written after its pack: an index is the commit
point, so a pack without one (a killed upload) is garbage, swept by gc (repack.py).

_Index is one index object (made, or parsed from a store: untrusted, checked field by field);
_BlobMap maps every blob digest to (index, offset, length) in ~8-16 bytes a blob; PackIndex keeps
that map for one store, made from a listing of index/ and packs/ and read anew when asked.
Indexes read from any store are kept in this machine's cache (named by their digest).
"""

from __future__ import annotations

import json
import os
import re
import struct
import time
from array import array
from pathlib import Path
from typing import Any, Iterable, Iterator

from .errors import IntegrityError, NotFound
from .fileio import atomic_write
from .hashing import cache_dir, digest_bytes
from .layout import INDEX, PACKS, digest_of_index_key, digest_of_object_key, digest_of_pack_key, index_key, pack_key

_MAP_TTL = 2.0  # seconds the index map answers existence within one log (until its sync)
_INDEX_MAX = 64 << 20  # bytes of one index object (~1 M blobs): anything larger is refused
_PACK_MAX = 4 << 30  # a pack's size as an index may state it
_ENTRY_MAX = 64 << 20  # one packed blob's length as an index may state it
_DIGEST = re.compile(r"[0-9a-f]{32}\Z")


class PackIndex:
    """Which blobs the packs of one store (`inner`, the backend under the packs) hold, where:
    every usable index mapped. `lock` is its owner's (packs.PackedBackend), held around every
    change, so a reader on another thread sees the map before or after each."""

    def __init__(self, inner, lock) -> None:
        self.inner = inner
        self.lock = lock
        self.indexes: dict[str, _Index] = {}  # index key -> the index (usable ones only)
        self.where = _BlobMap()  # blob digest -> (index, offset, length)
        self.damaged: dict[str, str] = {}  # index key -> why it cannot be read (verify reports it)
        self.dangling: dict[str, tuple[str, _Index]] = {}  # index key -> (why, index): its pack is
        # gone or not whole; made anew by each listing
        self.listed_at = -1e9  # time.monotonic() of the last listing of index/ and packs/
        self.complete = False  # that listing read every index it listed (none vanished meanwhile)

    def forget(self) -> None:
        """The next question is answered from a fresh listing."""
        self.listed_at = -1e9

    def usable(self) -> bool:
        """The last listing read every index there is: a pack none of them names is named by none."""
        return not self.damaged and self.complete

    def named_packs(self) -> set[str]:
        """The packs some index names, usable or not."""
        return {ix.pack for ix in self.indexes.values()} | {ix.pack for _, ix in self.dangling.values()}

    def add(self, indexes: list["_Index"]) -> None:
        """Indexes just written by this process (their packs are there). Under the lock."""
        for ix in indexes:  # each slot written is atomic: a reader on another thread never sees half of one
            self.indexes[index_key(ix.digest)] = ix
            self.where.add([ix])

    def refresh(self, force: bool = False) -> None:
        """List index/ then packs/ (an index is written after its pack, so a listed index's pack
        is listed too), read the indexes not seen yet, and map every blob of every index whose
        pack is there whole. Within _MAP_TTL of the last listing, only if forced. An index gone
        between the listing and its read (a gc replaced it) means listing again (up to 3 times)."""
        with self.lock:
            if not force and time.monotonic() - self.listed_at < _MAP_TTL:
                return
            for _ in range(3):
                self.complete = self._list_and_map()
                if self.complete:
                    break
            self.listed_at = time.monotonic()

    def _list_and_map(self) -> bool:
        """One listing of index/ and packs/, mapped; False if a listed index vanished meanwhile."""
        listed = {i.key: i for i in self.inner.list(INDEX + "/") if digest_of_index_key(i.key)}
        packs = {d: i.size for i in self.inner.list(PACKS + "/") if (d := digest_of_pack_key(i.key))}
        self.damaged = {k: why for k, why in self.damaged.items() if k in listed}
        new = [k for k in listed if k not in self.indexes and k not in self.damaged]
        for key in [k for k in new if listed[k].size > _INDEX_MAX]:
            self.damaged[key] = (
                f"{self.inner.uri}/{key}: index of {listed[key].size} bytes refused (at most {_INDEX_MAX})"
            )
        parsed = {}
        wanted = [k for k in new if k not in self.damaged]
        for key, data in self._index_bytes(wanted):
            try:
                parsed[key] = _Index.parse(self.inner.uri, key, data, listed[key].mtime)
            except IntegrityError as e:
                self.damaged[key] = str(e)
        indexes = {k: ix for k, ix in {**self.indexes, **parsed}.items() if k in listed}
        self.dangling = {}
        for key, ix in indexes.items():
            if ix.pack not in packs:
                self.dangling[key] = (
                    f"{self.inner.uri}/{key}: names {pack_key(ix.pack)}, which is not in the store",
                    ix,
                )
            elif packs[ix.pack] != ix.size:
                self.dangling[key] = (
                    f"{self.inner.uri}/{key}: names {pack_key(ix.pack)} of {ix.size} bytes, "
                    f"but it has {packs[ix.pack]}",
                    ix,
                )
        usable = {k: ix for k, ix in indexes.items() if k not in self.dangling}
        where = self.where if usable.keys() >= self.indexes.keys() else _BlobMap()
        where.add(ix for k, ix in usable.items() if k not in self.indexes or where is not self.where)
        self.where, self.indexes = where, usable
        return all(k in parsed or k in self.damaged for k in wanted)

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

    def locate(self, key: str) -> tuple["_Index", int, int] | None:
        """(index, offset, length) of a packed blob's key, from the map as it is; None otherwise."""
        digest = digest_of_object_key(key)
        return None if digest is None else self.where.get(bytes.fromhex(digest))

    def damage(self) -> list[str]:
        """What in index/ cannot be used (unreadable, invalid, naming a pack that is gone or not
        whole): one line each, for verify. Their blobs are simply not found; nothing wrong is read.
        An index a gc deleted while we listed is not reported."""
        self.refresh(force=True)
        dangling = dict(self.dangling)
        still = self.inner.exists(list(dangling)) if dangling else set()
        return sorted([*self.damaged.values(), *(why for k, (why, _) in dangling.items() if k in still)])


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

    def __init__(
        self,
        digest: str,
        pack: str,
        size: int,
        blobs: "_Blobs | list[tuple[bytes, int, int]]",
        encoded: bytes | None,
        mtime: float | None,
    ):
        blobs = blobs if isinstance(blobs, _Blobs) else _Blobs(blobs)
        self.digest, self.pack, self.size, self.blobs, self.encoded, self.mtime = (
            digest,
            pack,
            size,
            blobs,
            encoded,
            mtime,
        )

    @classmethod
    def make(cls, pack: str, size: int, blobs: list[tuple[bytes, int, int]]) -> "_Index":
        encoded = json.dumps(
            {"pack": pack, "size": size, "blobs": [[d.hex(), o, n] for d, o, n in blobs]}, separators=(",", ":")
        ).encode()
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
        if not (
            isinstance(pack, str)
            and _DIGEST.match(pack)
            and _is_int(size)
            and 0 <= size <= _PACK_MAX
            and isinstance(rows, list)
        ):
            raise IntegrityError(f"{where}: invalid pack index (pack, size or blobs)")
        for row in rows:
            if not (
                isinstance(row, list)
                and len(row) == 3
                and isinstance(row[0], str)
                and _DIGEST.match(row[0])
                and _is_int(row[1])
                and _is_int(row[2])
                and row[1] >= 0
                and 0 <= row[2] <= _ENTRY_MAX
                and row[1] + row[2] <= size
            ):
                raise IntegrityError(
                    f"{where}: invalid blob entry {str(row)[:80]} (digest, offset, length within the pack)"
                )
        blobs = _Blobs((bytes.fromhex(d), offset, length) for d, offset, length in rows)
        return cls(digest_of_index_key(key), pack, size, blobs, None, mtime)  # bytes not kept: 28 B a blob


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)
