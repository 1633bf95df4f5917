"""A store in a local folder, through os calls (not fsspec): os.link gives an exclusive create,
os.replace an atomic replace, and one syncfs pass makes a whole batch of blobs durable."""

from __future__ import annotations

import errno
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Sequence

from ..errors import AlreadyExists, BackendError, NotFound
from ..fileio import syncfs, temp_name
from .base import Backend, Capabilities, ObjectInfo, Source

if TYPE_CHECKING:  # threads start with the first large batch: a read-only command needs none
    from concurrent.futures import ThreadPoolExecutor

TMP_PREFIX = ".tmp-"
_FILE = "file://"
_WRITERS = 2  # threads writing a batch of small blobs (first log of 100,000 1 kB files: see docs)
_WRITERS_MIN_FILES = 32  # per thread; smaller batches are written in the calling thread


def open_local(uri: str, storage_options: dict[str, Any] | None = None) -> "LocalBackend":
    """The registry's factory for plain paths and file:// URLs (storage options mean nothing here)."""
    return LocalBackend(uri[len(_FILE) :] if uri[: len(_FILE)].lower() == _FILE else uri)


# A key that could name a file outside the root: absolute, empty / "." / ".." parts, backslash, NUL.
_UNSAFE_KEY = re.compile(r"^/|[\\\0]|//|/$|(^|/)\.\.?(/|$)")


