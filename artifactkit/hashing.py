"""xxh3-128 digests of bytes and files, and the stat cache that lets an unchanged file skip hashing.

The cache maps (path, size, mtime_ns, inode) -> digest, as git's index and DVC's state do. It is
kept apart from hashing so that a do-nothing variant (NullStatCache) can stand in.
"""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

import xxhash

from .errors import InvalidInput

# A file modified this close to the moment it was hashed may be modified again within the same
# mtime tick, so its cache entry could describe older bytes ("racily clean" in git's terms).
_RACY_NS = 2_000_000_000


def digest_bytes(data: bytes | memoryview) -> str:
    return xxhash.xxh3_128_hexdigest(data)


def digest_file(path: str | os.PathLike, chunk: int = 1 << 22) -> str:
    """Stream a file of any size through xxh3-128."""
    h = xxhash.xxh3_128()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def read_file(path: str | os.PathLike) -> bytes:
    """Read a whole file, turning OS errors into one line that names the file."""
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise InvalidInput(f"cannot read {path}: {e.strerror or e}") from e


class NullStatCache:
    """Remembers nothing: every file is hashed."""

    def lookup(self, path: str, st: os.stat_result) -> str | None:
        return None

    def remember(self, path: str, st: os.stat_result, digest: str) -> None:
        pass

    def flush(self) -> None:
        pass


class StatCache:
    """SQLite-backed (path, size, mtime_ns, inode) -> digest cache, loaded in one query."""

    def __init__(self, db_path: str | os.PathLike):
        self._db_path = Path(db_path)
        self._entries: dict[str, tuple[int, int, int, str, int]] | None = None
        self._pending: list[tuple[str, int, int, int, str, int]] = []

    def _connect(self) -> sqlite3.Connection:
        self._db_path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self._db_path, timeout=30)
        db.execute(
            "CREATE TABLE IF NOT EXISTS stat (path TEXT PRIMARY KEY, size INT, mtime_ns INT,"
            " inode INT, digest TEXT, hashed_ns INT)"
        )
        return db

    def _load(self) -> dict[str, tuple[int, int, int, str, int]]:
        if self._entries is None:
            try:
                with self._connect() as db:
                    rows = db.execute("SELECT path, size, mtime_ns, inode, digest, hashed_ns FROM stat")
                    self._entries = {r[0]: r[1:] for r in rows}
            except sqlite3.Error:
                self._entries = {}  # a broken cache only costs hashing time
        return self._entries

    def lookup(self, path: str, st: os.stat_result) -> str | None:
        hit = self._load().get(path)
        if hit is None:
            return None
        size, mtime_ns, inode, digest, hashed_ns = hit
        if (size, mtime_ns, inode) != (st.st_size, st.st_mtime_ns, st.st_ino):
            return None
        if hashed_ns - mtime_ns < _RACY_NS:
            return None
        return digest

    def remember(self, path: str, st: os.stat_result, digest: str) -> None:
        self._pending.append((path, st.st_size, st.st_mtime_ns, st.st_ino, digest, time.time_ns()))

    def flush(self) -> None:
        if not self._pending:
            return
        if self._entries is not None:
            self._entries.update((row[0], row[1:]) for row in self._pending)
        try:
            with self._connect() as db:
                db.executemany("INSERT OR REPLACE INTO stat VALUES (?, ?, ?, ?, ?, ?)", self._pending)
        except sqlite3.Error:
            pass  # the cache is an optimisation; failing to write it must not fail a log
        self._pending.clear()


def cache_dir() -> Path:
    """This machine's artifactkit cache: $ARTIFACTKIT_CACHE_DIR, else $XDG_CACHE_HOME/artifactkit,
    else ~/.cache/artifactkit."""
    root = os.environ.get("ARTIFACTKIT_CACHE_DIR")
    if not root or root == "off":
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        root = os.path.join(base, "artifactkit")
    return Path(root)


def default_stat_cache() -> StatCache | NullStatCache:
    """The stat cache in cache_dir(); ARTIFACTKIT_CACHE_DIR=off disables it."""
    if os.environ.get("ARTIFACTKIT_CACHE_DIR") == "off":
        return NullStatCache()
    return StatCache(cache_dir() / "stat.sqlite")
