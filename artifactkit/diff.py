"""What changed between two versions: files added, removed and changed (by digest), with sizes;
for two dataset versions also how many boxes of each class the changed label files gained or
lost. Only the label files that differ are read (unchanged ones count the same on both sides,
so the per-class change is exact without reading the rest of the dataset)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from .manifest import Entry, VersionRecord
from .store import Store
from .yolo import is_image, label_path, parse_labels

DATA_YAML = "data.yaml"


@dataclass(frozen=True)
class ClassChange:
    cls: int
    name: str
    before: int  # boxes of this class in A's differing label files
    after: int  # ... in B's

    def summary(self) -> dict[str, Any]:
        return {"class": self.cls, "name": self.name, "before": self.before, "after": self.after,
                "change": self.after - self.before}


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

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "a": f"{self.a.name}:{self.a.label}", "b": f"{self.b.name}:{self.b.label}",
            "added": [{"path": p, "size": s} for p, s in self.added],
            "removed": [{"path": p, "size": s} for p, s in self.removed],
            "changed": [{"path": p, "size_a": sa, "size_b": sb} for p, sa, sb in self.changed],
            "unchanged": self.unchanged,
            "bytes_a": self.a.bytes, "bytes_b": self.b.bytes,
        }
        if self.labels is not None:
            out["labels"] = {"files_read": self.label_files, "classes": [c.summary() for c in self.labels]}
        return out


def diff_versions(store: Store, a: str, b: str) -> VersionDiff:
    """Compare two versions of `store` (NAME:vN, NAME:ALIAS; any two names)."""
    ra, rb = store.resolve(a), store.resolve(b)
    ea = {e.path: e for e in store.entries(ra)}
    eb = {e.path: e for e in store.entries(rb)}
    added = [(p, eb[p].size) for p in sorted(eb.keys() - ea.keys())]
    removed = [(p, ea[p].size) for p in sorted(ea.keys() - eb.keys())]
    both = sorted(ea.keys() & eb.keys())
    changed = [(p, ea[p].size, eb[p].size) for p in both if ea[p].digest != eb[p].digest]
    labels, read = None, 0
    if ra.type == rb.type == "dataset" and (_data_yaml(ea) or _data_yaml(eb)):
        differing = {p for p, *_ in added + removed + changed}
        labels, read = _label_changes(store, ra, rb, ea, eb, differing)
    return VersionDiff(ra, rb, added, removed, changed, len(both) - len(changed), labels, read)


def _label_changes(store: Store, ra, rb, ea: dict[str, Entry], eb: dict[str, Entry],
                   differing: set[str]) -> tuple[list[ClassChange], int]:
    names = _names(store, rb, eb) or _names(store, ra, ea)
    before = _count(store, ra, ea, differing, names)
    after = _count(store, rb, eb, differing, names)
    classes = sorted(before.keys() | after.keys())
    changes = [ClassChange(c, names[c] if c < len(names) else f"class {c}", before[c], after[c])
               for c in classes if before[c] != after[c]]
    read = sum(1 for entries in (ea, eb) for p in _label_files(entries) if p in differing)
    return changes, read


def _count(store: Store, record: VersionRecord, entries: dict[str, Entry], differing: set[str],
           names: list[str]) -> Counter:
    """Boxes per class in this version's label files that the other version does not share."""
    paths = [p for p in _label_files(entries) if p in differing]
    blobs = dict(store.read_blobs(entries[p].digest for p in paths))
    where = f"{store.uri}: {record.name}:{record.label}"
    counts: Counter = Counter()
    for p in paths:
        counts.update(box[0] for box in parse_labels(blobs[entries[p].digest], f"{where}/{p}", len(names) or None))
    return counts


def _label_files(entries: dict[str, Entry]) -> list[str]:
    """The label files of a version: images/…/x.jpg is labelled by labels/…/x.txt (yolo.py)."""
    return sorted({label_path(p) for p in entries if is_image(p)} & entries.keys())


def _data_yaml(entries: dict[str, Entry]) -> Entry | None:
    return entries.get(DATA_YAML) or next((e for p, e in sorted(entries.items()) if p.endswith("/" + DATA_YAML)), None)


def _names(store: Store, record: VersionRecord, entries: dict[str, Entry]) -> list[str]:
    """Class names from the version's own data.yaml (empty without one, or without names)."""
    from .viewer.dataset import class_names  # the report's reader of a stored data.yaml

    return class_names(store, entries, DATA_YAML, f"{store.uri}: {record.name}:{record.label}")
