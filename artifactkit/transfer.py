"""Moving versions: out of a store into a folder (pull), and from one store to another (push).

pull verifies every blob against its digest and writes each file through a temp file and a
rename, so the destination never holds a corrupt or partial file. Files already there with the
right content are left alone, and blobs of a remote store come from this machine's blob cache
when it has them (cache.py), so pulling v1 after v0 downloads only what changed.

push copies in commit order (all missing blobs, then manifests, then version records, then
aliases), with one existence check for every version it sends, so an interrupted push leaves
only unreferenced blobs and running it again sends only what is still missing.
"""

from __future__ import annotations

import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .cache import BlobCache, default_blob_cache
from .errors import InvalidInput
from .hashing import digest_file
from .ingest import Progress
from .manifest import Entry, VersionRecord, check_relative_path
from .store import Store
from .uri import Ref, parse_ref

_BATCH_BYTES = 64 << 20  # bytes held in memory per batch of concurrent reads


@dataclass(frozen=True)
class PullResult:
    record: VersionRecord
    dest: Path
    written_files: int
    reused_files: int
    bytes: int
    seconds: float
    downloaded_files: int = 0  # blobs fetched from the store (not the destination, not the cache)
    downloaded_bytes: int = 0

    def summary(self) -> dict[str, Any]:
        return {
            "name": self.record.name, "version": self.record.label, "dest": str(self.dest),
            "files": self.record.files, "written_files": self.written_files,
            "reused_files": self.reused_files, "downloaded_files": self.downloaded_files,
            "downloaded_bytes": self.downloaded_bytes, "bytes": self.bytes, "seconds": round(self.seconds, 4),
        }


def pull(
    store: Store,
    ref: str | Ref,
    dest: str | os.PathLike,
    progress: Progress | None = None,
    cache: BlobCache | bool = True,
) -> PullResult:
    """Write a version into dest. cache: True for the default blob cache on remote stores,
    False for none, or a BlobCache to use."""
    start = time.perf_counter()
    record = store.resolve(ref)
    entries = store.manifest(record).entries
    dest = Path(dest)
    targets = [(e, _target(dest, e.path)) for e in entries]  # refuse unsafe paths before writing
    todo = [(e, t) for e, t in targets if not _already_there(store, e, t)]
    if progress:
        progress(sum(e.size for e, _ in targets) - sum(e.size for e, _ in todo), record.bytes)
    blob_cache = _cache_for(store, cache)
    written = downloaded = downloaded_bytes = 0
    for batch in _batches(todo, lambda item: item[0].size):
        blobs, fetched = _fetch(store, blob_cache, {e.digest: e.size for e, _ in batch})
        downloaded, downloaded_bytes = downloaded + len(fetched), downloaded_bytes + sum(fetched.values())
        for entry, target in batch:
            _write_atomic(target, blobs[entry.digest])
            written += 1
            if progress:
                progress(entry.size, record.bytes)
    return PullResult(record, dest, written, len(targets) - len(todo), record.bytes,
                      time.perf_counter() - start, downloaded, downloaded_bytes)


def _cache_for(store: Store, cache: BlobCache | bool) -> BlobCache | None:
    if isinstance(cache, BlobCache):
        return cache
    return default_blob_cache() if cache and store.remote else None


def _fetch(store: Store, cache: BlobCache | None, sizes: dict[str, int]) -> tuple[dict[str, bytes], dict[str, int]]:
    """Verified blobs by digest, from the cache where it has them, else in one concurrent batch
    from the store (and then into the cache). Also returns {digest: size} of what was downloaded."""
    blobs = cache.get_many(sizes) if cache else {}
    missing = [d for d in sizes if d not in blobs]
    blobs.update(store.read_blobs(missing))
    if cache and missing:
        cache.put_many({d: blobs[d] for d in missing})
    return blobs, {d: sizes[d] for d in missing}


def _target(dest: Path, path: str) -> Path:
    try:
        check_relative_path(path)
    except ValueError as e:
        raise InvalidInput(f"refusing to pull: {e}") from None
    target = dest / path
    real_dest = dest.resolve()
    real = target.resolve()
    if real_dest not in real.parents:
        raise InvalidInput(f"refusing to pull {path!r}: it would land outside {dest}")
    return target


def _already_there(store: Store, entry: Entry, target: Path) -> bool:
    try:
        st = target.stat()
    except OSError:
        return False
    if st.st_size != entry.size:
        return False
    key = str(target.absolute())
    digest = store.stat_cache.lookup(key, st)
    if digest is None:
        digest = digest_file(target)
        store.stat_cache.remember(key, st, digest)
    return digest == entry.digest


def _batches(items: list, size_of):
    batch, size = [], 0
    for item in items:
        batch.append(item)
        size += size_of(item)
        if size >= _BATCH_BYTES:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


def _write_atomic(target: Path, data: bytes) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.{uuid.uuid4().hex[:8]}.part"
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@dataclass(frozen=True)
class PushResult:
    name: str
    versions: list[str]  # every version asked for, in the destination now
    sent_versions: list[str]  # those this push wrote (the others were there already)
    uploaded_files: int
    uploaded_bytes: int
    seconds: float

    def summary(self) -> dict[str, Any]:
        return {
            "name": self.name, "versions": self.versions, "sent_versions": self.sent_versions,
            "uploaded_files": self.uploaded_files, "uploaded_bytes": self.uploaded_bytes,
            "seconds": round(self.seconds, 4),
        }


def push(src: Store, ref: str | Ref, dst: Store) -> PushResult:
    """Copy one version (NAME:vN / NAME:ALIAS) or every version (NAME) with the same numbers,
    so that `pull NAME:vN` means the same bytes in every store."""
    start = time.perf_counter()
    ref = parse_ref(ref) if isinstance(ref, str) else ref
    records = [src.resolve(ref)] if ref.selector else [i.record for i in src.versions(ref.name)]
    in_dst = set(dst.version_numbers(ref.name))
    todo = [r for r in records if not (r.version in in_dst and dst.holds(r))]
    manifests = {r.version: src.manifest(r) for r in todo}
    sizes = {e.digest: e.size for m in manifests.values() for e in m.entries}
    files, nbytes = _send_blobs(src, dst, sizes)
    for r in todo:  # put_manifest makes the blobs durable before the first one references them
        dst.put_manifest(r.manifest, manifests[r.version].canonical_json())
    for r in todo:
        dst.put_version(r)
    pushed = {r.version for r in records}
    for alias, version in src.aliases(ref.name).items():
        if version in pushed:
            dst.set_alias(ref.name, alias, version)
    return PushResult(ref.name, [r.label for r in records], [r.label for r in todo], files, nbytes,
                      time.perf_counter() - start)


def _send_blobs(src: Store, dst: Store, sizes: dict[str, int]) -> tuple[int, int]:
    """Copy the blobs dst lacks (one batched existence check), verifying each on the way."""
    missing = dst.missing_blobs(sizes)
    for batch in _batches(missing, sizes.__getitem__):
        dst.copy_blobs(src, batch)
    return len(missing), sum(sizes[d] for d in missing)
