"""Logging a folder as trees (trees.py), one folder at a time, bottom-up, in two passes.

check() walks the whole folder before anything is written: every refusal (names, symlinks, an
empty folder), a stat of every file (folderscan.py: in worker processes for a large tree), and
each folder's fingerprint (its files' names and stats as the stat cache keys a file, its
subfolders' trees). A folder whose fingerprint, and every
subfolder's, is known from an earlier log is *unchanged*: its tree is noted and the folder is not
read again. run() writes: it re-lists only the folders that changed and ingests their files (stat
cache per file, hash while copying, every blob checked against the store); an unchanged folder
costs one existence check of its tree (a touch on a local store), and its blobs are trusted, as
git and restic trust a tree they hold (docs/architecture.md, "Commit order and trust"). A tree the store
no longer has makes its folder be logged again, blob by blob. full=True trusts no tree (every
blob checked, as a first log does: it restores blobs lost from under unchanged folders).

Memory: one folder's entries per level of depth, plus a dir entry per unchanged folder.
"""

from __future__ import annotations

import marshal
import os
import time
from dataclasses import dataclass

import xxhash

from .errors import IntegrityError, InvalidInput
from .folderscan import LevelLister, Listed, files_digest, listing, stat_key
from .hashing import digest_bytes
from .ingest import Candidate, Progress
from .layout import tree_key
from .names import check_inside, check_log_path, is_within
from .statcache import is_racy
from .trees import canonical_tree_json

_TREE_BATCH = 256  # trees written per batch (each a folder's worth of entries)
_CHECK_BATCH = 1024  # trees of unchanged folders checked per existence check


@dataclass
class FolderLogResult:
    root: str  # digest of the root tree
    files: int
    bytes: int
    uploaded_files: int
    uploaded_bytes: int


class FolderLog:
    """check(root) first (every refusal before anything is written), then run(root, progress)."""

    def __init__(self, store, full: bool = False):
        self.store = store
        self.cache = store.stat_cache
        self.full = full
        self.ingestor = None
        self._trees: list[tuple[str, bytes]] = []  # made, not yet handed to the store
        self._unchanged: dict[str, dict] = {}  # folder (absolute) -> its dir entry {tree, files, bytes}
        self._outermost: list[str] = []  # unchanged folders whose parent changed: those run() reaches
        self._present: set[str] = set()  # unchanged folders whose tree the store was found to hold
        self._used: list[str] = []  # those of them this version re-uses (checked again before the commit)
        self._remember: list[tuple[str, str, str]] = []  # (folder, fingerprint, tree) for the stat cache

    def check(self, root: str | os.PathLike) -> None:
        root = os.fspath(root)
        if not os.path.exists(root):
            raise InvalidInput(f"{root}: no such file or directory")
        if not os.path.isdir(root):
            raise InvalidInput(f"{root}: not a directory")
        listed = self._list_all(root)
        found, unchanged = self._scan(root, "", listed)
        if not found:
            raise InvalidInput(f"{root}: folder is empty, nothing to log")
        if unchanged is not None:
            self._outermost.append(os.path.abspath(root))

    def _list_all(self, root: str) -> dict[str, Listed]:
        """Every folder listed and its files statted (folderscan.py: in worker processes for a
        large tree), level by level; a symlink out of root or into a loop is refused before the
        level below it is listed. Memory: one small record per folder."""
        real_root = os.path.realpath(root)
        listed: dict[str, Listed] = {}
        lister = LevelLister()
        try:
            level = [root]
            while level:
                below = []
                for directory, folder in zip(level, lister.list(level)):
                    listed[directory] = folder
                    for name in folder.links:
                        path = os.path.join(directory, name)
                        check_inside(path, real_root, root)
                        if name in folder.subdirs and is_within(os.path.realpath(directory), os.path.realpath(path)):
                            raise InvalidInput(f"{path}: symlink loop (points to a folder that contains it)")
                    below.extend(os.path.join(directory, name) for name in folder.subdirs)
                level = below
        finally:
            lister.close()
        return listed

    def _scan(self, directory: str, prefix: str, listed: dict[str, Listed]) -> tuple[bool, dict | None]:
        """Bottom-up over what _list_all found: (whether the folder holds a file, its dir entry if
        it and everything below it is unchanged)."""
        folder = listed.pop(directory)
        dirs, changed = [], False
        for name in folder.subdirs:
            found, known = self._scan(os.path.join(directory, name), prefix + name + "/", listed)
            if known is not None:
                dirs.append((name, known))
            elif found:
                changed = True
        known = None
        if not changed and not self.full and (folder.files or dirs):
            known = self._known(os.path.abspath(directory), folder, dirs)
        if known is None:
            for entry in listing(directory):  # names of unchanged folders were checked when they were logged
                check_log_path(prefix + entry.name)
            self._outermost.extend(os.path.abspath(os.path.join(directory, name)) for name, _ in dirs)
        return bool(folder.files or dirs or changed), known

    def _known(self, key: str, folder: Listed, dirs: list) -> dict | None:
        """The dir entry of an unchanged folder, noted for run(); None if its fingerprint is new."""
        tree = self.cache.folder_lookup(key, _fingerprint(folder.files_digest, [(n, d["tree"]) for n, d in dirs]))
        if tree is None:
            return None
        entry = {
            "tree": tree,
            "files": folder.files + sum(d["files"] for _, d in dirs),
            "bytes": folder.bytes + sum(d["bytes"] for _, d in dirs),
        }
        self._unchanged[key] = entry
        return entry

    def run(self, root: str | os.PathLike, progress: Progress | None = None) -> FolderLogResult:
        # total None: unknown until the walk ends (no second pass over a million files)
        self.ingestor = self.store.ingestor(progress, total=None)
        self._check_trees(self._outermost)
        top = self._folder(os.fspath(root), "")
        if top is None:
            raise InvalidInput(f"{root}: folder is empty, nothing to log")
        self._flush_trees()
        self._touch_trusted_again()
        # Only now (blobs and trees durable) may the cache say a folder's tree is in a store.
        self.store.sync()
        for row in self._remember:
            self.cache.folder_remember(*row)
        result = self.ingestor.finish()
        return FolderLogResult(top["tree"], top["files"], top["bytes"], result.uploaded_files, result.uploaded_bytes)

    def _check_trees(self, folders: list[str]) -> None:
        """One existence check (a touch on a local store: a concurrent gc then keeps the tree and
        all it lists) per batch of unchanged folders' trees; those found are trusted."""
        for i in range(0, len(folders), _CHECK_BATCH):
            batch = folders[i : i + _CHECK_BATCH]
            held = self.store.refresh([tree_key(self._unchanged[f]["tree"]) for f in batch])
            self._present.update(f for f in batch if tree_key(self._unchanged[f]["tree"]) in held)

    def _touch_trusted_again(self) -> None:
        """The trees trusted at the start, checked (touched) again just before the commit: a log
        that outlasts gc's grace period must not commit a tree gc took meanwhile. Refused then,
        with nothing committed (a gc that ran during this log; logging again re-uploads)."""
        trusted = [self._unchanged[f]["tree"] for f in self._used]
        for i in range(0, len(trusted), _CHECK_BATCH):
            keys = [tree_key(d) for d in trusted[i : i + _CHECK_BATCH]]
            gone = set(keys) - self.store.refresh(keys)
            if gone:
                raise IntegrityError(
                    f"{self.store.uri}/{min(gone)}: a tree this log re-used was removed while it ran "
                    "(a gc?); nothing was committed: log again"
                )

    def _folder(self, directory: str, prefix: str) -> dict | None:
        """The dir entry ({tree, files, bytes}) of one folder, None if it holds no file."""
        key = os.path.abspath(directory)
        known = self._unchanged.get(key)
        if known is not None:
            if key not in self._present:
                self._check_trees([key])  # an unchanged folder below one whose tree was missing
            if key in self._present:
                self._used.append(key)
                if self.ingestor.progress:
                    self.ingestor.progress(known["bytes"], None)
                return known
        dirs, files = [], []
        for entry in listing(directory):
            try:
                if entry.is_dir():
                    sub = self._folder(entry.path, prefix + entry.name + "/")
                    if sub is not None:
                        dirs.append({**sub, "name": entry.name})
                    continue
                st = entry.stat()
            except OSError as e:
                raise InvalidInput(f"cannot read {entry.path}: {e.strerror or e}") from e
            files.append(Candidate(path=prefix + entry.name, source=entry.path, stat=st))
        if not dirs and not files:
            return None
        return self._build(key, dirs, files)

    def _build(self, key: str, dirs: list[dict], files: list[Candidate]) -> dict:
        entries = [{"name": c.path.rpartition("/")[2], "digest": self.ingestor.add(c), "size": c.size} for c in files]
        data = canonical_tree_json(dirs, entries)
        digest = digest_bytes(data)
        self._add_tree(digest, data)
        now = time.time_ns()
        if not any(is_racy(c.stat, now) for c in files):
            stats = files_digest([(e["name"], *stat_key(c.stat)) for e, c in zip(entries, files)])
            self._remember.append((key, _fingerprint(stats, [(d["name"], d["tree"]) for d in dirs]), digest))
        return {
            "tree": digest,
            "files": len(entries) + sum(d["files"] for d in dirs),
            "bytes": sum(e["size"] for e in entries) + sum(d["bytes"] for d in dirs),
        }

    def _add_tree(self, digest: str, data: bytes) -> None:
        self._trees.append((digest, data))
        if len(self._trees) >= _TREE_BATCH:
            self._flush_trees()

    def _flush_trees(self) -> None:
        """Trees go to the store after the blobs they list (put_trees makes those durable first):
        a tree in a store is evidence that its blobs are there."""
        self.ingestor.flush()
        self.store.put_trees(self._trees)
        self._trees = []


def _fingerprint(files: str, dirs: list[tuple[str, str]]) -> str:
    """What an unchanged folder shows: its files' digest (folderscan.files_digest: names and stat
    keys) and each subfolder's name and tree (itself unchanged only if its own fingerprint was)."""
    return xxhash.xxh3_128_hexdigest(marshal.dumps((files, dirs), 4))
