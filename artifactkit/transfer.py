"""Moving versions: out of a store into a folder (pull), and from one store to another (push).

pull verifies every blob against its digest and writes each file through a short-named temp file
and a rename (fileio.FileWriter, atomic_path for a streamed one), so the destination never holds
a corrupt or partial file, and a killed pull leaves only temp names that a later log skips. No
file is fsynced on its own: one syncfs of dest at the end makes all of them durable. A version deleted (and its blobs
collected) while it is pulled fails with one line saying so (Store.reading); every file written
before that is complete. Files already there with the right
content are left alone; a file there with other content is a local edit: pull refuses and names
it unless force. Files not in the version are reported, and removed only when asked (delete).
Blobs above _STREAM_BYTES are streamed to disk and hashed in chunks, never held whole. Blobs of
a remote store come from this machine's blob cache when it has them (cache.py), so pulling v1
after v0 downloads only what changed.

push copies in commit order (all missing blobs, then trees or manifests, then version records,
then aliases), with one existence check for every version it sends, so an interrupted push leaves
only unreferenced blobs and running it again sends only what is still missing.
"""

from __future__ import annotations

import errno
import os
import shutil
import time
from array import array
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from itertools import groupby
from pathlib import Path
from typing import Any, BinaryIO, Iterable, Iterator, Sequence

from .cache import BlobCache, default_blob_cache
from .errors import BackendError, InvalidInput, NotFound
from .fileio import FileWriter, atomic_path, syncfs
from .folderscan import is_temp_name
from .hashing import digest_file
from .ingest import Progress
from .locks import writing
from .names import check_relative_path, is_below
from .records import Entry, VersionRecord
from .store import Store
from .uri import Ref, parse_ref

_BATCH_BYTES = 64 << 20  # bytes held in memory per batch of concurrent reads
_BATCH_ITEMS = 4096  # enough to keep a remote store's concurrent reads busy
_STREAM_BYTES = 16 << 20  # larger blobs are streamed to disk, never held whole
_SHOWN = 5  # names listed in a refusal before "and N more"
_KEPT_MAX = 2_000_000  # files whose entries the plan keeps for the write pass (~40 B each: 80 MB)


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
    extra_files: tuple[str, ...] = ()  # files in dest that the version does not have
    deleted_files: int = 0  # of those, removed (delete=True)

    def summary(self) -> dict[str, Any]:
        return {
            "name": self.record.name,
            "version": self.record.label,
            "dest": str(self.dest),
            "files": self.written_files + self.reused_files,
            "written_files": self.written_files,
            "reused_files": self.reused_files,
            "downloaded_files": self.downloaded_files,
            "downloaded_bytes": self.downloaded_bytes,
            "bytes": self.bytes,
            "seconds": round(self.seconds, 4),
            "extra_files": list(self.extra_files),
            "deleted_files": self.deleted_files,
        }


@dataclass
class _Plan:
    total: int = 0  # bytes of the files pulled
    todo: int = 0  # files to write
    todo_bytes: int = 0
    reused: int = 0
    changed: list[str] = field(default_factory=list)  # files in dest whose content differs from the version's
    extra: list[str] = field(default_factory=list)
    kept: _Kept | None = None  # the folders planned, for the write pass (None: too many, read again)


class _Kept:
    """The entries the plan read, compactly (~40 B a file, not the ~640 B of an Entry), so the write
    pass need not read and validate every tree again (a third of a 200k-file pull); up to _KEPT_MAX
    files, above that (memory) the write pass reads the trees again."""

    def __init__(self) -> None:
        self.folders: list[tuple[str, str, bytes, array, dict[int, dict]]] = []
        self.files = 0

    def add(self, folder: str, entries: list[Entry]) -> bool:
        """Keep one folder's entries; False (and nothing kept any more) past _KEPT_MAX files."""
        self.files += len(entries)
        if self.files > _KEPT_MAX:
            self.folders = []
            return False
        names = "/".join(e.path.rpartition("/")[2] for e in entries)  # a name holds no "/"
        digests = bytes.fromhex("".join(e.digest for e in entries))
        metas = {i: e.meta for i, e in enumerate(entries) if e.meta is not None}
        self.folders.append((folder, names, digests, array("q", [e.size for e in entries]), metas))
        return True

    def __iter__(self) -> Iterator[tuple[str, list[Entry]]]:
        for folder, names, digests, sizes, metas in self.folders:
            base = folder + "/" if folder else ""
            hexes = digests.hex()
            # fields from trees the plan read and validated: checked_already, no second validation
            yield (
                folder,
                [
                    Entry.checked_already(base + name, hexes[32 * i : 32 * i + 32], sizes[i], metas.get(i))
                    for i, name in enumerate(names.split("/"))
                ],
            )


