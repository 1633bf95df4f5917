"""Moving versions: out of a store into a folder (pull), and from one store to another (push).

pull verifies every blob against its digest and writes each file through a temp file and a
rename, so the destination never holds a corrupt or partial file. Files already there with the
right content are left alone.
"""

from __future__ import annotations

import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import InvalidInput, NotFound
from .hashing import digest_file
from .ingest import Progress
from .layout import digest_of_object_key, object_key, version_key
from .manifest import Entry, VersionRecord, check_relative_path, to_json
from .store import Store, check_blob
from .uri import Ref, parse_ref

_BATCH_BYTES = 64 << 20


@dataclass(frozen=True)
class PullResult:
    record: VersionRecord
    dest: Path
    written_files: int
    reused_files: int
    bytes: int
    seconds: float

    def summary(self) -> dict[str, Any]:
        return {
            "name": self.record.name, "version": self.record.label, "dest": str(self.dest),
            "files": self.record.files, "written_files": self.written_files,
            "reused_files": self.reused_files, "bytes": self.bytes, "seconds": round(self.seconds, 4),
        }


def pull(store: Store, ref: str | Ref, dest: str | os.PathLike, progress: Progress | None = None) -> PullResult:
    start = time.perf_counter()
    record = store.resolve(ref)
    entries = store.manifest(record).entries
    dest = Path(dest)
    targets = [(e, _target(dest, e.path)) for e in entries]  # refuse unsafe paths before writing
    todo = [(e, t) for e, t in targets if not _already_there(store, e, t)]
    written = 0
    for batch in _batches(todo):
        blobs = dict(store.backend.read_many(sorted({object_key(e.digest) for e, _ in batch})))
        for entry, target in batch:
            data = blobs[object_key(entry.digest)]
            check_blob(store.uri, entry.digest, data)
            _write_atomic(target, data)
            written += 1
            if progress:
                progress(entry.size, record.bytes)
    reused = len(targets) - len(todo)
    if progress:
        progress(sum(e.size for e, _ in targets) - sum(e.size for e, _ in todo), record.bytes)
    return PullResult(record, dest, written, reused, record.bytes, time.perf_counter() - start)


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


def _batches(items: list[tuple[Entry, Path]]):
    batch, size = [], 0
    for item in items:
        batch.append(item)
        size += item[0].size
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
    versions: list[str]
    uploaded_files: int
    uploaded_bytes: int
    seconds: float

    def summary(self) -> dict[str, Any]:
        return {
            "name": self.name, "versions": self.versions, "uploaded_files": self.uploaded_files,
            "uploaded_bytes": self.uploaded_bytes, "seconds": round(self.seconds, 4),
        }


def push(src: Store, ref: str | Ref, dst: Store) -> PushResult:
    """Copy one version (NAME:vN / NAME:ALIAS) or every version (NAME) with the same numbers,
    in commit order: missing blobs, then manifests, then version records, then aliases."""
    start = time.perf_counter()
    ref = parse_ref(ref) if isinstance(ref, str) else ref
    records = [src.resolve(ref)] if ref.selector else [i.record for i in src.versions(ref.name)]
    files = nbytes = 0
    for record in records:
        f, b = _push_version(src, record, dst)
        files, nbytes = files + f, nbytes + b
    src_aliases = src.aliases(ref.name)
    pushed = {r.version for r in records}
    for alias, version in src_aliases.items():
        if version in pushed:
            dst.set_alias(ref.name, alias, version)
    return PushResult(ref.name, [r.label for r in records], files, nbytes, time.perf_counter() - start)


def _push_version(src: Store, record: VersionRecord, dst: Store) -> tuple[int, int]:
    try:
        existing = dst.record(record.name, record.version)
    except NotFound:
        existing = None
    if existing is not None:
        if existing.manifest != record.manifest:
            raise InvalidInput(
                f"{dst.uri}: {record.name}:{record.label} exists with different content; refusing to overwrite"
            )
        return 0, 0
    manifest = src.manifest(record)
    by_digest = {e.digest: e.size for e in manifest.entries}
    present = dst.backend.exists([object_key(d) for d in by_digest])
    missing = [d for d in by_digest if object_key(d) not in present]
    for batch in _digest_batches(missing, by_digest):
        items = []
        for key, data in src.backend.read_many([object_key(d) for d in batch]):
            digest = digest_of_object_key(key)
            check_blob(src.uri, digest, data)
            items.append((key, data))
        dst.backend.write_many(items)
    dst.backend.sync()
    dst._put_manifest(record.manifest, manifest.canonical_json())
    # Same number as in the source, so `pull NAME:vN` means the same bytes in every store.
    dst.backend.write(version_key(record.name, record.version), to_json(record), create_only=True)
    return len(missing), sum(by_digest[d] for d in missing)


def _digest_batches(digests: list[str], sizes: dict[str, int]):
    batch, size = [], 0
    for d in digests:
        batch.append(d)
        size += sizes[d]
        if size >= _BATCH_BYTES:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch
