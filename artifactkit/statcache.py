"""The stat cache that lets an unchanged file skip hashing (hashing.py hashes).

The cache maps (path, size, mtime_ns, ctime_ns, inode) -> digest, as git's index does. ctime is
in the key because mtime is not evidence: `touch -r`, `cp -p` and sync tools restore it after an
edit, while ctime is set by the kernel on every change and cannot be set back. The cache is kept
apart from hashing so that a do-nothing variant (NullStatCache) can stand in.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

from .hashing import cache_dir

if TYPE_CHECKING:
    import sqlite3

# A file modified this close to the moment it was hashed may be modified again within the same
# mtime tick, so its cache entry could describe older bytes ("racily clean" in git's terms).
_RACY_NS = 2_000_000_000
# ctime is set by the kernel from its clock tick (at most 10 ms on Linux): a file whose ctime is
# more than this before it was hashed cannot change again without its ctime changing.
_RACY_CTIME_NS = 100_000_000


class NullStatCache:
    """Remembers nothing: every file is hashed."""

    def lookup(self, path: str, st: os.stat_result) -> str | None:
        return None

    def remember(self, path: str, st: os.stat_result, digest: str) -> None:
        pass

    def forget(self, path: str) -> None:
        pass

    def folder_lookup(self, path: str, fingerprint: str) -> str | None:
        return None

    def folder_remember(self, path: str, fingerprint: str, tree: str) -> None:
        pass

    def flush(self) -> None:
        pass


def is_racy(st: os.stat_result, now_ns: int) -> bool:
    """Whether a file changed so recently that another change could leave its stat the same
    (git's "racily clean"): such a stat is not evidence of unchanged content."""
    return now_ns - st.st_mtime_ns < _RACY_NS or now_ns - st.st_ctime_ns < _RACY_CTIME_NS


_FOLDERS_KEPT = 16  # folders of file rows held at once (lookups come folder by folder)
_PENDING_MAX = 10_000  # rows remembered before they are written (memory bounded for any size)


class StatCache:
    """SQLite-backed (path, size, mtime_ns, ctime_ns, inode) -> digest cache, read one folder at
    a time (memory bounded at any number of files). The table is `stat_v2`: entries of the older
    mtime-only table are never trusted. `folder_v1` maps a folder to the fingerprint of its files'
    stats and the digest of its tree (trees.py): an unchanged folder is known without a lookup
    per file."""

    def __init__(self, db_path: str | os.PathLike):
        import sqlite3  # here, not at import: commands that hash nothing skip it

        self._db_error = sqlite3.Error
        self._db_path = Path(db_path)
        self._folders: dict[str, dict[str, tuple[int, int, int, int, str, int]]] = {}
        self._trees: dict[str, tuple[str, str]] | None = None
        self._pending: list[tuple[str, int, int, int, int, str, int]] = []
        self._pending_folders: list[tuple[str, str, str]] = []

    def _connect(self) -> sqlite3.Connection:
        import sqlite3

        self._db_path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self._db_path, timeout=30)
        db.execute(
            "CREATE TABLE IF NOT EXISTS stat_v2 (path TEXT PRIMARY KEY, size INT, mtime_ns INT,"
            " ctime_ns INT, inode INT, digest TEXT, hashed_ns INT)"
        )
        db.execute("CREATE TABLE IF NOT EXISTS folder_v1 (path TEXT PRIMARY KEY, fingerprint TEXT, tree TEXT)")
        return db

    def _folder(self, folder: str) -> dict[str, tuple[int, int, int, int, str, int]]:
        """The rows of the files directly in `folder` (a range of the primary key)."""
        rows = self._folders.get(folder)
        if rows is None:
            low = folder + "/"
            try:
                with self._connect() as db:
                    found = db.execute(
                        "SELECT path, size, mtime_ns, ctime_ns, inode, digest, hashed_ns FROM stat_v2"
                        " WHERE path >= ? AND path < ? AND instr(substr(path, ?), '/') = 0",
                        (low, folder + "0", len(low) + 1),
                    )  # "0" is the character after "/"
                    rows = {r[0]: r[1:] for r in found}
            except self._db_error:
                rows = {}  # a broken cache only costs hashing time
            if len(self._folders) >= _FOLDERS_KEPT:
                self._folders.pop(next(iter(self._folders)))
            self._folders[folder] = rows
        return rows

    def lookup(self, path: str, st: os.stat_result) -> str | None:
        hit = self._folder(path.rpartition("/")[0]).get(path)
        if hit is None:
            return None
        size, mtime_ns, ctime_ns, inode, digest, hashed_ns = hit
        if (size, mtime_ns, ctime_ns, inode) != (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino):
            return None
        if hashed_ns - mtime_ns < _RACY_NS or hashed_ns - ctime_ns < _RACY_CTIME_NS:
            return None
        return digest

    def remember(self, path: str, st: os.stat_result, digest: str) -> None:
        self._pending.append((path, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, digest, time.time_ns()))
        if len(self._pending) >= _PENDING_MAX:
            self.flush()

    def forget(self, path: str) -> None:
        """Drop an entry found to be wrong (the file's bytes no longer match it), and the
        fingerprints of the folders above it."""
        self._folder(path.rpartition("/")[0]).pop(path, None)
        self._pending = [row for row in self._pending if row[0] != path]
        self._trees = None
        try:
            with self._connect() as db:
                db.execute("DELETE FROM stat_v2 WHERE path = ?", (path,))
                db.execute("DELETE FROM folder_v1 WHERE ? LIKE path || '/%'", (path,))
        except self._db_error:
            pass

    def folder_lookup(self, path: str, fingerprint: str) -> str | None:
        """The tree digest of a folder whose files' stats have this fingerprint, if known."""
        if self._trees is None:
            try:
                with self._connect() as db:
                    self._trees = {
                        r[0]: (r[1], r[2]) for r in db.execute("SELECT path, fingerprint, tree FROM folder_v1")
                    }
            except self._db_error:
                self._trees = {}
        hit = self._trees.get(path)
        return hit[1] if hit is not None and hit[0] == fingerprint else None

    def folder_remember(self, path: str, fingerprint: str, tree: str) -> None:
        """Only for a fingerprint of stats that were not racy (is_racy) when the tree was made."""
        self._pending_folders.append((path, fingerprint, tree))

    def flush(self) -> None:
        if not self._pending and not self._pending_folders:
            return
        for row in self._pending:
            folder = self._folders.get(row[0].rpartition("/")[0])
            if folder is not None:
                folder[row[0]] = row[1:]
        if self._trees is not None:
            self._trees.update((p, (f, t)) for p, f, t in self._pending_folders)
        try:
            with self._connect() as db:
                db.executemany("INSERT OR REPLACE INTO stat_v2 VALUES (?, ?, ?, ?, ?, ?, ?)", self._pending)
                db.executemany("INSERT OR REPLACE INTO folder_v1 VALUES (?, ?, ?)", self._pending_folders)
        except self._db_error:
            pass  # the cache is an optimisation; failing to write it must not fail a log
        self._pending.clear()
        self._pending_folders.clear()


def default_stat_cache() -> StatCache | NullStatCache:
    """The stat cache in cache_dir(); ARTIFACTKIT_CACHE_DIR=off disables it."""
    if os.environ.get("ARTIFACTKIT_CACHE_DIR") == "off":
        return NullStatCache()
    return StatCache(cache_dir() / "stat.sqlite")
