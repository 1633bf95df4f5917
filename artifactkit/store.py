"""Versions, aliases and dedup over any Backend.

Commit order is the crash-safety rule: blobs and trees (format 2; a manifest in format 1), then
sync, then the version record (claimed exclusively), then aliases. A reader never sees a version
whose bytes are missing; an interrupted log leaves only unreferenced blobs and trees, and re-running
it uploads only what is missing. Every blob and tree a new version references is checked (on a
local store: touched) before the record is claimed, never assumed present because an earlier
version or a re-used tree had it, so a lost blob is uploaded again from the folder; and the whole
log holds a writer lock (locks.py), so no gc deletes what it wrote or re-used, however long it runs.

Deleting a version leaves a tombstone (a copy of its record under artifacts/<name>/deleted/), so a
version number is never reused: `NAME:v3` means the same bytes for as long as the store lives, as
in W&B. Order: tombstone, then the version's aliases, then the record; a new version takes one
more than the highest number ever used (versions listed first, then tombstones, so a delete racing
a log is always seen in one or the other). Blobs stay until `gc` finds nothing references them.
"""

from __future__ import annotations

import copy
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

from .errors import AlreadyExists, InvalidInput, NotFound
from .fencing import (
    ALIAS_TEXT,
    DELETED_ALIAS,
    announce,
    claimed_after_takeover,
    is_alias_key,
    replace_fenced,
    run_fence,
    stampable,
)
from .ingest import Candidate, Ingestor, IngestResult, Progress, candidates_from_mapping, ingest
from .layout import (
    OBJECTS,
    alias_key,
    aliases_prefix,
    artifacts_prefix,
    manifest_key,
    name_of_artifact_key,
    number_of_key,
    run_folder_prefix,
    run_record_key,
    runs_prefix,
    tombstone_key,
    tombstones_prefix,
    version_key,
    versions_prefix,
)
from .locks import writing
from .names import NAME_RE, VERSION_RE, check_name, check_run_id, is_settable_alias
from .nesting import check_depth
from .objects import ObjectStore
from .records import Entry, Manifest, VersionRecord, check_digest, check_tree, now_iso, parse_record, to_json
from .run_keys import LockKeys, RunKeys
from .trees import entries as tree_entries
from .trees import trees_of, walk
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
class _Built:
    """What a log's build step stored (the same fields as treelog.FolderLogResult)."""

    root: str
    files: int
    bytes: int
    uploaded_files: int
    uploaded_bytes: int


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


