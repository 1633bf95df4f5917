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
them and deletes the old one; a pack's bytes go once no index names it (no repacking yet).
Blobs above PACK_BLOB_MAX, trees, manifests and records stay objects of their own.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

from .errors import IntegrityError
from .fileio import atomic_write
from .hashing import cache_dir, digest_bytes
from .layout import (INDEX, OBJECTS, PACKS, digest_of_index_key, digest_of_object_key, digest_of_pack_key, index_key,
                      object_key, pack_key)
from .backends.base import ObjectInfo, Source

PACK = "pack"  # storage option: pack=false keeps one object per blob (tools that expect them)
PACK_BLOB_MAX = 1 << 20  # blobs up to 1 MiB are packed; a larger one is worth its own request
PACK_TARGET = 8 << 20  # a pack is sent once it holds this much
_MERGE_GAP = 256 << 10  # ranges of one pack closer than this are read in one GET
_INDEX_MAX = 64 << 20  # bytes of one index object (~1 M blobs): anything larger is refused
_SIZE_MAX = 1 << 40
_DIGEST = re.compile(r"[0-9a-f]{32}\Z")


def packed_s3(uri: str, storage_options: dict[str, Any] | None = None):
    """The registry's factory for s3://: an S3Backend whose small blobs go into packs, unless
    --storage-option pack=false (reading understands both either way)."""
    from .backends.fs import _truthy
    from .backends.s3 import S3Backend

    options = dict(storage_options or {})
    pack = options.pop(PACK, True)
    backend = S3Backend(uri, options)
    return PackedBackend(backend, write_packs=_truthy(pack))


