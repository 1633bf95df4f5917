"""Where a store's bytes went (`artifactkit du`), and what gc would free now and once the grace ends.

Blobs are shared by content, so a version's size is two numbers: the bytes it alone holds (blobs
no other version references: what deleting it and running gc frees) and the bytes it shares. An
artifact's `own` bytes are those no other artifact references. Sizes come from one listing of the
blobs; references from walking every version's trees twice (once to count, once to sum), so
memory is one counter per distinct blob, never a set per version.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

from .layout import MANIFESTS, OBJECTS, TREES, digest_of_object_key
from .maintenance import DEFAULT_GRACE_SECONDS, _Live, _original_key
from .records import iso_of
from .store import Store


@dataclass
class Pending:
    """What gc would delete: `now` with the given grace, `later` once the grace of the younger
    unreferenced files ends (at `later_at`, ISO time; None when there are none)."""

    grace_seconds: float
    now_files: int = 0
    now_bytes: int = 0
    later_files: int = 0
    later_bytes: int = 0
    later_at: str | None = None

    def summary(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class VersionUsage:
    version: str  # vN
    bytes: int  # the distinct blobs it references
    own: int  # of which no other version (of any artifact) references


@dataclass
class ArtifactUsage:
    name: str
    type: str
    bytes: int  # the distinct blobs its versions reference
    own: int  # of which no other artifact references
    versions: list[VersionUsage] = field(default_factory=list)


@dataclass
class Usage:
    store: str
    total: int  # every key in the store: blobs, trees, manifests, records, runs
    blobs: int  # bytes of all blobs, referenced or not
    artifacts: list[ArtifactUsage]
    gc: Pending
    stat_cache: int  # this machine's caches (hashing.cache_dir())
    blob_cache: int

    def summary(self) -> dict[str, Any]:
        return asdict(self)


def pending(store: Store, grace_seconds: float) -> Pending:
    """What `gc --grace grace_seconds` would delete now, and what it will delete once the younger
    files pass the grace. An estimate for reading, never a plan for deleting: gc decides again."""
    listed = [i for prefix in (OBJECTS, TREES, MANIFESTS) for i in store.list_keys(prefix + "/")]
    live = _Live(store).read()
    cutoff = time.time() - grace_seconds
    out = Pending(grace_seconds)
    youngest = None
    for info in listed:
        if live.holds(_original_key(info.key)):
            continue
        size = info.size if digest_of_object_key(_original_key(info.key)) is not None else 0
        if info.mtime is not None and info.mtime > cutoff:
            out.later_files += 1
            out.later_bytes += size
            youngest = info.mtime if youngest is None else max(youngest, info.mtime)
        else:
            out.now_files += 1
            out.now_bytes += size
    if youngest is not None:
        out.later_at = iso_of(youngest + grace_seconds)
    return out


def du(store: Store, grace_seconds: float | None = None) -> Usage:
    """Bytes of the store, per artifact and version (own vs shared), what gc would free, and the
    size of this machine's caches."""
    store.format()
    sizes: dict[str, int] = {}
    blob_bytes = 0
    for info in store.list_keys(OBJECTS + "/"):
        digest = digest_of_object_key(info.key)
        if digest is not None:
            sizes[digest] = info.size
            blob_bytes += info.size
    records = [(name, store.record(name, n)) for name in store.artifact_names() for n in store.version_numbers(name)]
    by_version: dict[str, int] = {}  # digest -> number of versions referencing it
    by_artifact: dict[str, str | None] = {}  # digest -> the one artifact referencing it, None: several
    for name, record in records:
        for digest in _blobs(store, record):
            by_version[digest] = by_version.get(digest, 0) + 1
            by_artifact[digest] = name if by_artifact.get(digest, name) == name else None
    artifacts: dict[str, ArtifactUsage] = {}
    counted: set[str] = set()  # the digests already in the current artifact's bytes
    for name, record in records:  # artifact by artifact
        if name not in artifacts:
            artifacts[name], counted = ArtifactUsage(name, record.type, 0, 0), set()
        a = artifacts[name]
        v = VersionUsage(record.label, 0, 0)
        for digest in _blobs(store, record):
            size = sizes.get(digest, 0)  # a missing blob holds nothing (verify names it)
            v.bytes += size
            v.own += size if by_version[digest] == 1 else 0
            if digest not in counted:
                counted.add(digest)
                a.bytes += size
                a.own += size if by_artifact[digest] == name else 0
        a.versions.append(v)
    total = sum(i.size for i in store.list_keys(""))
    stat, blobs = _cache_sizes()
    grace = DEFAULT_GRACE_SECONDS if grace_seconds is None else grace_seconds
    return Usage(store.uri, total, blob_bytes, list(artifacts.values()), pending(store, grace), stat, blobs)


def _blobs(store: Store, record) -> set[str]:
    """The distinct blobs a version references (one version's set at a time)."""
    return {digest for kind, digest in store.references(record) if kind == "blob"}


def _cache_sizes() -> tuple[int, int]:
    import os

    from .cache import default_blob_cache
    from .hashing import cache_dir

    if os.environ.get("ARTIFACTKIT_CACHE_DIR") == "off":
        return 0, 0
    stat = sum(p.stat().st_size for p in cache_dir().glob("stat.sqlite*") if p.is_file())
    cache = default_blob_cache()
    return stat, cache.size() if cache is not None and cache.root.exists() else 0


def artifact_bytes(store: Store, name: str) -> int:
    """The bytes the versions of `name` reference, each blob counted once (a tree shared by
    several versions is read once)."""
    from .records import check_digest
    from .trees import walk

    digests: dict[str, int] = {}
    trees: set[str] = set()
    for number in store.version_numbers(name):
        record = store.record(name, number)
        if record.layout != "tree":
            digests.update((e.digest, e.size) for e in store.entries(record))
            continue
        for _folder, _digest, tree in walk(store.read_tree, check_digest(record.manifest), seen=trees):
            digests.update((f.digest, f.size) for f in tree.files)
    return sum(digests.values())