class Store(ObjectStore):
    """The one door to a store: every key is spelled in layout.py, every record read through
    here is validated (and checked against the key it came from), every blob and tree read is
    checked against its digest (ObjectStore, objects.py: the content-addressed objects; this class:
    versions, aliases, runs, logging and deleting). Nothing outside these two classes (and
    maintenance of the store) calls a backend."""

    _lease: Any = None  # a run holder's lease.Lease (fenced_by): every record write is fenced by it

    def exists(self) -> bool:
        """Whether anything was ever written here (a version, a run or a blob); stops at the first
        key found (one listing page on S3, the first files of a walk on a local folder)."""
        prefixes = (artifacts_prefix(), runs_prefix(), OBJECTS + "/")
        return any(next(iter(self.backend.list(p)), None) is not None for p in prefixes)

    # -- reading versions -------------------------------------------------------------------
    def artifact_names(self) -> list[str]:
        names = {name_of_artifact_key(i.key) for i in self.backend.list(artifacts_prefix())}
        return sorted(n for n in names if n is not None and NAME_RE.fullmatch(n))  # others: stray folders

    def version_numbers(self, name: str) -> list[int]:
        """The versions of `name`; files in its versions folder that are not <n>.json are strays."""
        nums = (number_of_key(i.key) for i in self.backend.list(versions_prefix(check_name(name)) + "/"))
        return sorted(n for n in nums if n is not None)

    def record(self, name: str, version: int) -> VersionRecord:
        key = version_key(check_name(name), version)
        try:
            data = self.backend.read(key)
        except NotFound:
            gone = "was deleted" if self.backend.exists([tombstone_key(name, version)]) else "does not exist"
            raise NotFound(f"{self.uri}: {name}:v{version} {gone}") from None
        record = parse_record(VersionRecord, data, self._where(key))
        if (record.name, record.version) != (name, version):
            raise InvalidInput(
                f"{self._where(key)}: the record says {record.name}:{record.label}, not {name}:v{version}"
            )
        return record

    def aliases(self, name: str) -> dict[str, int]:
        out, stamps = {}, {}
        for info in self.backend.list(aliases_prefix(check_name(name)) + "/"):
            alias = info.key.rsplit("/", 1)[-1]
            if not is_settable_alias(alias):
                continue  # temp files of an alias write in progress, stray files
            data = self.backend.read(info.key)
            found = ALIAS_TEXT.fullmatch(data)  # "<version>\n", stamped " g<generation>" by a fenced write
            if not found:
                raise InvalidInput(
                    f"{self._where(info.key)}: not an alias (expected a version number, found {data[:40]!r})"
                )
            if found.group(1) == b"-":
                continue  # removed by a run holder on a store with conditional writes (fencing.py)
            out[alias] = int(found.group(1))
            if found.group(2) is not None:
                stamps[alias] = int(found.group(2))
        for alias in [a for a in stamps if self._created_after_takeover(name, out[a], stamps[a])]:
            del out[alias]
        return out

    def _created_after_takeover(self, name: str, version: int, stamp: int) -> bool:
        """A takeover stamps every alias of the run's artifacts with its generation (fencing.py):
        one with an older stamp than the run's was created after it by a holder that had lost the
        run (the run is the one that claimed the version the alias names)."""
        try:
            run_id = self.record(name, version).run_id
            current = self._run_fence(run_id)[0] if run_id is not None else None
        except NotFound:
            return False
        return current is not None and stamp < current

    def latest(self, name: str) -> VersionRecord | None:
        """The highest version, except one a run holder claimed after it had lost its run (its
        create landed after the takeover: runs.RunRecord.claimed_after_takeover)."""
        for number in reversed(self.version_numbers(name)):
            record = self.record(name, number)
            if not self.claimed_after_takeover(record):
                return record
        return None

    def claimed_after_takeover(self, record: VersionRecord) -> bool:
        """Whether a run holder claimed this version after it had lost its run (fencing.py)."""
        if record.generation is None or record.run_id is None:
            return False  # not a run holder's claim
        try:
            generation, floors = self._run_fence(record.run_id)
        except NotFound:
            return False  # the run was deleted: nothing fences its versions any more
        return claimed_after_takeover(record, generation, floors)

    def _run_fence(self, run_id: str) -> tuple[int | None, dict[str, int]]:
        """The run record's generation and versions_at_takeover (fencing.run_fence)."""
        return run_fence(*self.runs.read_run(run_id))

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
        nums = self.version_numbers(name)
        if not nums:
            raise NotFound(f"{self.uri}: no artifact named {name!r}")
        by_version: dict[int, list[str]] = {}
        for alias, v in sorted(self.aliases(name).items()):
            by_version.setdefault(v, []).append(alias)
        latest = self.latest(name)
        if latest is not None:
            by_version.setdefault(latest.version, []).insert(0, LATEST)
        return [VersionInfo(self.record(name, n), tuple(by_version.get(n, ()))) for n in nums]

    def holds(self, record: VersionRecord) -> bool:
        """True if this store has this version with the same content, False if it has no such
        version; an error if the number is taken by other content."""
        try:
            existing = self.record(record.name, record.version)
        except NotFound:
            return False
        if (existing.manifest, existing.layout) != (record.manifest, record.layout):
            raise InvalidInput(
                f"{self.uri}: {record.name}:{record.label} exists with different content; refusing to overwrite"
            )
        return True

    def manifest(self, record: VersionRecord) -> Manifest:
        """Every entry of a version at once (sorted by path). For a version of any size, prefer
        entries(), which streams them."""
        if record.layout == "tree":
            return Manifest.of(list(self.entries(record)))
        key = manifest_key(record.manifest)
        return parse_record(Manifest, self._manifest_bytes(record.manifest), self._where(key))

    def entries(self, record: VersionRecord, prefix: str | None = None) -> Iterator[Entry]:
        """The files of a version, streamed (never all held at once for a tree version: one tree
        per folder level). prefix: a folder or file path; only the trees on its way are read.
        Order: folder by folder, names sorted within each (a flat version: sorted by path)."""
        if record.layout == "tree":
            yield from tree_entries(self.read_tree, check_digest(record.manifest), prefix or "")
            return
        wanted = (prefix or "").strip("/")
        for e in self.manifest(record).entries:
            if not wanted or e.path == wanted or e.path.startswith(wanted + "/"):
                yield e

    def references(self, record: VersionRecord) -> Iterator[tuple[str, str]]:
        """("manifest" | "tree" | "blob", digest) for everything a version needs in the store."""
        if record.layout == "flat":
            yield "manifest", record.manifest
            for e in self.manifest(record).entries:
                yield "blob", e.digest
            return
        # each tree once (two identical folders share one; a forged DAG of 41 trees is 2^40 paths)
        for _folder, digest, tree in walk(self.read_tree, check_digest(record.manifest), seen=set()):
            yield "tree", digest
            for f in tree.files:
                yield "blob", f.digest

    def blob_sizes(self, record: VersionRecord) -> dict[str, int]:
        """{digest: size} of every blob a version holds, each tree read once."""
        if record.layout == "flat":
            return {e.digest: e.size for e in self.manifest(record).entries}
        walked = walk(self.read_tree, check_digest(record.manifest), seen=set())
        return {f.digest: f.size for _folder, _digest, tree in walked for f in tree.files}

    # -- runs/<id>/ and locks/: their own rooms (run_keys.py), bound to this store (fenced or not) --
    @property
    def runs(self) -> RunKeys:
        """The run records, metrics and leases of this store, by run id (runs.py and lease.py own
        their models; every write through this store, so a run holder's are fenced)."""
        return RunKeys(self)

    @property
    def locks(self) -> LockKeys:
        """The writers' and gc's locks (locks.py owns the protocol)."""
        return LockKeys(self)

    def fenced_by(self, lease: Any) -> "Store":
        """This store, with every write of a record, alias, metric or version claim fenced by a
        run holder's lease.Lease (refused once another process took the run): a compare-and-swap
        of a stamped object where the backend has conditional_replace (fencing.py), else through
        Lease.fenced (on a local store: under the lock claims take)."""
        fenced = copy.copy(self)
        fenced._lease = lease
        return fenced

    def _write(self, key: str, data: bytes, create_only: bool = False) -> None:
        """A record write, fenced when this store is a run holder's (fenced_by)."""
        lease = self._lease
        if lease is None:
            self.backend.write(key, data, create_only=create_only)
        elif not create_only and stampable(key) and self.backend.capabilities.conditional_replace:
            replace_fenced(self.backend, key, data, lease, self._where(key))
        else:
            lease.fenced(lambda: self.backend.write(key, data, create_only=create_only))

    def _delete(self, keys: list[str]) -> None:
        """Deletes, fenced when this store is a run holder's. On a store with conditional replace
        an alias is replaced with a stamped "deleted" body instead (a compare-and-swap), and a
        version's delete is announced first (delete_version): see fencing.py."""
        lease = self._lease
        if lease is not None and self.backend.capabilities.conditional_replace:
            for key in [k for k in keys if is_alias_key(k)]:
                replace_fenced(self.backend, key, DELETED_ALIAS, lease, self._where(key))
            keys = [k for k in keys if not is_alias_key(k)]
        delete = lambda: self.backend.delete(keys)  # noqa: E731
        lease.fenced(delete) if lease is not None else delete()

    @contextmanager
    def _announced(self, refs: list[str]) -> Iterator[None]:
        """Around a holder's delete of versions (NAME:vN) on a store with conditional replace:
        announced in its run record before (so a takeover completes them before it reads state,
        or the announcement is refused), and taken off it after (fencing.py)."""
        lease = self._lease
        if lease is None or not self.backend.capabilities.conditional_replace:
            yield
            return
        key = run_record_key(check_run_id(lease.run_id))
        announce(self.backend, key, refs, [], lease.generation, lease, self._where(key))
        yield
        announce(self.backend, key, [], refs, lease.generation, lease, self._where(key))

    # -- writing --------------------------------------------------------------------------
    def log_folder(self, path: str | os.PathLike, name: str | None = None, full: bool = False, **kw: Any) -> LogResult:
        """Log a folder as a new version, folder by folder (treelog.py: memory bounded; an
        unchanged folder costs a stat per file and one check of its tree). full: check every
        file's blob in the store, trusting no tree (restores blobs lost from under unchanged
        folders, which only verify would otherwise find)."""
        from .treelog import FolderLog

        name = name or Path(path).absolute().name
        check_name(name)
        folder = FolderLog(self, full=full)
        folder.check(path)  # every refusal before anything is written
        return self._log(lambda progress: folder.run(path, progress), name, **kw)

    def log_files(
        self,
        files: Mapping[str, bytes | str | os.PathLike],
        name: str,
        entry_meta: Mapping[str, dict] | None = None,
        **kw: Any,
    ) -> LogResult:
        """Log a {manifest path: bytes or local file} mapping as a new version."""
        check_name(name)
        candidates = candidates_from_mapping(files, entry_meta)
        check_tree([c.path for c in candidates])

        def build(progress):
            result = self.ingest(candidates, progress)
            root, trees, nfiles, nbytes = trees_of(sorted(result.entries, key=lambda e: e.path))
            self.put_trees(trees)
            return _Built(root, nfiles, nbytes, result.uploaded_files, result.uploaded_bytes)

        return self._log(build, name, **kw)

    def ingest(self, candidates: list[Candidate], progress: Progress | None = None) -> IngestResult:
        """Hash files and make sure the store holds each blob (ingest.ingest: existing ones
        refreshed, missing ones written, hashed on the way). Durable with the next sync."""
        self._ensure_format()
        self.forget_listings()
        return ingest(self.backend, candidates, self.stat_cache, progress)

    def ingestor(self, progress: Progress | None = None, total: int | None = None) -> Ingestor:
        """An Ingestor (ingest.py) writing into this store: one per log, batches across folders."""
        self._ensure_format()
        self.forget_listings()
        return Ingestor(self.backend, self.stat_cache, progress, total)

    def _log(
        self,
        build: Callable[[Progress | None], Any],
        name: str,
        type: str = "dataset",
        aliases: tuple[str, ...] = (),
        metadata: dict[str, Any] | None = None,
        run_id: str | None = None,
        progress: Progress | None = None,
        dedup_latest: bool = True,
    ) -> LogResult:
        """build(progress) stores the blobs and trees of the new content and returns its root
        tree, totals and upload counts; then everything is made durable and the version claimed."""
        start = time.perf_counter()
        for alias in aliases:
            check_alias(alias)
        check_depth(metadata, "metadata")  # a record nested deeper would not read back
        self._ensure_format()
        with writing(self, f"log {name}") as writer:  # a gc deletes nothing this log relies on (locks.py)
            previous = self.latest(name)
            built = build(progress)
            sync_start = time.perf_counter()
            self.backend.sync()  # blobs and trees durable before a record references them
            sync_seconds = time.perf_counter() - sync_start
            if dedup_latest and previous is not None and self._same_content(previous, built.root):
                record, created = previous, False
            else:
                writer.before_commit(built.root)
                record = self._claim_version(name, built.root, built.files, built.bytes, type, metadata or {}, run_id)
                writer.after_commit(record)
                created = True
            for alias in aliases:
                self.set_alias(name, alias, record.version)
        return LogResult(
            record, created, built.uploaded_files, built.uploaded_bytes, time.perf_counter() - start, sync_seconds
        )

    def _same_content(self, previous: VersionRecord, root: str) -> bool:
        """Whether a version holds the content of this root tree. A format-1 (flat) version is
        compared through the trees its entries make: once, on the first log after an upgrade."""
        if previous.layout == "tree":
            return previous.manifest == root
        return trees_of(list(self.manifest(previous).entries))[0] == root

    def put_version(self, record: VersionRecord) -> None:
        """Write a version record under its own number (create-or-same: the number may already
        hold this content, never other content). Its manifest must be in the store already."""
        check_name(record.name)
        self._ensure_format()
        gone = self.tombstone(record.name, record.version)
        if gone is not None and (gone.manifest, gone.layout) != (record.manifest, record.layout):
            raise InvalidInput(
                f"{self.uri}: {record.name}:{record.label} was deleted here and held other content; "
                "a version number is never reused"
            )
        try:
            self._write(version_key(record.name, record.version), to_json(record), create_only=True)
        except AlreadyExists:
            self.holds(record)  # a concurrent push of the same version is fine; anything else is not

    def _claim_version(self, name, root, files, nbytes, type, metadata, run_id) -> VersionRecord:
        nums = self.version_numbers(name) + self.deleted_versions(name)  # in this order: see the docstring
        version = max(nums) + 1 if nums else 0
        while True:
            record = VersionRecord(
                name=name,
                version=version,
                type=type,
                manifest=root,
                layout="tree",
                files=files,
                bytes=nbytes,
                metadata=metadata,
                created=now_iso(),
                run_id=run_id,
                generation=self._lease.generation if self._lease is not None else None,
            )
            try:
                self._write(version_key(name, version), to_json(record), create_only=True)
                return record
            except AlreadyExists:
                version += 1  # another writer claimed this number first: take the next one

    def set_alias(self, name: str, alias: str, version: int) -> None:
        check_alias(alias)
        self.record(name, version)  # the version must exist
        self._write(alias_key(name, alias), f"{version}\n".encode())

    def remove_alias(self, name: str, alias: str) -> None:
        self._delete([alias_key(check_name(name), check_alias(alias))])

    # -- deleting (lifecycle.py decides what may go; these only do it, in a crash-safe order) --
    def deleted_versions(self, name: str) -> list[int]:
        """Numbers of the deleted versions of `name` (their tombstones)."""
        nums = (number_of_key(i.key) for i in self.backend.list(tombstones_prefix(check_name(name)) + "/"))
        return sorted(n for n in nums if n is not None)

    def tombstone(self, name: str, version: int) -> VersionRecord | None:
        """The record a deleted version had, or None if that number was never deleted."""
        key = tombstone_key(check_name(name), version)
        try:
            data = self.backend.read(key)
        except NotFound:
            return None
        record = parse_record(VersionRecord, data, self._where(key))
        if (record.name, record.version) != (name, version):
            raise InvalidInput(
                f"{self._where(key)}: the tombstone says {record.name}:{record.label}, not {name}:v{version}"
            )
        return record

    def delete_version(self, name: str, version: int) -> tuple[VersionRecord, list[str]]:
        """Delete one version record and the aliases pointing at it; returns (the record, the
        aliases removed). Its blobs stay until gc. A crash part-way leaves the version readable
        (the record goes last) and a rerun finishes the job."""
        record = self.record(name, version)
        with self._announced([f"{name}:v{version}"]):  # S3: a takeover completes it or it is refused
            removed = self._delete_version(record)
        return record, removed

    def _delete_version(self, record: VersionRecord) -> list[str]:
        name, version = record.name, record.version
        self._write(tombstone_key(name, version), to_json(record))
        removed = sorted(a for a, v in self.aliases(name).items() if v == version)
        self._delete([alias_key(name, a) for a in removed])
        self._delete([version_key(name, version)])
        return removed

    def delete_run(self, run_id: str) -> int:
        """Delete every key in the run's folder (the record last: a crash leaves a run to delete
        again, never a folder without its record). Returns the number of keys deleted."""
        record = run_record_key(check_run_id(run_id))
        keys = [i.key for i in self.backend.list(run_folder_prefix(run_id)) if i.key != record]
        self.backend.delete(keys)
        self.backend.delete([record])
        return len(keys) + 1

    @contextmanager
    def reading(self, record: VersionRecord, doing: str) -> Iterator[None]:
        """Around a read of a version's manifest and blobs: a blob or manifest gone because the
        version was deleted (and gc ran) meanwhile becomes one clear line, not a missing key."""
        try:
            yield
        except NotFound:
            if self.backend.exists([version_key(record.name, record.version)]):
                raise  # the version is there: a lost blob (verify names it), not a delete
            raise NotFound(
                f"{self.uri}: {record.name}:{record.label} was deleted while {doing} "
                "(nothing was left half-written; use another version)"
            ) from None


def check_alias(alias: str) -> str:
    check_name(alias, "alias")
    if alias == LATEST or VERSION_RE.fullmatch(alias):
        raise InvalidInput(f"invalid alias {alias!r}: 'latest' and vN are derived, not settable")
    return alias


def open_store(
    uri: str | None = None, storage_options: dict[str, Any] | None = None, *, must_exist: bool = False, **kw: Any
) -> Store:
    """Open the store at a path or fsspec URL (default: $ARTIFACTKIT_STORE or ./.artifactkit).
    must_exist: refuse a location holding no store (anything but the first write into it)."""
    from .uri import default_store_uri

    store = Store(open_backend(uri or default_store_uri(), storage_options), **kw)
    store.format()  # a store of a newer format is refused before anything reads or writes it
    if must_exist and not store.exists():
        raise NotFound(f"{store.uri}: no artifactkit store there (nothing logged yet; check the path or URL)")
    return store
