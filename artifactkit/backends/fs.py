"""A store on any fsspec filesystem (memory://, s3://, gcs://, …). fsspec is imported lazily:
local stores never pay its import time."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

from ..errors import AlreadyExists, BackendError, InvalidInput, NotFound, missing_extra
from .base import Capabilities, ObjectInfo, Source

# Protocols whose pipe_file(mode="create") is a real conditional write, not check-then-write.
_ATOMIC_CREATE = {"s3", "s3a", "memory"}
_EXTRAS = {"s3": "s3", "s3a": "s3"}


def _import_fsspec():
    try:
        import fsspec
    except ImportError as e:
        raise missing_extra("fsspec", "all") from e
    return fsspec


class FsspecBackend:
    def __init__(self, uri: str, storage_options: dict[str, Any] | None = None):
        fsspec = _import_fsspec()
        protocol, _, rest = uri.partition("://")
        try:
            cls = fsspec.get_filesystem_class(protocol)
        except ValueError:
            raise InvalidInput(f"unknown URI scheme {protocol!r} in {uri}") from None
        except ImportError as e:
            raise missing_extra(f"the {protocol}:// filesystem", _EXTRAS.get(protocol, "all")) from e
        # skip_instance_cache: options (endpoint, credentials) differ between stores in one process.
        self.fs = cls(skip_instance_cache=True, **(storage_options or {}))
        self.root = rest.rstrip("/")
        self.uri = f"{protocol}://{self.root}"
        self.protocol = protocol
        self.capabilities = Capabilities(atomic_create=protocol in _ATOMIC_CREATE, atomic_replace=True)

    def _path(self, key: str) -> str:
        return f"{self.root}/{key}" if self.root else key

    def _key(self, path: str) -> str:
        path = path.split("://", 1)[-1].lstrip("/") if self.protocol == "memory" else path
        root = self.root.lstrip("/") if self.protocol == "memory" else self.root
        return path[len(root) + 1 :] if root else path

    def _fail(self, e: Exception, key: str, doing: str) -> Exception:
        if isinstance(e, FileNotFoundError):
            return NotFound(f"{self.uri}: {key} not found")
        if isinstance(e, FileExistsError):
            return AlreadyExists(f"{self.uri}: {key} already exists")
        return BackendError(f"{self.uri}: cannot {doing} {key}: {e}")

    def read(self, key: str) -> bytes:
        try:
            return self.fs.cat_file(self._path(key))
        except Exception as e:  # fsspec implementations raise OSError, botocore and aiohttp errors
            raise self._fail(e, key, "read") from e

    def read_many(self, keys: Sequence[str]) -> Iterator[tuple[str, bytes]]:
        if not keys:
            return
        paths = {self._path(k): k for k in keys}
        try:
            got = self.fs.cat(list(paths), on_error="return")
        except Exception as e:
            raise self._fail(e, keys[0], "read") from e
        for path, data in got.items():
            key = paths.get(path) or self._key(path)
            if isinstance(data, Exception):
                raise self._fail(data, key, "read") from data
            yield key, data

    def read_to(self, key: str, path: Path) -> None:
        try:
            self.fs.get_file(self._path(key), str(path))
        except Exception as e:
            raise self._fail(e, key, "read") from e

    def write(self, key: str, data: bytes, *, create_only: bool = False) -> None:
        try:
            self.fs.pipe_file(self._path(key), data, mode="create" if create_only else "overwrite")
        except Exception as e:
            raise self._fail(e, key, "write") from e

    def write_many(self, items: Sequence[tuple[str, Source]]) -> None:
        blobs = {self._path(k): bytes(v) for k, v in items if not isinstance(v, Path)}
        files = [(str(v), self._path(k)) for k, v in items if isinstance(v, Path)]
        try:
            if blobs:
                self.fs.pipe(blobs)  # one batched, concurrent call on async filesystems (s3fs)
            if files:
                self.fs.put([s for s, _ in files], [d for _, d in files])
        except Exception as e:
            raise self._fail(e, items[0][0], "write") from e

    def exists(self, keys: Iterable[str]) -> set[str]:
        keys = list(keys)
        found: set[str] = set()
        for parent in sorted({k.rsplit("/", 1)[0] for k in keys if "/" in k}):
            found |= self._listed(parent)
        return {k for k in keys if k in found}

    def _listed(self, prefix: str) -> set[str]:
        try:
            return {self._key(p) for p in self.fs.find(self._path(prefix))}
        except FileNotFoundError:
            return set()
        except Exception as e:
            raise self._fail(e, prefix, "list") from e

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        try:
            found = self.fs.find(self._path(prefix), detail=True)
        except FileNotFoundError:
            return
        except Exception as e:
            raise self._fail(e, prefix, "list") from e
        for path, info in found.items():
            yield ObjectInfo(key=self._key(path), size=int(info.get("size") or 0), mtime=_mtime(info))

    def delete(self, keys: Iterable[str]) -> None:
        paths = [self._path(k) for k in keys]
        if paths:
            try:
                self.fs.rm(paths)
            except FileNotFoundError:
                pass
            except Exception as e:
                raise self._fail(e, paths[0], "delete") from e

    def sync(self) -> None:
        """Object stores acknowledge a PUT only once it is durable: nothing to do."""


def _mtime(info: dict) -> float | None:
    for field in ("LastModified", "mtime", "created", "last_modified"):
        value = info.get(field)
        if value is None:
            continue
        if hasattr(value, "timestamp"):
            return value.timestamp()
        if isinstance(value, (int, float)):
            return float(value)
    return None
