"""S3 and S3-compatible stores (AWS, MinIO, R2, Ceph, moto) through s3fs.

What this adds to the generic fsspec backend, and why:
- Exclusive create is a conditional PUT (If-None-Match: *). Some servers ignore the header and
  overwrite, which would let two writers claim the same version silently, so before its first
  write a backend probes once: a create-only PUT of a fixed marker key must be refused when the
  marker exists (1 request; 2 the very first time). A server that does not refuse is reported,
  unless the user declares a single writer (--storage-option single_writer=true).
- Existence checks pick the cheaper of concurrent HEADs (a few keys: a new version that changed
  2 files) and one paginated listing (many keys: a first upload), see bench/s3_transfer.py.
- Retries are botocore's (standard mode, exponential backoff with jitter), configured once here.
- Errors become one line naming the store URI and key; no URL query, credential or header text.
"""

from __future__ import annotations

import os
import time
from typing import Any, Iterable, Iterator

from ..errors import AlreadyExists, BackendError, InvalidInput, NotFound
from ..redact import redact
from .base import Capabilities, ObjectInfo
from .fs import SINGLE_WRITER, FsspecBackend

PROBE_KEY = ".artifactkit/conditional-put-probe"
_PROBE_BODY = b"artifactkit: a create-only PUT of this key must be refused (If-None-Match: *)\n"
_HEAD_MAX = 64  # up to this many keys: concurrent HEADs (one request each, all in flight at once)
_KEYS_PER_PAGE = 32  # above it: list if the listing takes fewer than keys/32 pages of 1000 keys
_SNAPSHOT_TTL = 300.0  # seconds a listing answers existence questions (blobs are immutable)
_DEFAULT_CONFIG = {"max_pool_connections": 64, "connect_timeout": 10, "read_timeout": 60}
_CREDENTIAL_CODES = {
    "AccessDenied",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "InvalidToken",
    "AuthorizationHeaderMalformed",
    "RequestTimeTooSkewed",
    "403",
}
_UNREACHABLE = (
    "EndpointConnectionError",
    "ConnectTimeoutError",
    "ConnectionClosedError",
    "ReadTimeoutError",
    "ClientConnectorError",
    "ServerDisconnectedError",
    "ProxyConnectionError",
    "SSLError",
)


