"""The one way artifactkit replaces a file on the local disk: write a temp file beside it, then
os.replace, so a reader (or a crash) sees the old file or the new one, never half of either.

Temp names are short and share one prefix, so a 255-byte target name still has a legal temp name
and a scan of a folder can recognise (and never log) our own leftovers: exactly the prefix and 12
hex digits, so a user's `.ak-tmp-notes` is data like any other file."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator

TMP_PREFIX = ".ak-tmp-"


def temp_name() -> str:
    """The prefix and 12 hex digits: folderscan.is_temp_name recognises exactly this form."""
    return f"{TMP_PREFIX}{os.urandom(6).hex()}"


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike, *, fsync: bool = False) -> Iterator[Path]:
    """Yield a fresh temp path beside `target`; when the block ends without error the temp file
    replaces `target` (fsynced first when asked), otherwise it is removed."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / temp_name()
    try:
        yield tmp
        if fsync:
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        os.replace(tmp, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


class FileWriter:
    """Many complete files, each replaced atomically as atomic_write does, with the fewest system
    calls (a pull writes a million): open (O_EXCL) a temp file beside the target, write, close,
    rename. Each folder is made once per writer, and the temp names share one random part and
    count up (no random bytes per file). Nothing is fsynced: call syncfs() once at the end."""

    def __init__(self) -> None:
        self._made: set[str] = set()
        self._stem = temp_name()
        self._count = 0

    def write(self, target: str, data: bytes | memoryview) -> None:
        parent = os.path.dirname(target)
        if parent not in self._made:
            os.makedirs(parent, exist_ok=True)
            self._made.add(parent)
        self._count += 1
        tmp = os.path.join(parent, f"{self._stem}{self._count:x}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
        try:
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
            finally:
                os.close(fd)
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise


def syncfs(path: str | os.PathLike) -> bool:
    """Flush the filesystem holding `path` in one call: Linux syncfs(2). False where unavailable
    (the caller then makes its files durable another way)."""
    import ctypes  # here, not at import: only a write that ends with a sync needs it

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        call = libc.syncfs
    except (OSError, AttributeError, TypeError):
        return False
    fd = os.open(path, os.O_RDONLY)
    try:
        return call(fd) == 0
    finally:
        os.close(fd)


def atomic_write(target: str | os.PathLike, data: bytes, *, fsync: bool = False) -> None:
    """Replace `target` with `data` atomically. The temp file is created with O_EXCL and mode
    0o666, so the umask decides who may read the result, as for any new file."""
    with atomic_path(target, fsync=fsync) as tmp:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