def pull(
    store: Store,
    ref: str | Ref,
    dest: str | os.PathLike,
    progress: Progress | None = None,
    cache: BlobCache | bool = True,
    force: bool = False,
    delete: bool = False,
    include: Sequence[str] | None = None,
) -> PullResult:
    """Write a version into dest. Refuses (naming them) files in dest that differ from the
    version unless force; delete removes files the version does not have. cache: True for the
    default blob cache on remote stores, False for none, or a BlobCache to use. include: glob
    patterns (fnmatch on the manifest path, `*` matching across `/` too): only the files that
    match one are pulled, and only matching files in dest count as extra (reported, deleted).

    Two passes over the version, folder by folder: the first plans (and refuses) without
    writing, the second writes what the first kept (_Kept: ~40 B a file, up to _KEPT_MAX files;
    above that it reads the trees again). Memory holds one folder's entries as Entry objects (and
    the version's folder names): a million-file pull stays small."""
    start = time.perf_counter()
    record = store.resolve(ref)
    dest = Path(dest)
    if dest.exists() and not dest.is_dir():
        raise InvalidInput(f"refusing to pull into {dest}: it is a file, not a folder")
    with store.reading(record, "pulling"):  # deleted (and gc'd) meanwhile: one clear line
        plan = _plan(store, record, dest, include)  # every refusal happens before anything is written
    if plan.changed and not force:
        raise InvalidInput(
            f"refusing to pull {record.name}:{record.label} into {dest}: {len(plan.changed)} files there differ "
            f"from it ({_names(plan.changed)}); pass --force to overwrite them"
        )
    if progress:
        progress(plan.total - plan.todo_bytes, plan.total)
    store.stat_cache.flush()  # the second pass finds what the first one hashed
    written = [0]
    with store.reading(record, "pulling"):
        folders = plan.kept if plan.kept is not None else _by_folder(store, record, include)
        todo = (item for folder, entries in folders for item in _to_write(store, dest, folder, entries))
        downloaded, downloaded_bytes = _write_all(store, _cache_for(store, cache), todo, plan, progress, written)
    if written[0]:
        _sync(dest)  # the files written are durable when pull returns: one flush, not one a file
    deleted = 0
    if delete:
        for rel in plan.extra:
            (dest / rel).unlink(missing_ok=True)
            deleted += 1
    store.stat_cache.flush()
    return PullResult(
        record,
        dest,
        written[0],
        plan.reused,
        plan.total,
        time.perf_counter() - start,
        downloaded,
        downloaded_bytes,
        tuple(plan.extra),
        deleted,
    )


def _by_folder(store: Store, record: VersionRecord, include: Sequence[str] | None) -> Iterator[tuple[str, list[Entry]]]:
    """(folder, its entries to pull) for every folder of the version holding one, each once; with
    include, only the trees under each glob's literal folder are read (`d042/*` reads the trees
    on the way to d042 and below it). Raises NotFound when no file matches include."""
    if isinstance(include, str):
        raise TypeError("include is a list of glob patterns, not one string")
    found = False
    for prefix in [""] if include is None else _folders_of(include):
        stream: Iterable[Entry] = store.entries(record, prefix)
        if record.layout != "tree":  # a flat manifest is sorted by path, not folder by folder
            stream = sorted(stream, key=lambda e: e.path.rpartition("/")[::2])
        for folder, group in groupby(stream, key=lambda e: e.path.rpartition("/")[0]):
            chosen = [e for e in group if _matches(e.path, include)]
            if chosen:
                found = True
                yield folder, chosen
    if include is not None and not found:
        shown = " ".join(repr(g) for g in include)
        raise NotFound(f"no file of {record.name}:{record.label} matches --include {shown}")


