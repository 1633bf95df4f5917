"""Versions, aliases and dedup over any Backend.

Commit order is the crash-safety rule: blobs, then sync, then the manifest, then the version
record (claimed exclusively), then aliases. A reader never sees a version whose bytes are missing;
an interrupted log leaves only unreferenced blobs, and re-running it uploads only what is missing.
Every blob and the manifest a new version references is checked (on a local store: touched) just
before the record is claimed, never assumed present because an earlier version had it, so a
concurrent gc keeps them (maintenance.gc) and a lost blob is uploaded again from the folder.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from .errors import AlreadyExists, IntegrityError, InvalidInput, NotFound
from .hashing import NullStatCache, StatCache, default_stat_cache, digest_bytes
from .ingest import Candidate, Progress, candidates_from_mapping, ingest, refresh, scan_folder
from .layout import alias_key, aliases_prefix, manifest_key, object_key, version_key, versions_prefix, ARTIFACTS
from .manifest import Manifest, VersionRecord, check_name, now_iso, parse_record, to_json, VERSION_RE
from .uri import Ref, open_backend, parse_ref

LATEST = "latest"


@dataclass(frozen=True)
class LogResult:
    record: VersionRecord
    created: bool  # False when the content equals the latest version (nothing new written)
    uploaded_files: int
    uploaded_bytes: int
    seconds: float
    sync_seconds: float = 0.0  # the durability pass (syncfs / fsync) inside `seconds`

    def summary(self) -> dict[str, Any]:
        r = self.record
        return {
            "name": r.name,
            "version": r.label,
            "created": self.created,
            "files": r.files,
            "bytes": r.bytes,
            "uploaded_files": self.uploaded_files,
            "uploaded_bytes": self.uploaded_bytes,
            "seconds": round(self.seconds, 4),
            "sync_seconds": round(self.sync_seconds, 4),
        }


@dataclass(frozen=True)
class VersionInfo:
    record: VersionRecord
    aliases: tuple[str, ...]

    def summary(self) -> dict[str, Any]:
        r = self.record
        return {
            "version": r.label,
            "aliases": list(self.aliases),
            "type": r.type,
            "files": r.files,
            "bytes": r.bytes,
            "created": r.created,
            "metadata": r.metadata,
            "run_id": r.run_id,
        }


class Store:
    def __init__(self, backend, stat_cache: StatCache | NullStatCache | None = None):
        self.backend = backend
        self.stat_cache = stat_cache if stat_cache is not None else default_stat_cache()

    @property
    def uri(self) -> str:
        """The store as every message and report shows it (credentials removed)."""
        return self.backend.uri

    @property
    def url(self) -> str:
        """The full address, to open this store again (another process, a run URI): never shown."""
        return self.backend.url

    # -- reading --------------------------------------------------------------------------
    def artifact_names(self) -> list[str]:
        names = {i.key.split("/")[1] for i in self.backend.list(ARTIFACTS + "/") if i.key.count("/") >= 3}
        return sorted(names)

    def version_numbers(self, name: str) -> list[int]:
        nums = []
        for info in self.backend.list(versions_prefix(name) + "/"):
            stem = info.key.rsplit("/", 1)[-1]
            if stem.endswith(".json") and stem[:-5].isdigit():
                nums.append(int(stem[:-5]))
        return sorted(nums)

    def record(self, name: str, version: int) -> VersionRecord:
        key = version_key(name, version)
        try:
            data = self.backend.read(key)
        except NotFound:
            raise NotFound(f"{self.uri}: {name}:v{version} does not exist") from None
        return parse_record(VersionRecord, data, f"{self.uri}/{key}")

    def aliases(self, name: str) -> dict[str, int]:
        out = {}
        for info in self.backend.list(aliases_prefix(name) + "/"):
            alias = info.key.rsplit("/", 1)[-1]
            if alias.startswith("."):
                continue  # temp files of an alias write in progress
            text = self.backend.read(info.key).decode().strip()
            if text.isdigit():
                out[alias] = int(text)
        return out

    def latest(self, name: str) -> VersionRecord | None:
        nums = self.version_numbers(name)
        return self.record(name, nums[-1]) if nums else None

    def resolve(self, ref: str | Ref) -> VersionRecord:
        """NAME (latest), NAME:vN, NAME:latest or NAME:ALIAS -> the version record."""
        ref = parse_ref(ref) if isinstance(ref, str) else ref
        check_name(ref.name)
        if ref.version is not None:
            return self.record(ref.name, ref.version)
        if ref.selector in (None, LATEST):
            found = self.latest(ref.name)
            if found is None:
                raise NotFound(f"{self.uri}: no artifact named {ref.name!r}")
            return found
        version = self.aliases(ref.name).get(ref.selector)
        if version is None:
            if not self.version_numbers(ref.name):
                raise NotFound(f"{self.uri}: no artifact named {ref.name!r}")
            raise NotFound(f"{self.uri}: {ref.name} has no version or alias {ref.selector!r}")
        return self.record(ref.name, version)

    def versions(self, name: str) -> list[VersionInfo]:
        check_name(name)
        nums = self.version_numbers(name)
        if not nums:
            raise NotFound(f"{self.uri}: no artifact named {name!r}")
        by_version: dict[int, list[str]] = {}
        for alias, v in sorted(self.aliases(name).items()):
            by_version.setdefault(v, []).append(alias)
        by_version.setdefault(nums[-1], []).insert(0, LATEST)
        return [VersionInfo(self.record(name, n), tuple(by_version.get(n, ()))) for n in nums]

    def manifest(self, record: VersionRecord) -> Manifest:
        key = manifest_key(record.manifest)
        data = self.backend.read(key)
        if digest_bytes(data) != record.manifest:
            raise IntegrityError(f"{self.uri}/{key}: manifest bytes do not match their digest")
        return parse_record(Manifest, data, f"{self.uri}/{key}")

    def read_blob(self, digest: str) -> bytes:
        data = self.backend.read(object_key(digest))
        check_blob(self.uri, digest, data)
        return data

    # -- writing --------------------------------------------------------------------------
    def log_folder(self, path: str | os.PathLike, name: str | None = None, **kw: Any) -> LogResult:
        name = name or Path(path).absolute().name
        check_name(name)
        return self._log(scan_folder(path), name, **kw)

    def log_files(
        self,
        files: Mapping[str, bytes | str | os.PathLike],
        name: str,
        entry_meta: Mapping[str, dict] | None = None,
        **kw: Any,
    ) -> LogResult:
        """Log a {manifest path: bytes or local file} mapping as a new version."""
        check_name(name)
        return self._log(candidates_from_mapping(files, entry_meta), name, **kw)

    def _log(
        self,
        candidates: list[Candidate],
        name: str,
        type: str = "dataset",
        aliases: tuple[str, ...] = (),
        metadata: dict[str, Any] | None = None,
        run_id: str | None = None,
        progress: Progress | None = None,
        dedup_latest: bool = True,
    ) -> LogResult:
        start = time.perf_counter()
        for alias in aliases:
            check_alias(alias)
        previous = self.latest(name)
        result = ingest(self.backend, candidates, self.stat_cache, progress)
        sync_start = time.perf_counter()
        self.backend.sync()  # blobs durable before anything references them
        sync_seconds = time.perf_counter() - sync_start
        manifest = Manifest.of(result.entries)
        canonical = manifest.canonical_json()
        digest = digest_bytes(canonical)
        if dedup_latest and previous is not None and previous.manifest == digest:
            record, created = previous, False
        else:
            self._put_manifest(digest, canonical)
            record = self._claim_version(name, digest, manifest, type, metadata or {}, run_id)
            created = True
        for alias in aliases:
            self.set_alias(name, alias, record.version)
        return LogResult(
            record, created, result.uploaded_files, result.uploaded_bytes, time.perf_counter() - start, sync_seconds
        )

    def _put_manifest(self, digest: str, canonical: bytes) -> None:
        key = manifest_key(digest)
        for _ in range(2):
            try:
                self.backend.write(key, canonical, create_only=True)
                return
            except AlreadyExists:
                pass  # identical content: manifests are write-once and named by their digest
            if refresh(self.backend, [key]):
                return  # refreshed (touched), so a concurrent gc keeps it; if a gc took it, write again

    def _claim_version(self, name, digest, manifest, type, metadata, run_id) -> VersionRecord:
        nums = self.version_numbers(name)
        version = nums[-1] + 1 if nums else 0
        while True:
            record = VersionRecord(
                name=name, version=version, type=type, manifest=digest, files=len(manifest.entries),
                bytes=manifest.total_bytes, metadata=metadata, created=now_iso(), run_id=run_id,
            )
            try:
                self.backend.write(version_key(name, version), to_json(record), create_only=True)
                return record
            except AlreadyExists:
                version += 1  # another writer claimed this number first: take the next one

    def set_alias(self, name: str, alias: str, version: int) -> None:
        check_alias(alias)
        self.record(name, version)  # the version must exist
        self.backend.write(alias_key(name, alias), f"{version}\n".encode())

    def remove_alias(self, name: str, alias: str) -> None:
        self.backend.delete([alias_key(name, alias)])


def check_alias(alias: str) -> str:
    check_name(alias, "alias")
    if alias == LATEST or VERSION_RE.match(alias):
        raise InvalidInput(f"invalid alias {alias!r}: 'latest' and vN are derived, not settable")
    return alias


def check_blob(store_uri: str, digest: str, data: bytes) -> None:
    if digest_bytes(data) != digest:
        raise IntegrityError(f"{store_uri}/{object_key(digest)}: blob is corrupt (content does not match its digest)")


def open_store(uri: str | None = None, storage_options: dict[str, Any] | None = None, **kw: Any) -> Store:
    """Open the store at a path or fsspec URL (default: $ARTIFACTKIT_STORE or ./.artifactkit)."""
    from .uri import default_store_uri

    return Store(open_backend(uri or default_store_uri(), storage_options), **kw)