class PackedBackend:
    """The Backend protocol over `inner` (an FsspecBackend), small blobs in packs (module doc).
    Anything not a blob key passes straight through; so do attributes (fs, capabilities, …)."""

    store_format = 4  # a store holding packs: older artifactkit must refuse it (objects.py)

    def __init__(self, inner, write_packs: bool = True):
        self.inner = inner
        self.write_packs = write_packs
        self._lock = threading.Lock()
        self._where: dict[bytes, tuple[int, int, int]] | None = None  # blob -> (index no, offset, length)
        self._indexes: list[_Index] = []
        self._pending: list[tuple[str, bytes]] = []  # (digest, bytes) not yet in a pack sent
        self._pending_bytes = 0
        self._pending_digests: set[bytes] = set()

    def __getattr__(self, name: str):
        return getattr(self.inner, name)

    # -- the index ------------------------------------------------------------------------
    def _located(self) -> dict[bytes, tuple[int, int, int]]:
        """blob digest -> where it is, from every index of the store (read once: indexes are
        immutable; those this process writes are added as it writes them)."""
        with self._lock:
            if self._where is None:
                where: dict[bytes, tuple[int, int, int]] = {}
                infos = {i.key: i for i in self.inner.list(INDEX + "/") if digest_of_index_key(i.key)}
                for key, data in self._index_bytes(list(infos)):
                    index = _Index.parse(self.inner.uri, key, data, infos[key].mtime)
                    self._indexes.append(index)
                    number = len(self._indexes) - 1
                    for digest, offset, length in index.blobs:
                        where[digest] = (number, offset, length)
                self._where = where
            return self._where

    def _index_bytes(self, keys: list[str]) -> Iterator[tuple[str, bytes]]:
        """Each index's bytes: from this machine's cache where it holds them (an index is named by
        its digest, so any copy with the right digest is the index), else read and cached. A cached
        copy that does not match its name is read again; the store's is checked by the caller."""
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
        for key, data in self.inner.read_many(fetch):
            if digest_bytes(data) == digest_of_index_key(key):
                _remember([(key, data)])
            yield key, data

    def _locate(self, key: str) -> tuple[int, int, int] | None:
        """(index number, offset, length) of a packed blob's key; None for anything else."""
        digest = digest_of_object_key(key)
        return None if digest is None else self._located().get(bytes.fromhex(digest))

    # -- writing ------------------------------------------------------------------------
    def write(self, key: str, data: bytes, *, create_only: bool = False) -> None:
        self.inner.write(key, data, create_only=create_only)

    def write_many(self, items: Sequence[tuple[str, Source]]) -> None:
        loose = []
        for key, src in items:
            data = self._packable(key, src)
            if data is None:
                loose.append((key, src))
                continue
            digest = digest_of_object_key(key)
            if bytes.fromhex(digest) in self._pending_digests:
                continue
            self._pending.append((digest, data))
            self._pending_digests.add(bytes.fromhex(digest))
            self._pending_bytes += len(data)
        self.inner.write_many(loose)
        if self._pending_bytes >= PACK_TARGET:
            self._send(final=False)

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
        packs), then their indexes: an index never names a pack that is not there."""
        packs: list[tuple[bytes, list[tuple[bytes, int, int]]]] = []
        body: list[bytes] = []
        entries: list[tuple[bytes, int, int]] = []
        size = 0
        rest: list[tuple[str, bytes]] = []
        for i, (digest, data) in enumerate(self._pending):
            entries.append((bytes.fromhex(digest), size, len(data)))
            body.append(data)
            size += len(data)
            if size >= PACK_TARGET:
                packs.append((b"".join(body), entries))
                body, entries, size = [], [], 0
        if entries:
            if final:
                packs.append((b"".join(body), entries))
            else:
                rest = self._pending[len(self._pending) - len(entries):]
        if not packs:
            return
        named = [(digest_bytes(data), data, entries) for data, entries in packs]
        self.inner.write_many([(pack_key(d), data) for d, data, _ in named])
        indexes = [_Index.make(d, len(data), entries) for d, data, entries in named]
        self.inner.write_many([(index_key(ix.digest), ix.encoded) for ix in indexes])
        _remember(indexes)
        with self._lock:
            if self._where is not None:
                for index in indexes:
                    self._indexes.append(index)
                    for digest, offset, length in index.blobs:
                        self._where[digest] = (len(self._indexes) - 1, offset, length)
        self._pending = rest
        self._pending_bytes = sum(len(d) for _, d in rest)
        self._pending_digests = {bytes.fromhex(d) for d, _ in rest}

    def sync(self) -> None:
        """Send every pending blob (the records that will reference them come after this)."""
        self._send(final=True)
        self.inner.sync()

    # -- reading ------------------------------------------------------------------------
    def exists(self, keys: Iterable[str]) -> set[str]:
        keys = list(dict.fromkeys(keys))
        found = {k for k in keys if self._locate(k) is not None or self._is_pending(k)}
        return found | self.inner.exists([k for k in keys if k not in found])

    def _is_pending(self, key: str) -> bool:
        digest = digest_of_object_key(key)
        return digest is not None and bytes.fromhex(digest) in self._pending_digests

    def read(self, key: str) -> bytes:
        return next(self.read_many([key]))[1]

    def read_many(self, keys: Sequence[str]) -> Iterator[tuple[str, bytes]]:
        keys = list(keys)
        pending = dict(self._pending) if self._pending else {}
        by_pack: dict[int, list[tuple[str, int, int]]] = {}
        loose = []
        for key in keys:
            digest = digest_of_object_key(key)
            if digest is not None and digest in pending:
                yield key, pending[digest]
                continue
            found = self._located().get(bytes.fromhex(digest)) if digest is not None else None
            if found is None:
                loose.append(key)
            else:
                by_pack.setdefault(found[0], []).append((key, found[1], found[2]))
        yield from self.inner.read_many(loose)
        runs = [(number, run) for number, wanted in by_pack.items() for run in _runs(wanted)]
        for i in range(0, len(runs), 64):  # 64 ranges (≤ a few packs' bytes each) in flight
            part = runs[i : i + 64]
            requests = [(pack_key(self._indexes[n].pack), run[0][1], run[-1][1] + run[-1][2]) for n, run in part]
            for (n, run), (key, start, end), data in zip(part, requests, self.inner.read_ranges(requests)):
                if len(data) != end - start:
                    raise IntegrityError(f"{self.inner.uri}/{key}: pack is shorter than its index "
                                         f"{index_key(self._indexes[n].digest)} says")
                for blob_key, offset, length in run:
                    yield blob_key, data[offset - start : offset - start + length]

    def read_to(self, key: str, path: Path) -> None:
        if self._locate(key) is None and not self._is_pending(key):
            self.inner.read_to(key, path)
            return
        atomic_write(path, self.read(key))

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        yield from self.inner.list(prefix)
        if not (OBJECTS + "/").startswith(prefix) and not prefix.startswith(OBJECTS + "/"):
            return
        located = self._located()
        for digest, (number, _offset, length) in located.items():
            key = object_key(digest.hex())
            if key.startswith(prefix):
                yield ObjectInfo(key=key, size=length, mtime=self._indexes[number].mtime)

    # -- deleting -----------------------------------------------------------------------
    def delete(self, keys: Iterable[str]) -> None:
        """Blobs in packs leave their index: each index naming one is replaced by one without it
        (written first), and a pack goes once no index names it. Other keys pass through."""
        keys = list(keys)
        gone = {k for k in keys if self._is_pending(k)}
        if gone:  # not sent yet: they are simply not sent
            self._pending = [(d, b) for d, b in self._pending if object_key(d) not in gone]
            self._pending_digests = {bytes.fromhex(d) for d, _ in self._pending}
            self._pending_bytes = sum(len(b) for _, b in self._pending)
        doomed: dict[int, set[bytes]] = {}
        loose = []
        for key in keys:
            found = self._locate(key)
            if found is None:
                loose.append(key)
            else:
                doomed.setdefault(found[0], set()).add(bytes.fromhex(digest_of_object_key(key)))
        self.inner.delete(loose)
        if not doomed:
            return
        replaced = [self._indexes[n] for n in doomed]
        kept = [ix.without(doomed[n]) for n, ix in zip(doomed, replaced)]
        self.inner.write_many([(index_key(ix.digest), ix.encoded) for ix in kept if ix.blobs])
        self.inner.delete([index_key(ix.digest) for ix in replaced])
        still_named = {ix.pack for ix in self._indexes if ix not in replaced} | {ix.pack for ix in kept if ix.blobs}
        self.inner.delete([pack_key(ix.pack) for ix in replaced if ix.pack not in still_named])
        with self._lock:
            self._where = None  # read again on next use
            self._indexes = []

    def sweep(self, older_than: float) -> int:
        """Delete packs no index names, last written before `older_than` (a pack whose index was
        never written: a killed upload). Returns how many."""
        named = {ix.pack for ix in self._indexes_now()}
        orphans = [i.key for i in self.inner.list(PACKS + "/")
                   if (d := digest_of_pack_key(i.key)) and d not in named and i.mtime is not None and i.mtime < older_than]
        self.inner.delete(orphans)
        return len(orphans)

    def _indexes_now(self) -> list["_Index"]:
        with self._lock:
            self._where, self._indexes = None, []
        self._located()
        return list(self._indexes)


def _index_cache() -> Path | None:
    """Where indexes read from any store are kept on this machine (None: ARTIFACTKIT_CACHE_DIR=off)."""
    return None if os.environ.get("ARTIFACTKIT_CACHE_DIR") == "off" else cache_dir()


def _remember(indexes: Iterable) -> None:
    """Keep indexes (key, bytes) or _Index objects in this machine's cache."""
    folder = _index_cache()
    if folder is None:
        return
    for item in indexes:
        key, data = (index_key(item.digest), item.encoded) if isinstance(item, _Index) else item
        try:
            atomic_write(folder / key, data)
        except OSError:
            return  # a cache that cannot be written costs a read next time, nothing more


