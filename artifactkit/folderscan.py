"""Pass 1 of a folder log (treelog.py): list every folder and stat every file, in worker
processes when the folder is large.

A stat is a system call of ~2 us; a million of them is the floor of an unchanged re-log. Threads do
not share that work (the GIL is taken between every stat: 1-4 threads were slower than one), so a
tree of more than _POOL_MIN_FILES files is listed folder by folder in a process pool, level by
level; smaller ones in this process (a pool costs ~0.2 s to start). This module is the pool's
import: it stays light (no pydantic), and every error it raises names the file.
"""

from __future__ import annotations

import marshal
import os
import re
from dataclasses import dataclass
from operator import attrgetter

import xxhash

from .errors import InvalidInput
from .fileio import TMP_PREFIX
from .names import check_encodable

_OWN = re.escape(TMP_PREFIX) + "[0-9a-f]{12}"  # fileio.temp_name
_OWN_TEMPS = re.compile(rf"{_OWN}|\.{_OWN}\.[0-9a-f]{{8}}\.part|\.tmp-[0-9a-f]{{32}}")
_POOL_MIN_FILES = 200_000  # estimated files below which one process lists everything
_POOL_PROBE = 8  # folders of a level listed here first, to estimate the level's files
_POOL_MAX_WORKERS = 8


def is_temp_name(name: str) -> bool:
    """Temp files artifactkit itself leaves in a folder when killed mid-write, by their exact form
    (a user's `.ak-tmp-notes` or `.tmp-0123456789abcdef` is data): fileio's ".ak-tmp-<12 hex>",
    fsspec's read_to of one of ours ("..ak-tmp-<12 hex>.<8 hex>.part"), and the local backend's
    older ".tmp-<32 hex>". All of them start with a dot: the one test most names of a million-file
    log need."""
    return name.startswith(".") and _OWN_TEMPS.fullmatch(name) is not None


def listing(directory: str) -> list[os.DirEntry]:
    """A folder's entries in name order, without our own temp files."""
    try:
        with os.scandir(directory) as it:
            entries = sorted(it, key=attrgetter("name"))
    except OSError as e:
        raise InvalidInput(f"cannot read {directory}: {e.strerror or e}") from e
    return [e for e in entries if e.name[0] != "." or not is_temp_name(e.name)]


def stat_key(st: os.stat_result) -> tuple[int, int, int, int]:
    """What says a file is unchanged, as the stat cache keys a file."""
    return st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino


def files_digest(files: list[tuple[str, int, int, int, int]]) -> str:
    """One folder's files as a folder fingerprint sees them: (name, *stat_key) in name order."""
    return xxhash.xxh3_128_hexdigest(marshal.dumps(files, 4))


@dataclass(frozen=True)
class Listed:
    """One folder as pass 1 sees it."""

    subdirs: tuple[str, ...]  # names of its folders (symlinks to folders included), in name order
    links: tuple[str, ...]  # names of its symlinks: the caller checks where they lead
    files: int
    bytes: int
    files_digest: str


def list_folder(directory: str) -> Listed:
    """List one folder and stat its files (in a worker process, or here)."""
    entries = listing(directory)
    try:
        "/".join([e.name for e in entries]).encode("utf-8")  # one encode for the whole folder
    except UnicodeEncodeError:
        for e in entries:
            check_encodable(e.name, e.path)
    subdirs, links, files = [], [], []
    for entry in entries:
        name = entry.name
        try:
            if entry.is_symlink():
                links.append(name)
            if entry.is_dir():
                subdirs.append(name)
                continue
            st = entry.stat()
        except OSError as e:
            raise InvalidInput(f"cannot read {entry.path}: {e.strerror or e}") from e
        files.append((name, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino))
    return Listed(tuple(subdirs), tuple(links), len(files), sum(f[1] for f in files), files_digest(files))


class LevelLister:
    """list_folder over each level of a tree: here, or in a process pool once a level is
    estimated to hold more than _POOL_MIN_FILES files. close() stops the pool."""

    def __init__(self):
        self._pool = None  # a ProcessPoolExecutor once started (imported then: ~11 ms of start-up)
        self._pool_failed = False

    def list(self, folders: list[str]) -> list[Listed]:
        if self._pool is None:
            probe = [list_folder(f) for f in folders[:_POOL_PROBE]]
            rest = folders[len(probe) :]
            estimate = sum(r.files for r in probe) / max(1, len(probe)) * len(rest)
            if not rest or estimate < _POOL_MIN_FILES or not self._start():
                return probe + [list_folder(f) for f in rest]
        else:
            probe, rest = [], folders
        from concurrent.futures.process import BrokenProcessPool

        try:
            workers = self._pool._max_workers
            return probe + list(self._pool.map(list_folder, rest, chunksize=max(1, len(rest) // (workers * 8))))
        except (BrokenProcessPool, OSError):  # no processes here (a sandbox, a frozen app): list here
            self.close()
            self._pool_failed = True
            return probe + [list_folder(f) for f in rest]

    def _start(self) -> bool:
        if self._pool_failed or (os.cpu_count() or 1) < 2:
            return False
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        try:
            # forkserver: never fork a process that may run threads (a training loop, wandb)
            context = multiprocessing.get_context("forkserver")
            self._pool = ProcessPoolExecutor(min(_POOL_MAX_WORKERS, os.cpu_count() or 1), mp_context=context)
        except (ValueError, OSError):
            self._pool_failed = True
            return False
        return True

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None
