"""Keeping a store honest: verify re-hashes everything; gc removes what no version references."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from .errors import ArtifactkitError
from .hashing import digest_bytes
from .ingest import Progress
from .layout import MANIFESTS, OBJECTS, digest_of_object_key, manifest_key, object_key
from .store import Store

DEFAULT_GRACE_SECONDS = 3600.0  # in-flight uploads write blobs long before their version record


@dataclass
class VerifyReport:
    objects: int = 0
    versions: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> dict[str, Any]:
        return {"ok": self.ok, "objects": self.objects, "versions": self.versions, "problems": self.problems}


def verify(store: Store, progress: Progress | None = None) -> VerifyReport:
    """Re-hash every blob (progress(bytes, total) hears each one) and check every version's
    manifest and files."""
    report = VerifyReport()
    present: set[str] = set()
    infos = [i for i in store.backend.list(OBJECTS + "/") if digest_of_object_key(i.key)]
    total = sum(i.size or 0 for i in infos)
    for key, data in store.backend.read_many([i.key for i in infos]):
        digest = digest_of_object_key(key)
        report.objects += 1
        if progress:
            progress(len(data), total)
        if digest_bytes(data) != digest:
            report.problems.append(f"{key}: corrupt blob (content does not match its digest)")
        else:
            present.add(digest)
    for name in store.artifact_names():
        for version in store.version_numbers(name):
            report.versions += 1
            where = f"{name}:v{version}"
            try:
                manifest = store.manifest(store.record(name, version))
            except ArtifactkitError as e:
                report.problems.append(f"{where}: {e}")
                continue
            for entry in manifest.entries:
                if entry.digest not in present:
                    report.problems.append(f"{where}: {entry.path} missing blob {object_key(entry.digest)}")
    return report


@dataclass
class GcReport:
    deleted_objects: int = 0
    deleted_bytes: int = 0
    deleted_manifests: int = 0
    kept_recent: int = 0

    def summary(self) -> dict[str, Any]:
        return dict(self.__dict__)


def gc(store: Store, grace_seconds: float = DEFAULT_GRACE_SECONDS) -> GcReport:
    """Delete blobs and manifests that no version references, older than the grace period."""
    live_manifests: set[str] = set()
    live_blobs: set[str] = set()
    for name in store.artifact_names():
        for version in store.version_numbers(name):
            record = store.record(name, version)
            live_manifests.add(record.manifest)
            live_blobs.update(e.digest for e in store.manifest(record).entries)
    cutoff = time.time() - grace_seconds
    report = GcReport()
    doomed: list[str] = []
    for info in store.backend.list(OBJECTS + "/"):
        digest = digest_of_object_key(info.key)
        if digest in live_blobs:
            continue
        if info.mtime is not None and info.mtime > cutoff:
            report.kept_recent += 1
            continue
        doomed.append(info.key)
        report.deleted_objects += digest is not None
        report.deleted_bytes += info.size if digest is not None else 0
    for info in store.backend.list(MANIFESTS + "/"):
        stem = info.key.rsplit("/", 1)[-1].removesuffix(".json")
        if stem in live_manifests or (info.mtime is not None and info.mtime > cutoff):
            continue
        doomed.append(info.key)
        report.deleted_manifests += info.key == manifest_key(stem)
    store.backend.delete(doomed)
    return report