def _runs(wanted: list[tuple[str, int, int]]) -> list[list[tuple[str, int, int]]]:
    """Blobs of one pack, by offset, grouped into ranges worth one GET each."""
    wanted = sorted(wanted, key=lambda w: w[1])
    runs = [[wanted[0]]]
    for w in wanted[1:]:
        last = runs[-1][-1]
        if w[1] - (last[1] + last[2]) <= _MERGE_GAP:
            runs[-1].append(w)
        else:
            runs.append([w])
    return runs


class _Index:
    """One index object: a pack's digest and size, and (digest, offset, length) of its blobs."""

    def __init__(self, digest: str, pack: str, size: int, blobs: list[tuple[bytes, int, int]],
                 encoded: bytes, mtime: float | None):
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
        except (ValueError, KeyError, TypeError):
            raise IntegrityError(f"{where}: not a pack index") from None
        if not (isinstance(pack, str) and _DIGEST.match(pack) and _is_int(size) and 0 <= size <= _SIZE_MAX
                and isinstance(rows, list)):
            raise IntegrityError(f"{where}: invalid pack index (pack, size or blobs)")
        blobs = []
        for row in rows:
            if not (isinstance(row, list) and len(row) == 3 and isinstance(row[0], str) and _DIGEST.match(row[0])
                    and _is_int(row[1]) and _is_int(row[2]) and row[1] >= 0 and row[2] >= 0 and row[1] + row[2] <= size):
                raise IntegrityError(f"{where}: invalid blob entry {str(row)[:80]} (digest, offset, length within the pack)")
            blobs.append((bytes.fromhex(row[0]), row[1], row[2]))
        return cls(digest_of_index_key(key), pack, size, blobs, data, mtime)


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)
