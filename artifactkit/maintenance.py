"""Keeping a store honest: verify re-hashes everything; gc removes what no version references.

gc holds the store's gc lock and deletes nothing while a writer lock is live (locks.py): that,
not the grace period or the mechanisms below, is what keeps a log of any duration safe. The
mechanisms below remain for what no lock covers (stores written by older versions of this code).

gc safety rule: gc never deletes a blob, tree or manifest referenced by a version committed
before gc finishes (it marks through every live version's trees, and treats trees as blobs
below). Four mechanisms, because a log may find a blob already present (left by an interrupted
log long ago, older than the grace period) or trust a tree it holds, at any moment while gc runs:
- gc reads the version records after listing objects, and reads them again just before deleting
  (and, on a local store, once more after moving the doomed files aside): whatever a version
  committed meanwhile references is spared;
- on a local store a log touches every blob it re-uses (ingest.refresh) and the tree of every
  unchanged folder it re-uses (treelog.py: its blobs are trusted, not touched) before committing,
  and gc does not unlink a doomed file directly: it renames it to a trash name beside it, then
  checks its mtime. A touch before the rename shows (the file is put back); a touch after it
  fails, and the log uploads the blob again from its folder (or logs the folder again). A trash
  file left by a killed gc is put back by the next gc if it is referenced, deleted otherwise;
- a tree gc keeps keeps everything it lists (a recent tree, one touched while gc ran, a live
  one): gc settles the trees first, then spares every blob and subtree a kept tree lists (put
  back from a trash name if a gc, this one, a killed one or a concurrent one, set it aside; if a
  kept tree cannot be read at all, this gc deletes no blob), and deletes doomed trees before
  doomed blobs;
- object stores have no touch: there the re-reads are the protection, and the window left is
  between gc's last re-read and its delete request (docs/invariants.md).
"""

from __future__ import annotations

import os
import random
import re
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

from .backends.base import ObjectInfo
from .errors import ArtifactkitError, InvalidInput, NotFound
from .hashing import digest_bytes, hash_file
from .ingest import Progress
from .layout import (
    MANIFESTS,
    OBJECTS,
    TREES,
    digest_of_object_key,
    digest_of_tree_key,
    manifest_key,
    object_key,
    tree_key,
)
from .locks import collecting
from .records import check_digest, iso_of
from .store import Store
from .trees import Tree, walk

DEFAULT_GRACE_SECONDS = 3600.0  # in-flight uploads write blobs long before their version record
TRASH_PREFIX = ".ak-gc-"  # a doomed file, moved aside by gc until it is sure (local stores)
_STREAM_BYTES = 16 << 20  # blobs above this are verified in chunks, never read whole
_BATCH_BYTES = 64 << 20


@dataclass
class VerifyReport:
    objects: int = 0
    versions: int = 0
    problems: list[str] = field(default_factory=list)
    damage: dict[str, list[str]] = field(default_factory=dict)  # NAME:vN -> its files' problems
    hashed: int = 0  # blobs re-hashed (all of them unless a sample was asked for)
    hashed_bytes: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "objects": self.objects,
            "versions": self.versions,
            "problems": self.problems,
            "damage": self.damage,
            "hashed": self.hashed,
            "hashed_bytes": self.hashed_bytes,
        }