def _folders_of(include: Sequence[str]) -> list[str]:
    """The paths below which the globs can match (the literal text before a glob's first wildcard,
    cut at its last '/'; a glob without wildcards is its own path), none inside another."""
    paths = set()
    for glob in include:
        cut = min((i for i in (glob.find(c) for c in "*?[") if i >= 0), default=None)
        paths.add(glob if cut is None else glob[:cut].rpartition("/")[0])
    kept: list[str] = []
    for path in sorted(paths):  # an ancestor sorts before what is inside it
        if not any(q == "" or path.startswith(q + "/") for q in kept):
            kept.append(path)
    return kept


def _matches(path: str, include: Sequence[str] | None) -> bool:
    return include is None or any(fnmatchcase(path, glob) for glob in include)


def _plan(store: Store, record: VersionRecord, dest: Path, include: Sequence[str] | None) -> _Plan:
    """The first pass: what a pull would write, reuse and refuse, without writing anything."""
    plan = _Plan(kept=_Kept())
    real_dest = dest.resolve()
    checked: set[str] = set()  # folders of dest known to be folders inside it (or absent)
    visited: set[str] = set()  # the version's folders (a few per thousand files)
    for folder, entries in _by_folder(store, record, include):
        listing = _folder_listing(record, dest, real_dest, folder, entries[0].path, checked)
        visited.add(folder)
        if plan.kept is not None and not plan.kept.add(folder, entries):
            plan.kept = None
        names = set()
        for entry in entries:
            name = entry.path.rpartition("/")[2]
            names.add(name)
            plan.total += entry.size
            state = _state(store, record, dest, real_dest, listing.get(name), entry)
            if state == "reused":
                plan.reused += 1
                continue
            plan.todo += 1
            plan.todo_bytes += entry.size
            if state == "changed":
                plan.changed.append(entry.path)
        plan.extra.extend(
            p
            for n, e in listing.items()
            if n not in names
            and not e.is_dir(follow_symlinks=False)
            and not is_temp_name(n)
            and _matches(p := _join(folder, n), include)
        )
    plan.extra.extend(_extra_files(dest, visited, include))
    plan.extra.sort()
    return plan


def _to_write(store: Store, dest: Path, folder: str, entries: list[Entry]) -> Iterator[tuple[Entry, str]]:
    """The second pass, one folder: the files not already there (the plan checked the rest), as
    (entry, target path): a string, not a Path (a million of them cost seconds)."""
    base = os.path.join(dest, folder) if folder else str(dest)
    try:
        listing = {e.name: e for e in os.scandir(base)}
    except OSError:
        listing = {}
    for entry in entries:
        name = entry.path.rpartition("/")[2]
        found = listing.get(name)
        if found is None or not _already_there(store, entry, Path(found.path)):
            yield entry, f"{base}/{name}"


def _folder_listing(
    record, dest: Path, real_dest: Path, folder: str, path: str, checked: set[str]
) -> dict[str, os.DirEntry]:
    """What dest holds in one folder of the version, after checking that every folder on the way
    is a folder (or absent) and lands inside dest (a symlinked folder may point elsewhere)."""
    parts = folder.split("/") if folder else []
    for depth in range(1, len(parts) + 1):
        rel = "/".join(parts[:depth])
        if rel in checked:
            continue
        here = dest / rel
        if here.is_symlink() and not is_below(os.path.realpath(here), str(real_dest)):
            raise InvalidInput(f"refusing to pull {path!r}: it would land outside {dest}")
        if here.exists() and not here.is_dir():
            raise InvalidInput(
                f"refusing to pull {record.name}:{record.label}: {here} is a file, "
                f"where the version has a folder (for {path})"
            )
        checked.add(rel)
    try:
        return {e.name: e for e in os.scandir(dest / folder if folder else dest)}
    except OSError:
        return {}


