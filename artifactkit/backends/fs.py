"""A store on any fsspec filesystem (memory://, gcs://, …; s3:// has its own subclass in s3.py).
The registry in base.py picks the class by scheme; this module knows no subclass.

fsspec is imported lazily: local stores never pay its import time. On async filesystems (s3fs,
gcsfs, adlfs) bulk reads and writes are one batch of concurrent requests, not a loop.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import uuid
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

from ..errors import AlreadyExists, BackendError, InvalidInput, MissingExtra, NotFound, missing_extra
from ..redact import redact, redact_uri
from .base import Backend, Capabilities, ObjectInfo, Source

logger = logging.getLogger(__name__)
_EXTRAS = {"s3": "s3", "s3a": "s3"}
# Storage options that configure artifactkit rather than the filesystem (never passed to fsspec).
SINGLE_WRITER = "single_writer"
_SECRET_KEY = re.compile(r"pass|secret|token|key", re.IGNORECASE)  # option names whose values are never shown
_CONCURRENCY = 256  # requests in flight per batch; s3fs's connection pool bounds the real number
_STREAM_CHUNK = 8 << 20  # bytes per read of a streamed file (above s3fs's 5 MiB minimum part)
# MemoryFileSystem keeps one dict for every instance in the process, so one lock serves them all.
_MEMORY_CREATE_LOCK = threading.Lock()


def nest_options(options: dict[str, Any]) -> dict[str, Any]:
    """{"config_kwargs.retries.max_attempts": 9} -> {"config_kwargs": {"retries": {"max_attempts": 9}}}:
    the CLI's key=value options can then reach fsspec's nested dicts."""
    out: dict[str, Any] = {}
    for key, value in options.items():
        *parents, leaf = key.split(".")
        node = out
        for p in parents:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise InvalidInput(f"storage option {key!r} conflicts with another option")
        node[leaf] = value
    return out


def _import_fsspec():
    try:
        import fsspec
    except ImportError as e:
        raise missing_extra("fsspec", "all") from e
    return fsspec


def _missing_filesystem(protocol: str, error: ImportError) -> Exception:
    """What to install for a scheme: our extra where one brings it (s3), else the package fsspec
    itself was missing (gcsfs for gcs://, adlfs for az://), which no extra of ours holds."""
    if protocol in _EXTRAS:
        return missing_extra(f"the {protocol}:// filesystem", _EXTRAS[protocol])
    missing = getattr(error.__cause__, "name", None) or error.name
    hint = f": pip install {missing.split('.')[0]}" if missing else f" ({error})"
    return MissingExtra(f"the {protocol}:// filesystem is not installed{hint}")


def _truthy(value: Any) -> bool:
    return value is True or str(value).lower() in ("1", "true", "yes")


class FsspecBackend(Backend):
    _secrets: list[str | None] = []  # values no message may show: password=-like options, S3 credentials

    def __init__(self, uri: str, storage_options: dict[str, Any] | None = None):
        fsspec = _import_fsspec()
        protocol, sep, rest = uri.partition("://")
        if not sep:
            raise InvalidInput(f"invalid store URI {redact_uri(uri)!r}: expected PROTOCOL://PATH")
        protocol = protocol.lower()
        options = nest_options(dict(storage_options or {}))
        self.single_writer = _truthy(options.pop(SINGLE_WRITER, False))
        try:
            cls = fsspec.get_filesystem_class(protocol)
        except ValueError:
            raise InvalidInput(f"unknown URI scheme {protocol!r} in {redact_uri(uri)}") from None
        except ImportError as e:
            raise _missing_filesystem(protocol, e) from e
        self.protocol = protocol
        self.url = f"{protocol}://{rest.strip('/')}"
        self.uri = redact_uri(self.url)  # every message below names this one
        self.fs = self._make_fs(cls, options)
        # The root as the filesystem spells paths (memory:// -> "/t", s3:// -> "bucket/prefix"),
        # so paths it returns from listings map back to keys by slicing.
        self.root = self.fs._strip_protocol(self.url).rstrip("/")
        self.capabilities = Capabilities(
            atomic_create=protocol == "memory", atomic_replace=True, remote=protocol != "memory"
        )
        if getattr(self.fs, "async_impl", False):
            _quiet_orphaned_connection_errors(self.fs.loop)

    def _make_fs(self, cls, options: dict[str, Any]):
        # What the URL itself says (ftp's host, port, user and password), as fsspec.url_to_fs
        # does; options the user typed win.
        try:
            options = {**cls._get_kwargs_from_urls(self.url), **options}
        except ValueError:  # its message may quote part of a password: not shown
            raise InvalidInput(
                f"invalid store URI {self.uri}: cannot read user, host and port from it "
                "(a '/' or '@' in a password is written %2F or %40)"
            ) from None
        self._secrets = [
            *self._secrets,
            *(v for k, v in options.items() if isinstance(v, str) and _SECRET_KEY.search(k)),
        ]
        try:
            # skip_instance_cache: options (endpoint, credentials) differ between stores in one process.
            return cls(skip_instance_cache=True, **options)
        except TypeError as e:
            raise InvalidInput(f"{self.uri}: invalid storage option: {redact(str(e), self._secrets)}") from None
        except Exception as e:  # filesystems that connect when made (ftp, sftp) raise OSError and their own
            raise BackendError(
                f"{self.uri}: cannot connect: {type(e).__name__}: {redact(str(e), self._secrets)}"
            ) from None

    # -- paths and errors -------------------------------------------------------------------
    def _path(self, key: str) -> str:
        return f"{self.root}/{key}" if self.root else key

    def _key(self, path: str) -> str:
        return path[len(self.root) + 1 :] if self.root else path

    def _fail(self, e: BaseException, key: str, doing: str) -> Exception:
        """Map a filesystem error to artifactkit's, naming the store and the key."""
        if isinstance(e, FileNotFoundError):
            return NotFound(f"{self.uri}: {key} not found")
        if isinstance(e, FileExistsError):
            return AlreadyExists(f"{self.uri}: {key} already exists")
        if isinstance(e, PermissionError):
            return BackendError(f"{self.uri}: permission denied to {doing} {key}")
        if isinstance(e, TypeError) and "unexpected keyword argument" in str(e):  # s3fs checks options late
            return InvalidInput(f"{self.uri}: invalid storage option: {e}")
        return BackendError(f"{self.uri}: cannot {doing} {key}: {type(e).__name__}: {redact(str(e), self._secrets)}")

    def _gather(self, coros: list) -> list:
        """Run coroutines on the filesystem's loop, bounded in number; exceptions come back as
        values so that no request is left running unobserved when one fails."""
        from fsspec.asyn import _run_coros_in_chunks, sync

        return sync(
            self.fs.loop, _run_coros_in_chunks, coros, batch_size=_CONCURRENCY, nofiles=True, return_exceptions=True
        )

    def _raise_first(self, keys: Sequence[str], results: list, doing: str) -> None:
        for key, r in zip(keys, results):
            if isinstance(r, BaseException):
                raise self._fail(r, key, doing) from r

    # -- protocol ---------------------------------------------------------------------------
    def read(self, key: str) -> bytes:
        try:
            return self.fs.cat_file(self._path(key), **self._cat_kwargs())
        except Exception as e:  # fsspec implementations raise OSError, botocore and aiohttp errors
            raise self._fail(e, key, "read") from e

    def read_many(self, keys: Sequence[str]) -> Iterator[tuple[str, bytes]]:
        keys = list(keys)
        if not getattr(self.fs, "async_impl", False):
            for key in keys:
                yield key, self.read(key)
            return
        # In slices, so a caller handing over a whole store (verify) holds one slice in memory;
        # callers that know sizes (transfer, ingest) pass batches of bounded bytes anyway.
        for i in range(0, len(keys), _CONCURRENCY):
            part = keys[i : i + _CONCURRENCY]
            results = self._gather([self.fs._cat_file(self._path(k), **self._cat_kwargs()) for k in part])
            self._raise_first(part, results, "read")
            yield from zip(part, results)

    def _cat_kwargs(self) -> dict[str, Any]:
        return {}

    def read_ranges(self, requests: Sequence[tuple[str, int, int]]) -> list[bytes]:
        """The bytes [start, end) of each (key, start, end), concurrently where the system allows."""
        if not getattr(self.fs, "async_impl", False):
            out = []
            for key, start, end in requests:
                try:
                    out.append(self.fs.cat_file(self._path(key), start=start, end=end))
                except Exception as e:
                    raise self._fail(e, key, "read") from e
            return out
        results = self._gather(
            [self.fs._cat_file(self._path(k), start=s, end=e, **self._cat_kwargs()) for k, s, e in requests]
        )
        self._raise_first([k for k, _, _ in requests], results, "read")
        return results

    def read_to(self, key: str, path: Path) -> None:
        path = Path(path)
        tmp = path.parent / f".{path.name}.{uuid.uuid4().hex[:8]}.part"
        try:
            self.fs.get_file(self._path(key), str(tmp))
            os.replace(tmp, path)
        except Exception as e:
            raise self._fail(e, key, "read") from e
        finally:
            tmp.unlink(missing_ok=True)

    def write(self, key: str, data: bytes, *, create_only: bool = False) -> None:
        self._before_write()
        if create_only and not self._exclusive_create():
            self._create_single_writer(key, data)
            return
        try:
            if create_only and self.protocol == "memory":
                with _MEMORY_CREATE_LOCK:  # fsspec's memory create is check-then-write
                    self.fs.pipe_file(self._path(key), data, mode="create")
            else:
                self.fs.pipe_file(self._path(key), data, mode="create" if create_only else "overwrite")
        except Exception as e:
            raise self._fail(e, key, "write") from e

    def _before_write(self) -> None:
        """Refuse any write, before the first blob goes out, where a version could be lost."""
        self._exclusive_create()

    def _exclusive_create(self) -> bool:
        """True where create_only is exclusive across processes; False (or an error) otherwise."""
        if self.capabilities.atomic_create:
            return True
        if self.single_writer:
            return False
        raise BackendError(
            f"{self.uri}: {self.protocol}:// has no exclusive create, so concurrent writers could overwrite "
            f"each other's versions; if only one process ever writes here, pass --storage-option {SINGLE_WRITER}=true"
        )

    def _create_single_writer(self, key: str, data: bytes) -> None:
        """Check, then write: correct only while one process writes to the store (the user said so)."""
        if self.exists([key]):
            raise AlreadyExists(f"{self.uri}: {key} already exists")
        try:
            self.fs.pipe_file(self._path(key), data)
        except Exception as e:
            raise self._fail(e, key, "write") from e

    def write_many(self, items: Sequence[tuple[str, Source]]) -> None:
        if not items:
            return
        self._before_write()
        for key, reader in [(k, src) for k, src in items if hasattr(src, "read")]:
            self._stream(key, reader)  # a large file: never held whole (few per log: one at a time)
        items = [(k, src) for k, src in items if not hasattr(src, "read")]
        keys = [k for k, _ in items]
        if not getattr(self.fs, "async_impl", False):
            for key, src in items:
                self.write(key, src.read_bytes() if isinstance(src, Path) else bytes(src))
            return
        coros = [
            self.fs._put_file(str(src), self._path(k))
            if isinstance(src, Path)
            else self.fs._pipe_file(self._path(k), bytes(src))
            for k, src in items
        ]
        self._raise_first(keys, self._gather(coros), "write")
        self._written(keys)

    def _stream(self, key: str, reader) -> None:
        """Copy a reader (hashing.HashingReader) in chunks; its check() runs before the object is
        committed, and a failure discards the upload (s3fs aborts the multipart upload), so no
        object ever appears under a digest its bytes do not have."""
        if self.protocol == "memory":  # its files commit when opened; its bytes live in RAM anyway
            data = b"".join(iter(lambda: reader.read(_STREAM_CHUNK), b""))
            reader.check()
            self.write(key, data)
            return
        try:
            f = self.fs.open(self._path(key), "wb")
        except Exception as e:
            raise self._fail(e, key, "write") from e
        try:
            while block := reader.read(_STREAM_CHUNK):
                f.write(block)
            reader.check()
        except BaseException as e:
            f.discard()  # fsspec's buffered files: drop the buffer, abort a multipart upload
            f.closed = True  # nothing to commit: close() (and __del__) must not upload the rest
            if isinstance(e, Exception) and not isinstance(e, (InvalidInput, BackendError)):
                raise self._fail(e, key, "write") from e
            raise
        try:
            f.close()  # the commit: the one PUT, or the multipart upload's completion
        except Exception as e:
            raise self._fail(e, key, "write") from e
        self._written([key])

    def _written(self, keys: list[str]) -> None:
        """Hook: keys just written (S3 keeps its listing snapshot current)."""

    def exists(self, keys: Iterable[str]) -> set[str]:
        keys = list(dict.fromkeys(keys))
        if not getattr(self.fs, "async_impl", False):
            return {k for k in keys if self._exists_one(k)}
        results = self._gather([self.fs._exists(self._path(k)) for k in keys])
        self._raise_first(keys, results, "check")
        return {k for k, found in zip(keys, results) if found}

    def _exists_one(self, key: str) -> bool:
        try:
            return self.fs.isfile(self._path(key))
        except Exception as e:
            raise self._fail(e, key, "check") from e

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        try:
            found = self.fs.find(self._path(prefix), detail=True)
        except FileNotFoundError:
            return
        except Exception as e:
            raise self._fail(e, prefix, "list") from e
        for path, info in sorted(found.items()):
            yield ObjectInfo(key=self._key(path), size=int(info.get("size") or 0), mtime=_mtime(info))

    def delete(self, keys: Iterable[str]) -> None:
        for key in keys:
            try:
                self.fs.rm_file(self._path(key))
            except FileNotFoundError:
                pass  # deleting what is already gone is success
            except Exception as e:
                raise self._fail(e, key, "delete") from e

    def sync(self) -> None:
        """Object stores acknowledge a PUT only once it is durable: nothing to do."""


def _quiet_orphaned_connection_errors(loop) -> None:
    """aiohttp sends each request body from a task of its own. When the server goes away mid-
    request, the request fails (and the backend reports it, naming the key), but that task's copy
    of the same connection error is never retrieved, so asyncio prints it with a traceback when the
    process exits. On fsspec's private I/O loop only, those go to the debug log; anything else
    still reaches asyncio's default handler."""
    if loop.get_exception_handler() is not None:
        return

    def handler(loop, context: dict) -> None:
        exc = context.get("exception")
        connection = isinstance(exc, ConnectionError) or any(
            c.__name__ == "ClientConnectionError" for c in type(exc).__mro__
        )  # aiohttp's, not imported here
        if connection or str(context.get("message", "")).startswith("Unclosed"):
            logger.debug("after a failed request: %s: %r", context.get("message"), exc)
            return
        loop.default_exception_handler(context)

    loop.set_exception_handler(handler)


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
