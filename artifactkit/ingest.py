"""From a folder or a dict of files to manifest entries and uploaded blobs, reading each file once.

Files are read, hashed and (when the store lacks them) written in batches, so memory stays bounded
and a remote store sees batched existence checks and concurrent uploads.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Mapping

from .errors import InvalidInput
from .hashing import NullStatCache, StatCache, digest_bytes, read_file
from .layout import object_key
from .manifest import Entry, check_relative_path

Progress = Callable[[int, int], None]  # (bytes just processed, total bytes)
_BATCH_BYTES = 64 << 20
_BATCH_FILES = 1024


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


def scan_folder(root: str | os.PathLike) -> list[Candidate]:
    """Every file under root, by relative POSIX path, sorted. Symlinks must stay inside root."""
    root = os.fspath(root)
    if not os.path.exists(root):
        raise InvalidInput(f"{root}: no such file or directory")
    if not os.path.isdir(root):
        raise InvalidInput(f"{root}: not a directory")
    found: list[Candidate] = []
    _scan(root, "", os.path.realpath(root), root, found)
    if not found:
        raise InvalidInput(f"{root}: folder is empty, nothing to log")
    return found


def _scan(directory: str, prefix: str, real_root: str, root: str, found: list[Candidate]) -> None:
    try:
        entries = sorted(os.scandir(directory), key=lambda e: e.name)
    except OSError as e:
        raise InvalidInput(f"cannot read {directory}: {e.strerror or e}") from e
    for entry in entries:
        if entry.is_symlink():
            _check_inside(entry.path, real_root, root)
            if entry.is_dir() and _is_ancestor(os.path.realpath(entry.path), os.path.realpath(directory)):
                raise InvalidInput(f"{entry.path}: symlink loop (points to a folder that contains it)")
        rel = prefix + entry.name
        try:
            if entry.is_dir():
                _scan(entry.path, rel + "/", real_root, root, found)
                continue
            st = entry.stat()
        except OSError as e:
            raise InvalidInput(f"cannot read {entry.path}: {e.strerror or e}") from e
        found.append(Candidate(path=_checked(rel), source=entry.path, stat=st))


def candidates_from_mapping(
    files: Mapping[str, bytes | str | os.PathLike], metas: Mapping[str, dict] | None = None
) -> list[Candidate]:
    out = []
    metas = metas or {}
    for path, source in sorted(files.items()):
        if isinstance(source, (bytes, bytearray, memoryview)):
            out.append(Candidate(path=_checked(path), source=bytes(source), meta=metas.get(path)))
        else:
            p = os.fspath(source)
            try:
                out.append(Candidate(path=_checked(path), source=p, stat=os.stat(p)))
            except OSError as e:
                raise InvalidInput(f"cannot read {p}: {e.strerror or e}") from e
    if not out:
        raise InvalidInput("no files to log")
    return out


def ingest(
    backend,
    candidates: Iterable[Candidate],
    known: set[str],
    stat_cache: StatCache | NullStatCache,
    progress: Progress | None = None,
) -> IngestResult:
    """Hash every candidate and upload the blobs the store does not have. `known` holds digests
    already in the store (e.g. the previous version's); it grows as blobs are written."""
    result = IngestResult()
    candidates = list(candidates)
    total = sum(c.size for c in candidates)
    batch: dict[str, tuple[bytes | Path, int]] = {}  # digest -> (source, size) awaiting upload
    batch_bytes = 0
    for cand in candidates:
        digest, data = _digest(cand, stat_cache)
        # model_construct: the path was checked when the candidate was made, the digest is ours.
        result.entries.append(Entry.model_construct(path=cand.path, digest=digest, size=cand.size, meta=cand.meta))
        if digest not in known and digest not in batch:
            batch[digest] = (data if data is not None else Path(cand.source), cand.size)
            batch_bytes += cand.size
        if progress:
            progress(cand.size, total)
        if batch_bytes >= _BATCH_BYTES or len(batch) >= _BATCH_FILES:
            _flush(backend, batch, known, result)
            batch, batch_bytes = {}, 0
    _flush(backend, batch, known, result)
    stat_cache.flush()
    return result


def _digest(cand: Candidate, cache) -> tuple[str, bytes | None]:
    """(digest, bytes read or None). A stat-cache hit reads nothing."""
    if isinstance(cand.source, bytes):
        return digest_bytes(cand.source), cand.source
    key = os.path.abspath(cand.source)
    hit = cache.lookup(key, cand.stat)
    if hit is not None:
        return hit, None
    data = read_file(cand.source)
    if len(data) != cand.stat.st_size:
        raise InvalidInput(f"{cand.source} changed while it was being logged")
    digest = digest_bytes(data)
    cache.remember(key, cand.stat, digest)
    return digest, data


def _flush(backend, batch: dict[str, tuple[bytes | Path, int]], known: set[str], result: IngestResult) -> None:
    if not batch:
        return
    present = backend.exists([object_key(d) for d in batch])
    missing = [(d, src, size) for d, (src, size) in batch.items() if object_key(d) not in present]
    backend.write_many([(object_key(d), src) for d, src, _ in missing])
    result.uploaded_files += len(missing)
    result.uploaded_bytes += sum(size for _, _, size in missing)
    known.update(batch)


def _checked(path: str) -> str:
    try:
        return check_relative_path(path)
    except ValueError as e:
        raise InvalidInput(str(e)) from None


def _is_ancestor(a: str, b: str) -> bool:
    return a == b or b.startswith(a.rstrip(os.sep) + os.sep)


def _check_inside(path: str, real_root: str, root: str) -> None:
    real = os.path.realpath(path)
    if real != real_root and not real.startswith(real_root.rstrip(os.sep) + os.sep):
        raise InvalidInput(f"{path}: symlink points outside {root} (to {real})")
