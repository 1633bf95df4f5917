"""The dataset browser's data: a dataset version's images with their YOLO labels
(`images/<split>/x.jpg` labelled by `labels/<split>/x.txt`, as Ultralytics reads them) and the
class names from its data.yaml."""

from __future__ import annotations

import posixpath
from typing import Any

from ..errors import ArtifactkitError, IntegrityError, InvalidInput
from ..store import Store
from .images import ImageBank

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
MAX_IMAGES = 2000  # a browser, not a copy: past this, each split is shown in proportion


def label_path(image_path: str) -> str:
    """images/val/x.jpg -> labels/val/x.txt (the last `images` folder, as YOLOv5 does)."""
    parts = image_path.split("/")
    for i in range(len(parts) - 2, -1, -1):
        if parts[i] == "images":
            parts[i] = "labels"
            break
    return posixpath.splitext("/".join(parts))[0] + ".txt"


def split_of(image_path: str) -> str:
    parts = image_path.split("/")
    if "images" in parts[:-1]:
        i = len(parts) - 2 - parts[:-1][::-1].index("images")
        rest = parts[i + 1 : -1]
        return "/".join(rest) if rest else "images"
    return posixpath.dirname(image_path) or "."


def load_dataset(store: Store, ref: str, bank: ImageBank, data_yaml: str = "data.yaml",
                 max_images: int = MAX_IMAGES) -> dict[str, Any]:
    record = store.resolve(ref)
    where = f"{store.uri}: {record.name}:{record.label}"
    entries = {e.path: e for e in store.manifest(record).entries}
    images = sorted(p for p in entries if p.lower().endswith(IMAGE_EXTS))
    if not images:
        raise InvalidInput(f"{where} holds no images (is it a dataset?)")
    shown = _sample(images, max_images)
    labels = _read_labels(store, [entries[label_path(p)].digest for p in shown if label_path(p) in entries], where)
    items = []
    for path in shown:
        entry = entries.get(label_path(path))
        boxes = parse_labels(labels.get(entry.digest, b""), f"{where}/{label_path(path)}") if entry else []
        items.append({"path": path, "split": split_of(path), "key": bank.want(store, entries[path].digest), "boxes": boxes})
    names = class_names(store, entries, data_yaml, where)
    top = max((b[0] for it in items for b in it["boxes"]), default=-1)
    names += [f"class {i}" for i in range(len(names), top + 1)]
    return {"ref": f"{record.name}:{record.label}", "uri": store.uri, "names": names, "items": items,
            "total": len(images), "labelled": sum(1 for p in images if label_path(p) in entries)}


def parse_labels(data: bytes, where: str) -> list[list[float]]:
    """YOLO rows `cls cx cy w h` (normalised), or polygons `cls x1 y1 x2 y2 …` whose bounding box
    is taken; -> [[cls, cx, cy, w, h]] rounded for the page."""
    out = []
    for n, line in enumerate(data.decode("utf-8", "replace").splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        try:
            cls, values = int(float(fields[0])), [float(v) for v in fields[1:]]
        except ValueError:
            raise InvalidInput(f"{where}:{n}: not a YOLO label row: {line.strip()[:60]!r}") from None
        if len(values) == 4:
            cx, cy, w, h = values
        elif len(values) >= 6 and len(values) % 2 == 0:
            xs, ys = values[0::2], values[1::2]
            cx, cy, w, h = (min(xs) + max(xs)) / 2, (min(ys) + max(ys)) / 2, max(xs) - min(xs), max(ys) - min(ys)
        else:
            raise InvalidInput(f"{where}:{n}: expected 'cls cx cy w h' or a polygon, got {len(fields)} fields")
        out.append([cls, round(cx, 4), round(cy, 4), round(w, 4), round(h, 4)])
    return out


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
    try:
        import yaml
    except ImportError:
        return []  # names are a nicety: the browser shows "class N" without PyYAML
    try:
        doc = yaml.safe_load(store.read_blob(entry.digest)) or {}
    except yaml.YAMLError as e:
        raise InvalidInput(f"{where}/{entry.path}: not valid YAML ({e})") from None
    names = doc.get("names", []) if isinstance(doc, dict) else []
    if isinstance(names, dict):
        return [str(names[k]) for k in sorted(names, key=int)]
    return [str(n) for n in names]
