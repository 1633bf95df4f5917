"""From a folder or a dict of files to manifest entries and uploaded blobs, reading each file once.

Files are read, hashed and (when the store lacks them) written in batches, so memory stays bounded
and a remote store sees batched existence checks and concurrent uploads. Files above _STREAM_BYTES
are never held whole: hashed in chunks, then streamed into a local store through a HashingReader.

Two rules keep a store whole (docs/invariants.md):
- the bytes written under a digest are hashed on the way (small files: the very bytes hashed;
  streamed files: HashingReader), so a stale stat-cache entry can never name a blob wrongly;
- every digest of the new version is checked against the store in batches (none is assumed
  present because the previous version had it), and on a local store the check is a touch
  (refresh): a concurrent gc then sees the blob as recently used and spares it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Callable, Iterable, Mapping

from .errors import InvalidInput
from .hashing import HashingReader, digest_bytes, hash_file, read_file
from .layout import object_key
from .names import check_log_path
from .records import Entry
from .statcache import NullStatCache, StatCache

Progress = Callable[[int, "int | None"], None]  # (bytes just processed, total bytes or None if unknown)
_BATCH_BYTES = 64 << 20
_BATCH_FILES = 1024
_STREAM_BYTES = 16 << 20  # larger files are hashed and copied in chunks, never read whole


@dataclass
class Candidate:
    path: str  # manifest path
    source: bytes | str  # bytes in hand, or a local file path (os-level strings: pathlib is slow here)
    stat: os.stat_result | None = None
    meta: dict | None = None  # stored in the manifest entry (e.g. a tensor's dtype and shape)

    @property
    def size(self) -> int:
        return self.stat.st_size if self.stat is not None else len(self.source)


@dataclass
class IngestResult:
    entries: list[Entry] = field(default_factory=list)
    uploaded_files: int = 0
    uploaded_bytes: int = 0


def candidates_from_mapping(
    files: Mapping[str, bytes | str | os.PathLike], metas: Mapping[str, dict] | None = None
) -> list[Candidate]:
    out = []
    metas = metas or {}
    for path, source in sorted(files.items()):
        if isinstance(source, (bytes, bytearray, memoryview)):
            out.append(Candidate(path=check_log_path(path), source=bytes(source), meta=metas.get(path)))
        else:
            p = os.fspath(source)
            try:
                out.append(Candidate(path=check_log_path(path), source=p, stat=os.stat(p)))
            except OSError as e:
                raise InvalidInput(f"cannot read {p}: {e.strerror or e}") from e
    if not out:
        raise InvalidInput("no files to log")
    return out


def ingest(
    backend,
    candidates: Iterable[Candidate],
    stat_cache: StatCache | NullStatCache,
    progress: Progress | None = None,
) -> IngestResult:
    """Hash every candidate; make sure the store holds every blob (refreshing those it has,
    uploading the others, hashed on the way)."""
    candidates = list(candidates)
    ingestor = Ingestor(backend, stat_cache, progress, sum(c.size for c in candidates))
    for cand in candidates:
        digest = ingestor.add(cand)
        # the path was checked when the candidate was made, the digest is ours
        ingestor.result.entries.append(Entry.checked_already(cand.path, digest, cand.size, cand.meta))
    return ingestor.finish()


_SEEN_MAX = 100_000  # digests remembered as handled (a repeat past this costs one more check)


class Ingestor:
    """Files in, blobs in the store: add() hashes a file (or takes a digest known for it) and
    queues its blob; every batch of up to 1024 files / 64 MB gets one existence check (a touch on
    a local store) and the missing blobs are written. finish() handles the last batch. One
    Ingestor serves a whole log, so batches span folders (one listing, not a HEAD per file, on S3)."""

    def __init__(
        self, backend, stat_cache: StatCache | NullStatCache, progress: Progress | None = None, total: int | None = None
    ):
        self.backend, self.cache, self.progress, self.total = backend, stat_cache, progress, total
        self.result = IngestResult()
        self._seen: set[str] = set()  # digests already handled by this log
        self._batch: dict[str, Candidate] = {}  # digest -> a candidate holding its bytes
        self._held: dict[str, bytes] = {}  # digest -> bytes read while hashing (small files only)
        self._batch_bytes = 0

    def add(self, cand: Candidate, digest: str | None = None) -> str:
        """The file's digest (hashed, from the stat cache, or the one given: a re-used tree's,
        checked against the bytes if the blob must be uploaded); its blob joins the batch."""
        data = None
        if digest is None:
            digest, data = _digest(cand, self.cache)
        if digest not in self._seen and digest not in self._batch:
            self._batch[digest] = cand
            if data is not None:
                self._held[digest] = data
                self._batch_bytes += cand.size
        if self.progress:
            self.progress(cand.size, self.total)
        if self._batch_bytes >= _BATCH_BYTES or len(self._batch) >= _BATCH_FILES:
            self.flush()
        return digest

    def flush(self) -> None:
        """Check and write the blobs queued so far."""
        _flush(self.backend, self._batch, self._held, self.cache, self.result)
        if len(self._seen) > _SEEN_MAX:
            self._seen.clear()
        self._seen.update(self._batch)
        self._batch, self._held, self._batch_bytes = {}, {}, 0

    def finish(self) -> IngestResult:
        self.flush()
        self.cache.flush()
        return self.result


def _digest(cand: Candidate, cache) -> tuple[str, bytes | None]:
    """(digest, bytes read or None). A stat-cache hit reads nothing; a large file is streamed."""
    if isinstance(cand.source, bytes):
        return digest_bytes(cand.source), cand.source
    key = _absolute(cand.source)
    hit = cache.lookup(key, cand.stat)
    if hit is not None:
        return hit, None
    if cand.size > _STREAM_BYTES:
        digest, size = hash_file(cand.source)
        data = None
    else:
        data = read_file(cand.source, cand.size)
        digest, size = digest_bytes(data), len(data)
    if size != cand.stat.st_size:
        raise InvalidInput(f"{cand.source} changed while it was being logged")
    cache.remember(key, cand.stat, digest)
    return digest, data


def _absolute(path: str) -> str:
    """os.path.abspath(path) (the stat cache's key), without its cost for a path that is already
    absolute and normal, as a folder log's are (4 us a file: a tenth of logging a 1 kB file)."""
    if path[:1] == "/" and path[-1:] != "/" and "//" not in path and "/." not in path:
        return path
    return os.path.abspath(path)


def refresh(backend, keys: list[str]) -> set[str]:
    """The keys the store holds, in one batch. On a local store each is touched (its mtime set to
    now), so a gc running at the same time sees it as just used and keeps it (maintenance.gc);
    object stores have no touch, there gc re-reads the version records instead."""
    if backend.local_root is None:
        return backend.exists(keys)
    present = set()
    root = backend.uri
    for key in keys:
        try:
            os.utime(f"{root}/{key}")
            present.add(key)
        except FileNotFoundError:
            pass
    return present


def _flush(backend, batch: dict[str, Candidate], held: dict[str, bytes], cache, result: IngestResult) -> None:
    if not batch:
        return
    present = refresh(backend, [object_key(d) for d in batch])
    missing = [(d, c) for d, c in batch.items() if object_key(d) not in present]
    backend.write_many([(object_key(d), _source(backend, d, c, held.get(d), cache)) for d, c in missing])
    result.uploaded_files += len(missing)
    result.uploaded_bytes += sum(c.size for _, c in missing)


def _source(backend, digest: str, cand: Candidate, data: bytes | None, cache):
    """What to write under `digest`: bytes whose digest it is, or a reader checked while copied.
    A stat-cache hit that no longer matches the file is dropped and the log refused."""
    if data is not None:
        return data  # the very bytes that were hashed
    path = cand.source
    if cand.size > _STREAM_BYTES:
        return HashingReader(path, digest)
    data = read_file(path, cand.size)
    if digest_bytes(data) != digest:
        cache.forget(os.path.abspath(path))
        raise InvalidInput(f"{path} changed while it was being logged; log it again")
    return data
