"""Tree manifests (store format 2), as git and restic store them: one tree object per folder.

A tree lists the files of one folder (name, digest, size, meta) and its subfolders (name, the
digest of their tree, and their file and byte counts); its identity is the xxh3-128 digest of its
canonical JSON. A version record of layout "tree" names the root tree. A new version rewrites only
the trees on the path to what changed: every other subtree keeps its digest and is shared.
Reading one file or one folder touches only the trees on its path (walk(prefix=...)).

Trees are read from a store as untrusted input: checked against their digest, every name a
single safe path component, names sorted and unique within a tree (a name cannot be both a file
and a folder, so `a` and `a/b` can never both be files). Two identical folders share one tree, so
a version's trees form a DAG: a walk that needs only digests (gc, push) remembers what it visited;
one that needs paths (pull, diff) reads a shared tree once and refuses one reached along more than
MAX_PATHS_PER_TREE paths (41 forged trees, each naming the same child twice, are 2^40 paths).
"""

from __future__ import annotations

import json
import zlib
from typing import Callable, Iterator

from pydantic import Field, ValidationError, field_validator, model_validator

from .errors import InvalidInput
from .hashing import digest_bytes
from .layout import tree_key
from .names import check_entry_name
from .records import Entry, FileRef, Record, check_digest, parse_record, validator_of


class TreeFile(FileRef):
    name: str

    _check_name = field_validator("name")(check_entry_name)


class TreeDir(Record):
    name: str
    tree: str
    files: int = Field(ge=0)  # files below it, all levels (a version's totals without reading them)
    bytes: int = Field(ge=0)

    _check_name = field_validator("name")(check_entry_name)
    _check_tree = field_validator("tree")(validator_of(check_digest))


class Tree(Record):
    dirs: tuple[TreeDir, ...] = ()
    files: tuple[TreeFile, ...] = ()

    @model_validator(mode="after")
    def _sorted_unique(self) -> "Tree":
        for part in (self.dirs, self.files):
            names = [e.name for e in part]
            if names != sorted(set(names)):
                raise ValueError("tree entries must be sorted by name and unique")
        both = {d.name for d in self.dirs} & {f.name for f in self.files}
        if both:
            raise ValueError(f"{sorted(both)[0]!r} is both a file and a folder")
        return self

    def canonical_json(self) -> bytes:
        return canonical_tree_json(
            [d.model_dump() for d in self.dirs], [f.model_dump(exclude_none=True) for f in self.files]
        )

    @property
    def total_files(self) -> int:
        return len(self.files) + sum(d.files for d in self.dirs)

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files) + sum(d.bytes for d in self.dirs)


def canonical_tree_json(dirs: list[dict], files: list[dict]) -> bytes:
    """The bytes a tree is named by: sorted keys, no spaces, entries sorted by name. Built from
    plain dicts on the hot path of a log (one call per folder, no model validation: the names
    were checked when the folder was scanned)."""
    data = {"dirs": sorted(dirs, key=_name), "files": sorted(files, key=_name)}
    return json.dumps(data, sort_keys=True, separators=(",", ":")).encode()


def _name(entry: dict) -> str:
    return entry["name"]


_MAX_TREE_BYTES = 256 << 20  # a decompressed tree larger than this is refused (a zip bomb)


def compress_tree(canonical: bytes) -> bytes:
    """Trees are stored zlib-compressed: digests are hex text, names repeat their patterns; a
    folder of 1000 files takes ~24 kB instead of ~79 kB. The digest names the canonical JSON."""
    return zlib.compress(canonical, 6)


def decompress_tree(data: bytes, where: str) -> bytes:
    d = zlib.decompressobj()
    try:
        canonical = d.decompress(data, _MAX_TREE_BYTES)
    except zlib.error as e:
        raise InvalidInput(f"{where}: not a tree (cannot decompress: {e})") from None
    if d.unconsumed_tail or not d.eof:
        raise InvalidInput(f"{where}: not a tree (truncated, or larger than {_MAX_TREE_BYTES} bytes)")
    return canonical


