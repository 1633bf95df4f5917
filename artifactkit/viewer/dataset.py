"""The dataset browser's data: a dataset version's images with their YOLO labels
(`images/<split>/x.jpg` labelled by `labels/<split>/x.txt`, as Ultralytics reads them) and the
class names from its data.yaml, read with the one YOLO-format reader (artifactkit.yolo)."""

from __future__ import annotations

import posixpath
from typing import Any

from ..errors import ArtifactkitError, IntegrityError, InvalidInput
from ..store import Store
from ..yolo import is_image, label_path, parse_names, parse_yaml
from ..yolo import parse_labels as parse_label_rows
from .images import ImageBank

MAX_IMAGES = 2000  # a browser, not a copy: past this, each split is shown in proportion


def split_of(image_path: str) -> str:
    """The split an image is shown under: the folders after the last `images` folder
    (images/val/x.jpg -> val), else the folder before it (Roboflow's valid/images/x.jpg -> valid)."""
    parts = image_path.split("/")
    if "images" in parts[:-1]:
        i = len(parts) - 2 - parts[:-1][::-1].index("images")
        rest = parts[i + 1 : -1]
        return "/".join(rest) if rest else (parts[i - 1] if i > 0 else "images")
    return posixpath.dirname(image_path) or "."


def load_dataset(
    store: Store, ref: str, bank: ImageBank, data_yaml: str = "data.yaml", max_images: int = MAX_IMAGES
) -> dict[str, Any]:
    record = store.resolve(ref)
    where = f"{store.uri}: {record.name}:{record.label}"
    entries = {e.path: e for e in store.manifest(record).entries}
    images = sorted(p for p in entries if is_image(p))
    if not images:
        raise InvalidInput(f"{where} holds no images (is it a dataset?)")
    shown = _sample(images, max_images)
    names = class_names(store, entries, data_yaml, where)
    nc = len(names) or None  # without a data.yaml, class ids are only checked to be ids
    label_digests = [entries[label_path(p)].digest for p in shown if label_path(p) in entries]
    labels = _read_labels(store, label_digests, where)
    items = []
    for path in shown:
        entry = entries.get(label_path(path))
        boxes = parse_labels(labels.get(entry.digest, b""), f"{where}/{label_path(path)}", nc) if entry else []
        items.append(
            {"path": path, "split": split_of(path), "key": bank.want(store, entries[path].digest), "boxes": boxes}
        )
    top = max((b[0] for it in items for b in it["boxes"]), default=-1)
    names += [f"class {i}" for i in range(len(names), top + 1)]
    return {
        "ref": f"{record.name}:{record.label}",
        "uri": store.uri,
        "names": names,
        "items": items,
        "total": len(images),
        "labelled": sum(1 for p in images if label_path(p) in entries),
    }


def parse_labels(data: bytes, where: str, nc: int | None = None) -> list[list[float]]:
    """The boxes of one label file as the shared reader reads them (a polygon's bounding box
    included), rounded for the page: [[cls, cx, cy, w, h]]."""
    return [[cls, *(round(v, 4) for v in box)] for cls, *box in parse_label_rows(data, where, nc)]


def _sample(images: list[str], limit: int) -> list[str]:
    """Every image when there are few; otherwise the first images of each split in proportion,
    so a small split (val-heldout) still shows up."""
    if len(images) <= limit:
        return images
    by_split: dict[str, list[str]] = {}
    for p in images:
        by_split.setdefault(split_of(p), []).append(p)
    keep = []
    for paths in by_split.values():
        keep += paths[: max(1, round(limit * len(paths) / len(images)))]
    return sorted(keep)


def _read_labels(store: Store, digests: list[str], where: str) -> dict[str, bytes]:
    try:
        return dict(store.read_blobs(digests))
    except IntegrityError:
        raise  # names the corrupt blob's key already
    except ArtifactkitError as e:
        raise type(e)(f"{where}: cannot read its label files ({e})") from None


def class_names(store: Store, entries: dict, data_yaml: str, where: str) -> list[str]:
    entry = entries.get(data_yaml) or next((e for p, e in entries.items() if p.endswith("/" + data_yaml)), None)
    if entry is None:
        return []
    doc = parse_yaml(store.read_blob(entry.digest), f"{where}/{entry.path}") or {}
    if not isinstance(doc, dict) or (doc.get("names") is None and doc.get("nc") is None):
        return []
    return parse_names(doc, f"{where}/{entry.path}")
