"""Logging a folder as trees (trees.py), one folder at a time, bottom-up.

Memory is bounded by one folder per level of depth, never the whole dataset. Each folder's
files are statted; the fingerprint of those stats (name, size, mtime, ctime, inode, as the stat
cache keys a file) and of its subfolders' trees finds an unchanged folder in the stat cache
(folder_lookup) without a lookup or a hash per file. Such a folder's tree is re-used only if the
store still has it and every blob it lists (the check touches them: ingest.refresh, so a
concurrent gc keeps them, and a lost blob makes the folder be logged again, re-uploading it).
Any other folder goes through ingest (stat cache per file, hash while copying) and gets a new tree.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import xxhash

from .errors import InvalidInput, NotFound
from .hashing import digest_bytes, is_racy
from .ingest import Candidate, Progress, _check_encodable, _check_inside, _checked, _is_ancestor, is_temp_name
from .trees import canonical_tree_json, parse_tree

_TREE_BATCH = 256  # trees written per batch (each a folder's worth of entries)


@dataclass
class FolderLogResult:
    root: str  # digest of the root tree
    files: int
    bytes: int
    uploaded_files: int
    uploaded_bytes: int


class FolderLog:
    """check(root) first (refusals before anything is written), then run(root, progress)."""

    def __init__(self, store):
        self.store = store
        self.cache = store.stat_cache
        self.ingestor = None
        self._trees: list[tuple[str, bytes]] = []  # made, not yet handed to the store

    def check(self, root: str | os.PathLike) -> None:
        """Refuse, before anything is written, a folder that cannot be logged and restored: a
        name that is not UTF-8 or not a safe path, a symlink out of it or into a loop, an empty
        folder. Reads only the directory listings (no stat of a file)."""
        root = os.fspath(root)
        if not os.path.exists(root):
            raise InvalidInput(f"{root}: no such file or directory")
        if not os.path.isdir(root):
            raise InvalidInput(f"{root}: not a directory")
        if not _check_folder(root, "", os.path.realpath(root), root):
            raise InvalidInput(f"{root}: folder is empty, nothing to log")

    def run(self, root: str | os.PathLike, progress: Progress | None = None) -> FolderLogResult:
        # total None: unknown until the walk ends (no second pass over a million files)
        self.ingestor = self.store.ingestor(progress, total=None)
        top = self._folder(os.fspath(root), "")
        if top is None:
            raise InvalidInput(f"{root}: folder is empty, nothing to log")
        result = self.ingestor.finish()
        self._flush_trees()
        return FolderLogResult(top["tree"], top["files"], top["bytes"], result.uploaded_files, result.uploaded_bytes)

    def _folder(self, directory: str, prefix: str) -> dict | None:
        """The dir entry ({name, tree, files, bytes}) of one folder, None if it holds no file."""
        dirs, files = [], []
        for entry in _listing(directory):
            if is_temp_name(entry.name):
                continue  # a leftover of one of our own interrupted writes, never data
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
        key = os.path.abspath(directory)
        fingerprint = _fingerprint(dirs, files)
        known = self.cache.folder_lookup(key, fingerprint)
        if known is not None:
            reused = self._reuse(known, dirs, files)
            if reused is not None:
                return reused
        return self._build(key, fingerprint, dirs, files)

    def _reuse(self, digest: str, dirs: list[dict], files: list[Candidate]) -> dict | None:
        """The entry of an unchanged folder from its known tree, if the store holds the tree (None:
        log the folder afresh). Its blobs are checked as any other's (the Ingestor: touched, or
        uploaded from the folder if lost); the tree is handed to put_trees again (touched)."""
        try:
            data = self.store.tree_bytes(digest)
        except NotFound:
            return None
        tree = parse_tree(data, digest)
        if [(f.name, f.size) for f in tree.files] != [(c.path.rpartition("/")[2], c.size) for c in files]:
            return None
        for f, cand in zip(tree.files, files):
            self.ingestor.add(cand, f.digest)
        self._add_tree(digest, data)
        return {"tree": digest, "files": tree.total_files, "bytes": tree.total_bytes}

    def _build(self, key: str, fingerprint: str, dirs: list[dict], files: list[Candidate]) -> dict:
        entries = [{"name": c.path.rpartition("/")[2], "digest": self.ingestor.add(c), "size": c.size} for c in files]
        data = canonical_tree_json(dirs, entries)
        digest = digest_bytes(data)
        self._add_tree(digest, data)
        now = time.time_ns()
        if not any(is_racy(c.stat, now) for c in files):
            self.cache.folder_remember(key, fingerprint, digest)
        return {"tree": digest, "files": len(entries) + sum(d["files"] for d in dirs),
                "bytes": sum(e["size"] for e in entries) + sum(d["bytes"] for d in dirs)}

    def _add_tree(self, digest: str, data: bytes) -> None:
        self._trees.append((digest, data))
        if len(self._trees) >= _TREE_BATCH:
            self._flush_trees()

    def _flush_trees(self) -> None:
        self.store.put_trees(self._trees)
        self._trees = []


def _check_folder(directory: str, prefix: str, real_root: str, root: str) -> bool:
    """check() for one folder and those below it; whether any file was found."""
    found = False
    for entry in _listing(directory):
        if is_temp_name(entry.name):
            continue
        _check_encodable(entry.name, entry.path)
        _checked(prefix + entry.name)
        try:
            if entry.is_symlink():
                _check_inside(entry.path, real_root, root)
                if entry.is_dir() and _is_ancestor(os.path.realpath(entry.path), os.path.realpath(directory)):
                    raise InvalidInput(f"{entry.path}: symlink loop (points to a folder that contains it)")
            is_dir = entry.is_dir()
        except OSError as e:
            raise InvalidInput(f"cannot read {entry.path}: {e.strerror or e}") from e
        found = _check_folder(entry.path, prefix + entry.name + "/", real_root, root) or found if is_dir else True
    return found


def _listing(directory: str) -> list[os.DirEntry]:
    try:
        with os.scandir(directory) as it:
            return sorted(it, key=lambda e: e.name)
    except OSError as e:
        raise InvalidInput(f"cannot read {directory}: {e.strerror or e}") from e


def _fingerprint(dirs: list[dict], files: list[Candidate]) -> str:
    """What an unchanged folder shows: each file's stat as the stat cache keys it, and each
    subfolder's tree (itself unchanged only if its own fingerprint was)."""
    h = xxhash.xxh3_128()
    for c in files:
        st = c.stat
        h.update(f"f\0{c.path}\0{st.st_size}\0{st.st_mtime_ns}\0{st.st_ctime_ns}\0{st.st_ino}\n".encode())
    for d in dirs:
        h.update(f"d\0{d['name']}\0{d['tree']}\n".encode())
    return h.hexdigest()