def parse_tree(data: bytes, where: str) -> Tree:
    return parse_record(Tree, data, where)


def make_tree(dirs: list[dict], files: list[dict]) -> Tree:
    """A tree from entries a log produced, validated as a reader would (InvalidInput if not)."""
    try:
        return Tree(dirs=sorted(dirs, key=_name), files=sorted(files, key=_name))
    except ValidationError as e:
        raise InvalidInput(f"invalid set of files: {e.errors()[0]['msg'].removeprefix('Value error, ')}") from None


ReadTree = Callable[[str], Tree]  # digest -> the verified, validated tree
MAX_PATHS_PER_TREE = 65_536  # paths one tree may be reached along in one version


class _PathReads:
    """read_tree for one walk over paths: a tree met again (a folder identical to another) comes
    from memory, and one met along more than MAX_PATHS_PER_TREE paths is refused, so a walk costs
    what the version's real folders cost, never what a forged DAG of trees multiplies them to."""

    def __init__(self, read_tree: ReadTree):
        self.read_tree = read_tree
        self.met: dict[str, int] = {}
        self.shared: dict[str, Tree] = {}  # trees met twice or more (few, in a real version)

    def __call__(self, digest: str) -> Tree:
        met = self.met[digest] = self.met.get(digest, 0) + 1
        if met == 1:
            return self.read_tree(digest)
        if met > MAX_PATHS_PER_TREE:
            raise InvalidInput(
                f"{tree_key(digest)}: one folder's tree reached along more than {MAX_PATHS_PER_TREE} "
                "paths of one version (trees that nest into each other: a forged store?)"
            )
        if digest not in self.shared:
            self.shared[digest] = self.read_tree(digest)
        return self.shared[digest]


def walk(
    read_tree: ReadTree, root: str, prefix: str = "", seen: set[str] | None = None
) -> Iterator[tuple[str, str, Tree]]:
    """(folder path, tree digest, tree) for every folder at or below `prefix` (a folder path,
    "" for all), parents before children, each folder's subfolders in name order. Only the trees
    on the way down to prefix are read besides those below it; one tree is held per level.
    seen: digests of trees walked already (by an earlier walk of another version), skipped with
    everything below them; the walk adds those it reads. Without seen every path is walked
    (_PathReads bounds how often one tree may recur)."""
    if seen is None:
        read_tree = _PathReads(read_tree)
    digest, folder = _descend(read_tree, root, prefix.strip("/"))
    if digest is None:
        return
    stack = [(folder, digest)]
    while stack:
        folder, digest = stack.pop()
        if seen is not None:
            if digest in seen:
                continue
            seen.add(digest)
        tree = read_tree(digest)
        yield folder, digest, tree
        stack.extend((_join(folder, d.name), d.tree) for d in reversed(tree.dirs))


def entries(read_tree: ReadTree, root: str, prefix: str = "") -> Iterator[Entry]:
    """Every file at or below prefix (a folder or a file path) as a manifest Entry, folder by
    folder in name order; memory: the trees of one path, never all entries."""
    prefix = prefix.strip("/")
    if prefix:
        parent, _, name = prefix.rpartition("/")
        digest, folder = _descend(read_tree, root, parent)
        if digest is not None:
            for f in read_tree(digest).files:
                if f.name == name:  # the prefix names one file
                    yield _entry(folder, f)
                    return
    for folder, _digest, tree in walk(read_tree, root, prefix):
        for f in tree.files:
            yield _entry(folder, f)