class S3Backend(FsspecBackend):
    def __init__(self, uri: str, storage_options: dict[str, Any] | None = None):
        super().__init__(uri, storage_options)
        self.bucket = self.root.split("/", 1)[0]
        if not self.bucket:
            raise InvalidInput(f"invalid store URI {uri!r}: expected s3://BUCKET[/PREFIX]")
        self.capabilities = Capabilities(
            atomic_create=True, atomic_replace=True, pack_small_blobs=True, conditional_replace=True
        )  # until probed
        self._conditional: bool | None = None
        self._if_match: bool | None = None
        self._snapshots: dict[str, tuple[float, set[str]]] = {}

    def _make_fs(self, cls, options: dict[str, Any]):
        options = dict(options)
        # Our listings must be fresh (version numbers); s3fs would otherwise answer from a cache.
        options.setdefault("use_listings_cache", False)
        config = {**_DEFAULT_CONFIG, **(options.pop("config_kwargs", None) or {})}
        config["retries"] = {**_retry_defaults(options.get("profile")), **(config.get("retries") or {})}
        client = options.get("client_kwargs") or {}
        self._endpoint = (
            options.get("endpoint_url")
            or client.get("endpoint_url")
            or os.environ.get("AWS_ENDPOINT_URL_S3")
            or os.environ.get("AWS_ENDPOINT_URL")
        )
        self._secrets = [
            options.get("secret"),
            options.get("token"),
            client.get("aws_secret_access_key"),
            os.environ.get("AWS_SECRET_ACCESS_KEY"),
            os.environ.get("AWS_SESSION_TOKEN"),
        ]
        return super()._make_fs(cls, {**options, "config_kwargs": config})

    # -- errors -------------------------------------------------------------------------------
    def _fail(self, e: BaseException, key: str, doing: str) -> Exception:
        code, name = _error_code(e), _error_names(e)
        where = f"{self.uri}: cannot {doing} {key}"
        if code == "NoSuchBucket" or "specified bucket does not exist" in str(e):
            return BackendError(f"{self.uri}: bucket {self.bucket!r} does not exist at {self._where()}")
        if isinstance(e, FileExistsError) or code == "PreconditionFailed":
            return AlreadyExists(f"{self.uri}: {key} already exists")
        if isinstance(e, FileNotFoundError):
            return NotFound(f"{self.uri}: {key} not found")
        if "NoCredentialsError" in name:
            return BackendError(
                f"{self.uri}: no S3 credentials found (set AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or --storage-option anon=true)"
            )
        if code in _CREDENTIAL_CODES or isinstance(e, PermissionError):
            return BackendError(
                f"{where}: access denied ({code or 'PermissionError'}) at {self._where()}: check the "
                "credentials (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE, --storage-option key=/secret=)"
            )
        if any(n in name for n in _UNREACHABLE):
            return BackendError(
                f"{where}: cannot reach the S3 endpoint {self._where()} ({next(n for n in _UNREACHABLE if n in name)})"
            )
        if code is None and not isinstance(e, OSError):
            return super()._fail(e, key, doing)
        return BackendError(f"{where}: {code or type(e).__name__}: {redact(str(e), self._secrets)}")

    def _where(self) -> str:
        return redact(self._endpoint, self._secrets) if self._endpoint else "the default AWS endpoint"

    # -- conditional PUT --------------------------------------------------------------------

    def _probe_conditional_put(self) -> bool:
        """Does the server refuse a create-only PUT of an existing key? The marker stays, so from
        the second run on the first attempt is already refused: one request per process."""
        for _ in range(2):
            try:
                self.fs.pipe_file(self._path(PROBE_KEY), _PROBE_BODY, mode="create")
            except FileExistsError:
                return True
            except Exception as e:
                if _error_code(e) in ("NotImplemented", "501"):
                    return False  # the server rejects the header: no exclusive create here
                raise self._fail(e, PROBE_KEY, "write") from e
        return False

    def _exclusive_create(self) -> bool:
        if self._conditional is None:
            self._conditional = self._probe_conditional_put()
            self.capabilities = Capabilities(
                atomic_create=self._conditional,
                atomic_replace=True,
                pack_small_blobs=True,
                conditional_replace=self._conditional,
            )
        if self._conditional or self.single_writer:
            return bool(self._conditional)
        raise BackendError(
            f"{self.uri}: the S3 server at {self._where()} does not enforce conditional writes "
            "(If-None-Match: *), so concurrent writers could overwrite each other's versions. Use a "
            "server that does (AWS S3, MinIO, Cloudflare R2 do), or, if only one process ever writes "
            f"to this store, pass --storage-option {SINGLE_WRITER}=true"
        )

    # -- compare-and-swap (a run holder's fenced writes, fencing.py) -------------------------
    def _probe_if_match(self) -> bool:
        """Does the server refuse a PUT whose If-Match names another ETag? Asked once per process
        (of the marker the create probe left): a server that honours If-None-Match but ignores
        If-Match would let a paused holder overwrite its successor."""
        try:
            self.fs.pipe_file(self._path(PROBE_KEY), _PROBE_BODY, IfMatch='"00000000000000000000000000000000"')
        except Exception as e:
            if _error_code(e) in ("PreconditionFailed", "412", "NoSuchKey", "404"):
                return True
            if _error_code(e) in ("NotImplemented", "501"):
                return False
            raise self._fail(e, PROBE_KEY, "write") from e
        return False

    def _compare_and_swap(self) -> bool:
        """True where replace() is a compare-and-swap (probed once); False where the user declared
        a single writer on a server without conditional writes (then replace() just writes)."""
        if not self._exclusive_create():
            return False
        if self._if_match is None:
            self._if_match = self._probe_if_match()
            if not self._if_match:
                self.capabilities = Capabilities(atomic_create=True, atomic_replace=True, pack_small_blobs=True)
        if self._if_match or self.single_writer:
            return bool(self._if_match)
        raise BackendError(
            f"{self.uri}: the S3 server at {self._where()} ignores If-Match on PUT, so a run holder "
            "that lost its run could overwrite its successor's records; use a server that honours "
            f"conditional writes, or pass --storage-option {SINGLE_WRITER}=true"
        )

    def read_tagged(self, key: str) -> tuple[bytes | None, str | None]:
        """(the object's bytes, its ETag) in one GET, or (None, None) if there is no such key."""
        from fsspec.asyn import sync

        _, _, k = self._path(key).partition("/")

        async def get() -> tuple[bytes, str]:
            resp = await self.fs._call_s3("get_object", Bucket=self.bucket, Key=k)
            body = resp["Body"]
            try:
                return await body.read(), str(resp["ETag"])
            finally:
                body.close()

        try:
            return sync(self.fs.loop, get)
        except FileNotFoundError:
            return None, None
        except Exception as e:
            raise self._fail(e, key, "read") from e

    def replace(self, key: str, data: bytes, etag: str | None) -> None:
        """Write key only if it still has this ETag (None: only if it does not exist); otherwise
        AlreadyExists (changed or created meanwhile) or NotFound (deleted meanwhile)."""
        if not self._compare_and_swap():
            self.write(key, data)
            return
        condition = {"IfMatch": etag} if etag is not None else {"IfNoneMatch": "*"}
        try:
            self.fs.pipe_file(self._path(key), data, **condition)
        except Exception as e:
            if _error_code(e) == "ConditionalRequestConflict":  # AWS: another conditional write in flight
                raise AlreadyExists(f"{self.uri}: {key} changed while being written") from None
            raise self._fail(e, key, "write") from e
        self._written([key])

    # -- reading ------------------------------------------------------------------------------
    def _cat_kwargs(self) -> dict[str, Any]:
        return {"max_concurrency": 1}  # else s3fs sends a HEAD before every GET to plan ranges

    def exists(self, keys: Iterable[str]) -> set[str]:
        keys = list(dict.fromkeys(keys))
        by_top: dict[str, list[str]] = {}
        for k in keys:
            by_top.setdefault(k.split("/", 1)[0] if "/" in k else "", []).append(k)
        found: set[str] = set()
        to_head: list[str] = []
        for top, group in by_top.items():
            listed = self._snapshot(top, len(group)) if top else None
            if listed is None:
                to_head += group
            else:
                found.update(k for k in group if k in listed)
        return found | self._head_many(to_head)

    def _snapshot(self, top: str, wanted: int) -> set[str] | None:
        """Every key under top/, from one listing kept a few minutes, or None where HEADs are cheaper."""
        cached = self._snapshots.get(top)
        if cached and time.monotonic() - cached[0] < _SNAPSHOT_TTL:
            return cached[1]
        if wanted <= _HEAD_MAX:
            return None
        listed: set[str] = set()
        for pages, page in enumerate(self._pages(top + "/"), 1):
            if pages > max(1, wanted // _KEYS_PER_PAGE):
                return None  # a big store: listing it would cost more than asking for each key
            listed.update(self._key(f"{self.bucket}/{o['Key']}") for o in page)
        self._snapshots[top] = (time.monotonic(), listed)
        return listed

    def _head_many(self, keys: list[str]) -> set[str]:
        if not keys:
            return set()

        async def head(key: str) -> bool:
            _, _, k = self._path(key).partition("/")
            try:
                await self.fs._call_s3("head_object", Bucket=self.bucket, Key=k)
                return True
            except FileNotFoundError:
                return False

        results = self._gather([head(k) for k in keys])
        self._raise_first(keys, results, "check")
        return {k for k, r in zip(keys, results) if r is True}

    def _pages(self, prefix: str) -> Iterator[list[dict]]:
        """list_objects_v2 pages under prefix (1000 keys each), one request per page."""
        _, _, kprefix = self._path(prefix).partition("/")
        token = None
        while True:
            kw = {"ContinuationToken": token} if token else {}
            try:
                resp = self.fs.call_s3("list_objects_v2", Bucket=self.bucket, Prefix=kprefix, **kw)
            except Exception as e:
                raise self._fail(e, prefix, "list") from e
            yield resp.get("Contents", [])
            token = resp.get("NextContinuationToken")
            if not resp.get("IsTruncated") or not token:
                return

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        if prefix and not prefix.endswith("/"):
            prefix += "/"  # folder semantics, as on a local disk: "objects" never matches "objectsX/"
        for page in self._pages(prefix):
            for o in page:
                mtime = o.get("LastModified")
                yield ObjectInfo(
                    key=self._key(f"{self.bucket}/{o['Key']}"),
                    size=int(o.get("Size") or 0),
                    mtime=mtime.timestamp() if mtime is not None else None,
                )

    # -- keeping the listing snapshot current ------------------------------------------------
    def _written(self, keys: list[str]) -> None:
        for k in keys:
            cached = self._snapshots.get(k.split("/", 1)[0])
            if cached:
                cached[1].add(k)

    def forget_listings(self) -> None:
        """A log or push begins (objects.py): drop the listing snapshots, so that a long-lived
        process does not count a blob as there because it was a few minutes ago."""
        self._snapshots.clear()

    def delete(self, keys: Iterable[str]) -> None:
        keys = list(keys)
        for k in keys:
            cached = self._snapshots.get(k.split("/", 1)[0])
            if cached:
                cached[1].discard(k)
        paths = [self._path(k) for k in keys]
        if paths:
            try:
                self.fs.rm(paths)  # DeleteObjects, 1000 keys a request; missing keys are no error
            except Exception as e:
                raise self._fail(e, keys[0], "delete") from e


def _retry_defaults(profile: str | None) -> dict[str, Any]:
    """botocore's standard retry mode (exponential backoff with jitter, retries throttling, 5xx
    and connection errors), 5 attempts; whatever the user set in AWS_RETRY_MODE/AWS_MAX_ATTEMPTS
    or the AWS config file wins, because a client-side retries dict would override those."""
    try:
        import botocore.session

        session = botocore.session.Session(profile=profile)
        max_attempts = session.get_config_variable("max_attempts")
        mode = session.get_config_variable("retry_mode")
    except Exception:  # a broken or missing profile: botocore reports it on the first request
        return {}
    out: dict[str, Any] = {}
    if max_attempts is None:
        out["max_attempts"] = 5
    if mode in (None, "legacy") and not os.environ.get("AWS_RETRY_MODE"):
        out["mode"] = "standard"
    return out


def _chain(e: BaseException) -> Iterator[BaseException]:
    seen = 0
    while e is not None and seen < 8:
        yield e
        e, seen = e.__cause__ or e.__context__, seen + 1


def _error_code(e: BaseException) -> str | None:
    """The S3 error code ("NoSuchBucket", "AccessDenied", …) of the botocore error behind e."""
    for x in _chain(e):
        response = getattr(x, "response", None)
        if isinstance(response, dict):
            code = (response.get("Error") or {}).get("Code")
            if code:
                return str(code)
    return None


def _error_names(e: BaseException) -> str:
    return " ".join(type(x).__name__ for x in _chain(e))