def _state(store: Store, record, dest: Path, real_dest: Path, found: os.DirEntry | None, entry: Entry) -> str:
    """ "new", "reused" or "changed" for one file of the version, refusing what cannot be pulled."""
    try:
        check_relative_path(entry.path)
    except ValueError as e:
        raise InvalidInput(f"refusing to pull: {e}") from None
    if found is None:
        return "new"
    target = Path(found.path)
    if found.is_symlink() and not is_below(os.path.realpath(target), str(real_dest)):
        raise InvalidInput(f"refusing to pull {entry.path!r}: it would land outside {dest}")
    if found.is_dir():
        raise InvalidInput(
            f"refusing to pull {record.name}:{record.label}: {target} is a folder, where the version has a file"
        )
    return "reused" if _already_there(store, entry, target) else "changed"


def _extra_files(dest: Path, visited: set[str], include: Sequence[str] | None) -> list[str]:
    """Files in the folders of dest that the version has none of (the version's own folders were
    compared name by name in the plan)."""
    extra = []
    for dirpath, _dirs, names in os.walk(dest):
        rel_dir = os.path.relpath(dirpath, dest).replace(os.sep, "/")
        rel_dir = "" if rel_dir == "." else rel_dir
        if rel_dir in visited:
            continue
        for name in names:
            rel = _join(rel_dir, name)
            if not is_temp_name(name) and _matches(rel, include):
                extra.append(rel)
    return extra


def _join(folder: str, name: str) -> str:
    return f"{folder}/{name}" if folder else name


def _write_all(
    store, blob_cache, todo: Iterator[tuple[Entry, str]], plan: _Plan, progress, written: list[int]
) -> tuple[int, int]:
    """Write every file todo yields (small ones fetched in batches of bounded bytes, large ones
    streamed); written[0] counts completed files (for an error message)."""
    downloaded = downloaded_bytes = 0
    writer = FileWriter()  # each folder made once, four system calls a file, no fsync per file
    # a streamed blob is never held whole: it counts as its chunk buffer
    for batch in _batches(todo, lambda item: min(item[0].size, _STREAM_BYTES)):
        small = [(e, t) for e, t in batch if e.size <= _STREAM_BYTES]
        blobs, fetched = _fetch(store, blob_cache, {e.digest: e.size for e, _ in small})
        downloaded, downloaded_bytes = downloaded + len(fetched), downloaded_bytes + sum(fetched.values())
        for entry, target in batch:
            if entry.size <= _STREAM_BYTES:
                _write_one(target, written, lambda path: writer.write(path, blobs[entry.digest]))
            else:
                _write_one(target, written, lambda path: _stream_into(store, entry, path))
                downloaded, downloaded_bytes = downloaded + 1, downloaded_bytes + entry.size
            if progress:
                progress(entry.size, plan.total)
    return downloaded, downloaded_bytes


def cat(store: Store, ref: str | Ref, path: str, out: BinaryIO) -> Entry:
    """Write one file of a version to `out` (binary), checked against its digest before any
    byte goes out; a large blob is streamed in chunks, never held whole."""
    record = store.resolve(ref)
    entry = next((e for e in store.entries(record, prefix=path) if e.path == path), None)
    if entry is None:
        folder = path.rstrip("/")
        inside = sum(1 for _ in store.entries(record, prefix=folder + "/"))
        what = (
            f"{folder!r} is a folder of {inside} files (pull --include '{folder}/*' fetches them)"
            if inside
            else f"no file {path!r}"
        )
        raise NotFound(f"{store.uri}: {record.name}:{record.label}: {what}")
    if entry.size <= _STREAM_BYTES:
        out.write(store.read_blob(entry.digest))
    else:
        with store.open_blob(entry.digest) as f:
            shutil.copyfileobj(f, out, 4 << 20)
    out.flush()
    return entry


def _write_one(target: str, written: list[int], write) -> None:
    """One file through a temp file and a rename (write(target) does both); a failed write (disk
    full) is one line naming the file and how many were completed, and its temp file is gone."""
    try:
        write(target)
    except OSError as e:
        reason = "no space left on device" if e.errno == errno.ENOSPC else (e.strerror or str(e))
        raise BackendError(
            f"cannot write {target}: {reason}; pull stopped with {written[0]} files completed, no partial file left"
        ) from e
    written[0] += 1