def changes(read_tree: ReadTree, a: str, b: str) -> Iterator[tuple[str, Entry | None, Entry | None] | int]:
    """What differs between two versions' trees: (path, entry in a or None, entry in b or None)
    for each file added, removed or changed, and an int (a count of unchanged files) for each run
    of files they share. A subtree with the same digest on both sides is one int, never read: the
    cost follows what changed, not the size of the versions."""
    if a == b:
        yield read_tree(a).total_files
        return
    read_tree = _PathReads(read_tree)
    stack = [("", a, b)]
    while stack:
        folder, da, db = stack.pop()
        ta, tb = (read_tree(d) if d else Tree() for d in (da, db))
        fa, fb = {f.name: f for f in ta.files}, {f.name: f for f in tb.files}
        same = 0
        for name in sorted(fa.keys() | fb.keys()):
            x, y = fa.get(name), fb.get(name)
            if x is not None and y is not None and x.digest == y.digest:
                same += 1
            else:
                yield (_join(folder, name), x and _entry(folder, x), y and _entry(folder, y))
        if same:
            yield same
        sa, sb = {d.name: d for d in ta.dirs}, {d.name: d for d in tb.dirs}
        for name in sorted(sa.keys() | sb.keys(), reverse=True):
            x, y = sa.get(name), sb.get(name)
            if x is not None and y is not None and x.tree == y.tree:
                yield x.files
            else:
                stack.append((_join(folder, name), x.tree if x else "", y.tree if y else ""))


def listing(read_tree: ReadTree, root: str, folder: str) -> tuple[list[Entry], list[str]]:
    """The files directly in one folder (as entries) and its subfolders' names; reads only the
    trees on the way to it. ([], []) when the version has no such folder."""
    digest, folder = _descend(read_tree, root, folder.strip("/"))
    if digest is None:
        return [], []
    tree = read_tree(digest)
    return [_entry(folder, f) for f in tree.files], [d.name for d in tree.dirs]


def _descend(read_tree: ReadTree, root: str, folder: str) -> tuple[str | None, str]:
    """The digest of the tree of `folder` (None if the version has no such folder)."""
    digest = root
    for part in folder.split("/") if folder else ():
        found = next((d for d in read_tree(digest).dirs if d.name == part), None)
        if found is None:
            return None, folder
        digest = found.tree
    return digest, folder


def _entry(folder: str, f: TreeFile) -> Entry:
    # the name and digest were validated when the tree was read
    return Entry.checked_already(_join(folder, f.name), f.digest, f.size, f.meta)


def _join(folder: str, name: str) -> str:
    return f"{folder}/{name}" if folder else name


def trees_of(entries: list[Entry]) -> tuple[str, list[tuple[str, bytes]], int, int]:
    """The trees of a version given all its entries: (root digest, [(digest, canonical json)]
    children before parents, files, bytes). For versions built from a list of files in hand
    (log_files, small); a folder is logged folder by folder instead (treelog.py)."""
    files: dict[str, list[dict]] = {"": []}
    for e in entries:
        folder, _, name = e.path.rpartition("/")
        entry = {"name": name, "digest": e.digest, "size": e.size}
        if e.meta is not None:
            entry["meta"] = e.meta
        files.setdefault(folder, []).append(entry)
        while folder and folder.rpartition("/")[0] not in files:  # every folder on the way up
            folder = folder.rpartition("/")[0]
            files.setdefault(folder, [])
    subdirs: dict[str, list[dict]] = {}
    out: list[tuple[str, bytes]] = []
    totals: dict[str, tuple[int, int]] = {}
    for folder in sorted(files, key=lambda f: -f.count("/") - (f != "")):  # deepest first, root last
        dirs = subdirs.get(folder, [])
        tree = make_tree(dirs, files[folder])  # validates names (and a name both file and folder)
        data = tree.canonical_json()
        digest = digest_bytes(data)
        out.append((digest, data))
        totals[folder] = (tree.total_files, tree.total_bytes)
        if folder:
            parent, _, name = folder.rpartition("/")
            subdirs.setdefault(parent, []).append(
                {"name": name, "tree": digest, "files": totals[folder][0], "bytes": totals[folder][1]}
            )
    return out[-1][0], out, *totals[""]