# How each kind of version's lost file can come back (by VersionRecord.type).
_REPAIR = {
    "dataset": "log-dataset --full of a folder holding the file puts it back",
    "model": "a checkpoint's tensor cannot be made again: push {ref} from a store that holds it, or `rm {ref}`",
    "evaluation": "an evaluation table is made by training: push {ref} from a store that holds it, or `rm {ref}`",
}
_REPAIR_OTHER = (
    "log it again with --full from a folder holding the file, push {ref} from a store that holds it, or `rm {ref}`"
)
_SAMPLE = re.compile(r"(?:(\d+(?:\.\d+)?)%|(\d+(?:\.\d+)?)\s*(B|kB|KB|MB|GB|TB))\Z")
_UNITS = {"B": 1, "kB": 1e3, "KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12}


def parse_sample(text: str) -> tuple[float | None, int | None]:
    """'5%' -> (0.05, None); '2GB' -> (None, 2e9): the share or the bytes of blobs to re-hash."""
    m = _SAMPLE.fullmatch(text.strip()) if isinstance(text, str) else None
    if m is None or (m.group(1) is not None and not 0 < float(m.group(1)) <= 100):
        raise InvalidInput(f"sample: expected a share such as 5% or a size such as 2GB, got {text!r}")
    if m.group(1) is not None:
        return float(m.group(1)) / 100, None
    return None, int(float(m.group(2)) * _UNITS[m.group(3)])


def _sampled(infos: list[ObjectInfo], sample: str | None) -> list[ObjectInfo]:
    """The blobs to re-hash: all, a random share of them, or random ones up to a byte budget
    (restic's read-data-subset); the others are checked for existence and size only."""
    if sample is None:
        return infos
    share, budget = parse_sample(sample)
    shuffled = random.sample(infos, len(infos))
    if share is not None:
        return shuffled[: max(1, round(share * len(infos)))] if infos else []
    chosen, used = [], 0
    for info in shuffled:
        if used + info.size > budget and chosen:
            continue
        chosen.append(info)
        used += info.size
    return chosen


def verify(store: Store, progress: Progress | None = None, sample: str | None = None) -> VerifyReport:
    """Re-hash every blob (progress(bytes, total) hears each one), or with `sample` ('5%',
    '2GB') a random subset, the rest checked for existence and size only; then check every
    version's trees and that each of its files has a sound blob of its size. Damage is listed per
    version too, with the repair that fits its type. Memory: the digest and size of every blob
    listed, and the digests of the trees checked; a tree shared by several versions is checked once."""
    store.format()  # refuse a store of a newer format: its records are not ours to judge
    report = VerifyReport()
    listed = [i for i in store.list_keys(OBJECTS + "/") if digest_of_object_key(i.key)]
    sizes: dict[bytes, int] = {bytes.fromhex(digest_of_object_key(i.key)): i.size for i in listed}
    report.objects = len(listed)
    chosen = _sampled(listed, sample)
    total = sum(i.size or 0 for i in chosen) if progress else None
    corrupt: set[bytes] = set()
    for info, digest in _blob_digests(store, chosen):
        report.hashed += 1
        report.hashed_bytes += info.size or 0
        if progress:
            progress(info.size or 0, total)
        if digest != digest_of_object_key(info.key):
            report.problems.append(f"{info.key}: corrupt blob (content does not match its digest)")
            corrupt.add(bytes.fromhex(digest_of_object_key(info.key)))
    report.problems += store.storage_damage()  # a remote store's unusable pack indexes
    checked: set[str] = set()  # trees read and checked (with all they list) for an earlier version
    for name in store.artifact_names():
        for version in store.version_numbers(name):
            report.versions += 1
            where = f"{name}:v{version}"
            found: list[str] = []
            repair = _REPAIR_OTHER.format(ref=where)
            try:
                record = store.record(name, version)
                repair = _REPAIR.get(record.type, _REPAIR_OTHER).format(ref=where)
                for path, digest, size in _files(store, record, checked):  # every tree read is checked
                    key = bytes.fromhex(digest)
                    if key not in sizes or (key in corrupt and sizes[key] == size):
                        what = "corrupt" if key in sizes else "not in the store"
                        found.append(f"{path} missing blob {object_key(digest)} ({what}; {repair})")
                    elif sizes[key] != size:  # found whether or not the sample re-hashed it
                        found.append(
                            f"{path} blob {object_key(digest)} holds {sizes[key]} bytes, not {size} ({repair})"
                        )
            except NotFound as e:  # a tree gone: for a dataset, the folder it was made from makes it again
                found.append(f"{e} ({repair})")
            except ArtifactkitError as e:
                found.append(str(e))
            if found:
                report.damage[where] = found
                report.problems += [f"{where}: {p}" for p in found]
    return report


def _files(store: Store, record, checked: set[str]) -> Iterator[tuple[str, str, int]]:
    """(path, digest, size) of the files of a version that no earlier checked tree covered."""
    if record.layout != "tree":
        yield from ((e.path, e.digest, e.size) for e in store.entries(record))
        return
    for folder, _digest, tree in walk(store.read_tree, check_digest(record.manifest), seen=checked):
        yield from ((f"{folder}/{f.name}" if folder else f.name, f.digest, f.size) for f in tree.files)


def _blob_digests(store: Store, infos: Iterable[ObjectInfo]) -> Iterator[tuple[ObjectInfo, str]]:
    """(object, digest of its content) for every listed blob; small ones read in batches of
    bounded bytes, large ones hashed in chunks (peak memory independent of blob size)."""
    batch: dict[str, ObjectInfo] = {}
    batch_bytes = 0
    for info in infos:
        if info.size > _STREAM_BYTES:
            yield info, _streamed_digest(store, info.key)
            continue
        batch[info.key] = info
        batch_bytes += info.size
        if batch_bytes >= _BATCH_BYTES or len(batch) >= 1024:
            yield from ((batch[k], digest_bytes(d)) for k, d in store.read_unchecked(list(batch)))
            batch, batch_bytes = {}, 0
    yield from ((batch[k], digest_bytes(d)) for k, d in store.read_unchecked(list(batch)))


def _streamed_digest(store: Store, key: str) -> str:
    if store.local_root is not None:
        return hash_file(store.local_root / key)[0]
    with tempfile.TemporaryDirectory(prefix="artifactkit-verify-") as tmp:
        path = Path(tmp) / "blob"
        store.read_unchecked_to(key, path)
        return hash_file(path)[0]


@dataclass
class GcReport:
    deleted_objects: int = 0
    deleted_bytes: int = 0
    deleted_manifests: int = 0
    deleted_trees: int = 0
    deleted_packs: int = 0  # packs of a remote store whose upload was cut before its index
    kept_recent: int = 0  # unreferenced files younger than the grace period, kept for now
    kept_recent_bytes: int = 0  # of which blobs
    kept_until: str | None = None  # when the youngest of them passes the grace (ISO time)
    grace_seconds: float = DEFAULT_GRACE_SECONDS
    writers: list[str] = field(default_factory=list)  # writers that may still run: nothing was deleted

    def summary(self) -> dict[str, Any]:
        return dict(self.__dict__)


class _Live:
    """What the store's versions reference (marking through every tree, as through manifests);
    read() adds the versions committed since last time."""

    def __init__(self, store: Store):
        self.store = store
        self.seen: set[tuple[str, int]] = set()
        self.refs: dict[str, set[str]] = {"manifest": set(), "tree": set(), "blob": set()}

    def read(self) -> "_Live":
        for name in self.store.artifact_names():
            for version in self.store.version_numbers(name):
                if (name, version) in self.seen:
                    continue
                for kind, digest in self.store.references(self.store.record(name, version)):
                    self.refs[kind].add(digest)
                self.seen.add((name, version))
        return self

    def holds(self, key: str) -> bool:
        digest = digest_of_object_key(key)
        if digest is not None:
            return digest in self.refs["blob"]
        digest = digest_of_tree_key(key)
        if digest is not None:
            return digest in self.refs["tree"]
        return (
            key.startswith(MANIFESTS + "/") and key[len(MANIFESTS) + 1 :].removesuffix(".json") in self.refs["manifest"]
        )


def gc(store: Store, grace_seconds: float = DEFAULT_GRACE_SECONDS) -> GcReport:
    """Delete blobs, trees and manifests that no version references, older than the grace period;
    nothing while a writer may be running (locks.py: GcReport.writers names them)."""
    store.format()  # never delete in a store of a newer format: we cannot see what it references
    with collecting(store) as writers:
        if writers:
            return GcReport(writers=[w.describe() for w in writers])
        return _collect(store, grace_seconds)


def _collect(store: Store, grace_seconds: float) -> GcReport:
    """gc's work, under its lock with no writer running."""
    listed = [i for prefix in (OBJECTS, TREES, MANIFESTS) for i in store.list_keys(prefix + "/")]
    live = _Live(store).read()  # after the listing: anything committed before it is seen
    root = store.local_root  # a folder: gc renames doomed files aside first (module doc)
    cutoff = time.time() - grace_seconds
    report = GcReport(grace_seconds=grace_seconds)
    youngest = None
    doomed: list[ObjectInfo] = []
    recent_trees: list[str] = []
    for info in listed:
        original = _original_key(info.key)
        if live.holds(original):
            if original != info.key and root is not None:
                _restore(root, info.key, original)  # left aside by a killed gc
            continue
        if info.mtime is not None and info.mtime > cutoff:
            report.kept_recent += 1
            report.kept_recent_bytes += info.size if digest_of_object_key(original) is not None else 0
            youngest = info.mtime if youngest is None else max(youngest, info.mtime)
            if digest_of_tree_key(original) is not None:
                recent_trees.append(digest_of_tree_key(original))
            continue
        doomed.append(info)
    if youngest is not None:
        report.kept_until = iso_of(youngest + grace_seconds)
    live.read()  # versions committed while we listed and decided
    kept = _Kept(store)
    kept.add(recent_trees)  # a log in flight may be re-using them: they keep what they list
    doomed = [i for i in doomed if not live.holds(_original_key(i.key)) and not kept.holds(_original_key(i.key))]
    trees = [i for i in doomed if digest_of_tree_key(_original_key(i.key)) is not None]
    others = [i for i in doomed if digest_of_tree_key(_original_key(i.key)) is None]
    if root is not None:  # trees first (what a tree touched meanwhile lists is spared), then what is left
        doomed = _delete_aside(root, trees, live, kept)
        others = [i for i in others if not kept.holds(_original_key(i.key))] if kept.complete else []
        doomed += _delete_aside(root, others, live, kept)
    else:
        if not kept.complete:
            others = []
        store.delete_keys([i.key for i in trees])  # no tree outlives its blobs
        store.delete_keys([i.key for i in others])
        doomed = trees + others
    report.deleted_packs = store.sweep(cutoff)  # a remote store's packs that no index names
    for info in doomed:
        report.deleted_objects += digest_of_object_key(info.key) is not None
        report.deleted_bytes += info.size if digest_of_object_key(info.key) is not None else 0
        report.deleted_manifests += _is_manifest(info.key)
        report.deleted_trees += digest_of_tree_key(info.key) is not None
    return report


class _Kept:
    """The trees gc keeps although no version references them, and every blob and subtree they
    list: a log re-using an unchanged folder's tree trusts its blobs (treelog.py)."""

    def __init__(self, store: Store):
        self.store = store
        self.trees: set[str] = set()
        self.blobs: set[str] = set()
        self.aside: dict[str, str] = {}  # tree key -> its trash key, while a gc holds it aside
        self.complete = True  # False once a kept tree could not be read: then gc deletes no blob

    def add(self, digests: Iterable[str]) -> None:
        for digest in digests:
            for _folder, _digest, tree in walk(self._read, digest, seen=self.trees):
                self.blobs.update(f.digest for f in tree.files)

    def holds(self, key: str) -> bool:
        digest = digest_of_object_key(key)
        if digest is not None:
            return digest in self.blobs
        digest = digest_of_tree_key(key)
        return digest is not None and digest in self.trees

    def _read(self, digest: str) -> Tree:
        key = tree_key(digest)
        if self.store.local_root is not None:
            # A kept tree lists it: it stays. It may be aside by this gc, by a killed one, or by
            # one running now (which then finds its trash file gone, and deletes nothing of it).
            trash = self.aside.pop(key, None) or _trash_key(key)
            _restore(self.store.local_root, trash, key)
        try:
            return self.store.read_tree(digest)
        except ArtifactkitError:  # unreadable: what it lists is unknown, so no blob may go
            self.complete = False
            return Tree()


def _delete_aside(root: Path, doomed: list[ObjectInfo], live: _Live, kept: _Kept) -> list[ObjectInfo]:
    """Rename each doomed file to a trash name, put back any that was touched since it was listed
    (a tree put back keeps all it lists, even what this call set aside) or that a version
    committed meanwhile references, delete the rest. Returns what was deleted."""
    aside: list[tuple[ObjectInfo, str]] = []
    touched_trees = []
    for info in doomed:
        if _original_key(info.key) != info.key:
            aside.append((info, info.key))  # already a trash file (of a killed gc), unreferenced
            continue
        trash = _trash_key(info.key)
        try:
            os.rename(root / info.key, root / trash)
            touched = info.mtime is None or os.stat(root / trash).st_mtime > info.mtime
        except FileNotFoundError:
            continue  # gone already (another gc)
        if touched:
            _restore(root, trash, info.key)  # a log re-used it after we listed it
            if digest_of_tree_key(info.key) is not None:
                touched_trees.append(digest_of_tree_key(info.key))
        else:
            aside.append((info, trash))
    kept.aside = {_original_key(trash): trash for _, trash in aside}
    kept.add(touched_trees)  # restores the subtrees they list that were set aside
    live.read()  # versions committed while we set files aside
    deleted = []
    for info, trash in aside:
        original = _original_key(trash)
        if live.holds(original) or kept.holds(original):
            if os.path.exists(root / trash):
                _restore(root, trash, original)
            continue
        try:
            os.unlink(root / trash)
        except FileNotFoundError:
            continue
        deleted.append(info)
    kept.aside = {}
    return deleted


def _restore(root: Path, trash: str, original: str) -> None:
    """Put a trash file back under its name, unless a log has written that name again meanwhile
    (same content: it is named by its digest)."""
    try:
        os.link(root / trash, root / original)
    except FileExistsError:
        pass
    except FileNotFoundError:
        return
    os.unlink(root / trash)


def _trash_key(key: str) -> str:
    head, _, name = key.rpartition("/")
    return f"{head}/{TRASH_PREFIX}{name}"


def _original_key(key: str) -> str:
    head, _, name = key.rpartition("/")
    return f"{head}/{name[len(TRASH_PREFIX) :]}" if name.startswith(TRASH_PREFIX) else key


def _is_manifest(key: str) -> bool:
    return key.startswith(MANIFESTS + "/") and key == manifest_key(key[len(MANIFESTS) + 1 :].removesuffix(".json"))