def _stream_into(store: Store, entry: Entry, target: str) -> None:
    """A large blob: streamed into a temp file and hashed in chunks (renamed only if intact)."""
    with atomic_path(target) as tmp:
        store.read_blob_to(entry.digest, tmp)


def _sync(dest: Path) -> None:
    """The filesystem holding dest flushed once (syncfs), else everything (sync) where it lacks one."""
    if not syncfs(dest) and hasattr(os, "sync"):
        os.sync()


def _names(paths: list[str]) -> str:
    shown = ", ".join(paths[:_SHOWN])
    return shown + (f" and {len(paths) - _SHOWN} more" if len(paths) > _SHOWN else "")


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
    if not is_below(os.path.realpath(target), os.path.realpath(dest)):
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


def _batches(items: Iterable, size_of):
    """Consecutive items in lists of about _BATCH_BYTES by size_of, and at most _BATCH_ITEMS
    (a batch of 64 MB of 1 kB files would hold 65,000 entries and paths besides the bytes)."""
    batch, size = [], 0
    for item in items:
        batch.append(item)
        size += size_of(item)
        if size >= _BATCH_BYTES or len(batch) >= _BATCH_ITEMS:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


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
            "name": self.name,
            "versions": self.versions,
            "sent_versions": self.sent_versions,
            "uploaded_files": self.uploaded_files,
            "uploaded_bytes": self.uploaded_bytes,
            "seconds": round(self.seconds, 4),
        }


def push(src: Store, ref: str | Ref, dst: Store, progress: Progress | None = None) -> PushResult:
    """Copy one version (NAME:vN / NAME:ALIAS) or every version (NAME) with the same numbers,
    so that `pull NAME:vN` means the same bytes in every store. progress(bytes, total) hears
    each batch of blobs sent."""
    start = time.perf_counter()
    ref = parse_ref(ref) if isinstance(ref, str) else ref
    records = [src.resolve(ref)] if ref.selector else [i.record for i in src.versions(ref.name)]
    in_dst = set(dst.version_numbers(ref.name))
    todo = [r for r in records if not (r.version in in_dst and dst.holds(r))]
    sizes = {d: n for r in todo for d, n in src.blob_sizes(r).items()}
    with writing(dst, f"push {ref.name}") as writer:  # no gc deletes what this push sends or re-uses
        files, nbytes = _send_blobs(src, dst, sizes, progress)
        for r in todo:  # then the metadata: trees (children first) or a flat manifest
            if r.layout == "tree":
                trees = [d for kind, d in src.references(r) if kind == "tree"]
                missing = set(dst.missing_trees(trees))  # only those are read and sent: O(changed)
                dst.put_trees([(d, src.tree_bytes(d)) for d in reversed(trees) if d in missing])
        for r in todo:  # put_manifest makes everything written so far durable before it is referenced
            if r.layout == "flat":
                dst.put_manifest(r.manifest, src.manifest(r).canonical_json())
        dst.sync()
        for r in todo:
            writer.before_commit(r.manifest if r.layout == "tree" else None)
            dst.put_version(r)
            writer.after_commit(r)
        pushed = {r.version for r in records}
        for alias, version in src.aliases(ref.name).items():
            if version in pushed:
                dst.set_alias(ref.name, alias, version)
    return PushResult(
        ref.name, [r.label for r in records], [r.label for r in todo], files, nbytes, time.perf_counter() - start
    )


def _send_blobs(src: Store, dst: Store, sizes: dict[str, int], progress: Progress | None) -> tuple[int, int]:
    """Copy the blobs dst lacks (one batched existence check), verifying each on the way."""
    dst.forget_listings()
    missing = dst.missing_blobs(sizes)
    total = sum(sizes[d] for d in missing)
    for batch in _batches(missing, sizes.__getitem__):
        dst.copy_blobs(src, batch, sizes)
        if progress:
            progress(sum(sizes[d] for d in batch), total)
    return len(missing), total