class LocalBackend(Backend):
    capabilities = Capabilities(atomic_create=True, atomic_replace=True, remote=False)
    protocol = "file"

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root).expanduser().absolute()
        self.uri = self.url = str(self.root)
        self.local_root = self.root  # keys are files under it (Backend.local_root)
        self._made_dirs: set[Path | str] = set()
        self._writers: ThreadPoolExecutor | None = None  # started by the first large batch
        self._unsynced: list[str] = []

    # -- helpers --------------------------------------------------------------------------
    def _path(self, key: str) -> Path:
        return self.root / self._checked(key)

    def _checked(self, key: str) -> str:
        """The last line of defence: the layers above validate every key they build."""
        if not key or _UNSAFE_KEY.search(key):
            raise BackendError(f"{self.uri}: refusing the key {key!r}: it could name a file outside the store")
        return key

    def _error(self, e: OSError, key: str, doing: str) -> BackendError:
        reason = "no space left on device" if e.errno == errno.ENOSPC else (e.strerror or str(e))
        return BackendError(f"{self.uri}: cannot {doing} {key}: {reason}")

    def _mkdir(self, d: Path) -> None:
        if d not in self._made_dirs:
            d.mkdir(parents=True, exist_ok=True)
            self._made_dirs.add(d)

    def _write_tmp(self, final: Path, data: Source, fsync: bool) -> Path:
        """Write bytes, or stream a file (a Path, or a reader such as hashing.HashingReader whose
        check() must pass before the copy may take its name), to a short-named temp file beside
        `final` (fileio's prefix, so a folder scan never logs it); the caller renames it."""
        self._mkdir(final.parent)
        tmp = final.parent / temp_name()
        try:
            with open(tmp, "wb") as f:
                if isinstance(data, (bytes, bytearray, memoryview)):
                    f.write(data)
                else:
                    _copy_from(data, f)
                if fsync:
                    f.flush()
                    os.fsync(f.fileno())
        except BaseException:
            tmp.unlink(missing_ok=True)  # never leave a half-written temp behind on error or ^C
            raise
        return tmp

    def _fsync_dir(self, d: Path) -> None:
        fd = os.open(d, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    # -- protocol ---------------------------------------------------------------------------
    def read(self, key: str) -> bytes:
        try:
            return _read_whole(f"{self.uri}/{self._checked(key)}")
        except FileNotFoundError:
            raise NotFound(f"{self.uri}: {key} not found") from None
        except OSError as e:
            raise self._error(e, key, "read") from e

    def read_many(self, keys: Sequence[str]) -> Iterator[tuple[str, bytes]]:
        # in key order: the blobs of one objects/ab/ folder together (its entries stay cached)
        for key in sorted(keys):
            yield key, self.read(key)

    def read_to(self, key: str, path: Path) -> None:
        try:
            tmp = self._write_tmp(Path(path), self._path(key), fsync=False)
        except FileNotFoundError:
            raise NotFound(f"{self.uri}: {key} not found") from None
        os.replace(tmp, path)

    def write(self, key: str, data: bytes, *, create_only: bool = False) -> None:
        final = self._path(key)
        try:
            tmp = self._write_tmp(final, data, fsync=True)
            try:
                if create_only:
                    # link() fails if the name exists: an exclusive claim that never exposes an
                    # empty or partial file, even to a reader racing the writer.
                    os.link(tmp, final)
                else:
                    os.replace(tmp, final)
            finally:
                tmp.unlink(missing_ok=True)
            self._fsync_dir(final.parent)
        except FileExistsError:
            raise AlreadyExists(f"{self.uri}: {key} already exists") from None
        except OSError as e:
            raise self._error(e, key, "write") from e

    def write_many(self, items: Sequence[tuple[str, Source]]) -> None:
        # The hot path of a first log (thousands of blobs): plain os calls, no pathlib, no fsync
        # per file (sync() makes the whole batch durable in one pass). Creating a file is kernel
        # time, run outside the GIL: _WRITERS threads write a batch of small blobs side by side.
        root = self.uri
        small = [(key, data) for key, data in items if isinstance(data, (bytes, bytearray, memoryview))]
        for key in (key for key, _ in small):
            self._checked(key)
        if len(small) >= 2 * _WRITERS_MIN_FILES:
            if self._writers is None:
                from concurrent.futures import ThreadPoolExecutor

                self._writers = ThreadPoolExecutor(_WRITERS, thread_name_prefix="artifactkit-write")
            step = -(-len(small) // _WRITERS)
            list(self._writers.map(self._write_blobs, [small[i : i + step] for i in range(0, len(small), step)]))
        else:
            self._write_blobs(small)
        for key, data in items:
            if not isinstance(data, (bytes, bytearray, memoryview)):
                final = f"{root}/{self._checked(key)}"
                try:
                    os.replace(self._write_tmp(Path(final), data, fsync=False), final)
                except OSError as e:
                    raise self._error(e, key, "write") from e
                self._unsynced.append(final)

    def _write_blobs(self, items: Sequence[tuple[str, bytes | memoryview]]) -> None:
        root = self.uri
        for key, data in items:
            final = f"{root}/{key}"
            try:
                self._write_blob(final, data)
            except OSError as e:
                raise self._error(e, key, "write") from e
            self._unsynced.append(final)

    def _write_blob(self, final: str, data: bytes | memoryview) -> None:
        parent = final.rsplit("/", 1)[0]
        if parent not in self._made_dirs:
            os.makedirs(parent, exist_ok=True)
            self._made_dirs.add(parent)
        tmp = f"{parent}/{TMP_PREFIX}{os.urandom(8).hex()}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        except BaseException:
            os.close(fd)
            os.unlink(tmp)
            raise
        os.close(fd)
        os.replace(tmp, final)

    def exists(self, keys: Iterable[str]) -> set[str]:
        return {k for k in keys if os.path.exists(self._path(k))}

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        base = self._path(prefix.rstrip("/")) if prefix.strip("/") else self.root
        for dirpath, _dirs, files in os.walk(base):
            for name in files:
                full = os.path.join(dirpath, name)
                try:
                    st = os.stat(full)
                except FileNotFoundError:
                    continue  # removed while listing
                key = os.path.relpath(full, self.root).replace(os.sep, "/")
                yield ObjectInfo(key=key, size=st.st_size, mtime=st.st_mtime)

    def delete(self, keys: Iterable[str]) -> None:
        for key in keys:
            try:
                self._path(key).unlink(missing_ok=True)
            except OSError as e:
                raise self._error(e, key, "delete") from e

    def sync(self) -> None:
        """One durability pass over the blobs written since the last sync."""
        if not self._unsynced:
            return
        paths, self._unsynced = self._unsynced, []
        if syncfs(self.root):
            return
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(_fsync_path, paths))
        for d in {os.path.dirname(p) for p in paths}:
            self._fsync_dir(Path(d))


def _copy_from(source, out) -> None:
    """Stream a Path or a reader into an open file in chunks (memory independent of its size)."""
    if isinstance(source, Path):
        with open(source, "rb") as src:
            while block := src.read(1 << 22):
                out.write(block)
        return
    while block := source.read(1 << 22):
        out.write(block)
    source.check()


def _read_whole(path: str) -> bytes:
    """A file's bytes in four system calls (open, fstat, read, close): open().read() makes twice
    as many (a tty check, seeks, a second read to find the end). A short read of a regular file
    below 1 GiB is its end; a larger file (one read returns at most ~2 GiB on Linux) or one grown
    since fstat is read on to the end."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    try:
        size = os.fstat(fd).st_size
        if size < 1 << 30:
            data = os.read(fd, size + 1)
            if len(data) <= size:
                return data
            parts = [data]
        else:
            parts = []
        while chunk := os.read(fd, 1 << 24):
            parts.append(chunk)
        return b"".join(parts)
    finally:
        os.close(fd)


def _fsync_path(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
