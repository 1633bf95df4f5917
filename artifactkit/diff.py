"""What changed between two versions: files added, removed and changed (by digest), with sizes;
for two dataset versions also how many boxes of each class the changed label files gained or
lost. Only the label files that differ are read (unchanged ones count the same on both sides,
so the per-class change is exact without reading the rest of the dataset). A malformed label file
does not stop the diff (whoever broke a label is who needs it): it is flagged, naming its line,
and counted on neither side."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterator

from .errors import InvalidInput
from .records import Entry, VersionRecord, check_digest
from .store import Store
from .trees import changes, listing
from .yolo import is_image, label_path, parse_labels

DATA_YAML = "data.yaml"


@dataclass(frozen=True)
class ClassChange:
    cls: int
    name: str
    before: int  # boxes of this class in A's differing label files
    after: int  # ... in B's

    def summary(self) -> dict[str, Any]:
        return {
            "class": self.cls,
            "name": self.name,
            "before": self.before,
            "after": self.after,
            "change": self.after - self.before,
        }


@dataclass(frozen=True)
class VersionDiff:
    a: VersionRecord
    b: VersionRecord
    added: list[tuple[str, int]]  # (path, size in B)
    removed: list[tuple[str, int]]  # (path, size in A)
    changed: list[tuple[str, int, int]]  # (path, size in A, size in B)
    unchanged: int
    labels: list[ClassChange] | None  # None unless both are dataset versions with a data.yaml
    label_files: int = 0  # label files read to count them
    bad_labels: list[str] = field(default_factory=list)  # why each malformed label file is not counted

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "a": f"{self.a.name}:{self.a.label}",
            "b": f"{self.b.name}:{self.b.label}",
            "added": [{"path": p, "size": s} for p, s in self.added],
            "removed": [{"path": p, "size": s} for p, s in self.removed],
            "changed": [{"path": p, "size_a": sa, "size_b": sb} for p, sa, sb in self.changed],
            "unchanged": self.unchanged,
            "bytes_a": self.a.bytes,
            "bytes_b": self.b.bytes,
        }
        if self.labels is not None:
            out["labels"] = {"files_read": self.label_files, "classes": [c.summary() for c in self.labels]}
            if self.bad_labels:
                out["labels"]["malformed"] = self.bad_labels
        return out


def diff_versions(store: Store, a: str, b: str) -> VersionDiff:
    """Compare two versions of `store` (NAME:vN, NAME:ALIAS; any two names). Two tree versions
    are compared tree by tree: subtrees they share are skipped unread, so the cost and memory
    follow what changed."""
    ra, rb = store.resolve(a), store.resolve(b)
    added, removed, changed, unchanged = [], [], [], 0
    for item in _changes(store, ra, rb):
        if isinstance(item, int):
            unchanged += item
            continue
        path, x, y = item
        if x is None:
            added.append((path, y.size))
        elif y is None:
            removed.append((path, x.size))
        else:
            changed.append((path, x.size, y.size))
    added.sort(), removed.sort(), changed.sort()
    labels, read, bad = None, 0, []
    if ra.type == rb.type == "dataset":
        ya, yb = _data_yaml(store, ra), _data_yaml(store, rb)
        if ya or yb:
            differing = [p for p, *_ in added + removed + changed]
            labels, read, bad = _label_changes(store, ra, rb, ya, yb, differing)
    return VersionDiff(ra, rb, added, removed, changed, unchanged, labels, read, bad)


def _changes(
    store: Store, ra: VersionRecord, rb: VersionRecord
) -> Iterator[tuple[str, Entry | None, Entry | None] | int]:
    if ra.layout == rb.layout == "tree":
        yield from changes(store.read_tree, check_digest(ra.manifest), check_digest(rb.manifest))
        return
    ea = {e.path: e for e in store.entries(ra)}  # a flat (format 1) version is one manifest held whole
    eb = {e.path: e for e in store.entries(rb)}
    for p in sorted(ea.keys() | eb.keys()):
        x, y = ea.get(p), eb.get(p)
        yield 1 if x is not None and y is not None and x.digest == y.digest else (p, x, y)


def _label_changes(
    store: Store, ra, rb, ya: Entry | None, yb: Entry | None, differing: list[str]
) -> tuple[list[ClassChange], int, list[str]]:
    names = _names(store, rb, yb) or _names(store, ra, ya)
    files_a, files_b = _label_files(store, ra, differing), _label_files(store, rb, differing)
    counts_a, bad_a = _count(store, ra, files_a, names)
    counts_b, bad_b = _count(store, rb, files_b, names)
    skip = bad_a.keys() | bad_b.keys()  # a file malformed on one side counts on neither
    before = sum((c for p, c in counts_a.items() if p not in skip), Counter())
    after = sum((c for p, c in counts_b.items() if p not in skip), Counter())
    classes = sorted(before.keys() | after.keys())
    changes = [
        ClassChange(c, names[c] if c < len(names) else f"class {c}", before[c], after[c])
        for c in classes
        if before[c] != after[c]
    ]
    return changes, len(files_a) + len(files_b), [*bad_a.values(), *bad_b.values()]


def _count(
    store: Store, record: VersionRecord, files: dict[str, Entry], names: list[str]
) -> tuple[dict[str, Counter], dict[str, str]]:
    """({path: boxes per class}, {path: why it cannot be read}) of these label files of the
    version (those the other version does not share)."""
    blobs = dict(store.read_blobs(e.digest for e in files.values()))
    where = f"{store.uri}: {record.name}:{record.label}"
    counts: dict[str, Counter] = {}
    bad: dict[str, str] = {}
    for p, e in sorted(files.items()):
        try:
            counts[p] = Counter(box[0] for box in parse_labels(blobs[e.digest], f"{where}/{p}", len(names) or None))
        except InvalidInput as error:
            bad[p] = str(error)
    return counts, bad


def _label_files(store: Store, record: VersionRecord, differing: list[str]) -> dict[str, Entry]:
    """The differing paths that are label files of this version: labels/…/x.txt of an image
    images/…/x.jpg it holds (yolo.py). Only the folders where such an image can be are listed."""
    listed: dict[str, dict[str, Entry]] = {}

    def files_in(folder: str) -> dict[str, Entry]:
        if folder not in listed:
            listed[folder] = {e.path: e for e in _listing(store, record, folder)[0]}
        return listed[folder]

    out = {}
    for p in differing:
        here = p.rpartition("/")[0]
        if not p.endswith(".txt") or p not in files_in(here):
            continue
        head, sep, tail = ("/" + here + "/").rpartition("/labels/")
        places = [here] + ([(head + "/images/" + tail).strip("/")] if sep else [])
        if any(is_image(q) and label_path(q) == p for f in places for q in files_in(f)):
            out[p] = files_in(here)[p]
    return out


def _data_yaml(store: Store, record: VersionRecord) -> Entry | None:
    """The version's data.yaml: at its top, or in the folder that is all there is at its top
    (a dataset logged from its parent folder), following single folders down."""
    folder = ""
    while True:
        files, subfolders = _listing(store, record, folder)
        if files or len(subfolders) != 1:
            return next((e for e in files if e.path.rpartition("/")[2] == DATA_YAML), None)
        folder = f"{folder}/{subfolders[0]}" if folder else subfolders[0]


def _listing(store: Store, record: VersionRecord, folder: str) -> tuple[list[Entry], list[str]]:
    """(the files directly in folder, its subfolders' names) of a version."""
    if record.layout == "tree":
        return listing(store.read_tree, check_digest(record.manifest), folder)
    files, subfolders = [], set()  # a flat (format 1) version: its one manifest is held whole
    start = folder + "/" if folder else ""
    for e in store.entries(record):
        if e.path.startswith(start):
            sub, slash, _ = e.path[len(start) :].partition("/")
            subfolders.add(sub) if slash else files.append(e)
    return files, sorted(subfolders)


def _names(store: Store, record: VersionRecord, data_yaml: Entry | None) -> list[str]:
    """Class names from the version's own data.yaml (empty without one, or without names)."""
    from .viewer.dataset import class_names  # the report's reader of a stored data.yaml

    if data_yaml is None:
        return []
    return class_names(store, {data_yaml.path: data_yaml}, data_yaml.path, f"{store.uri}: {record.name}:{record.label}")
