"""COCO detection datasets (COCO's own and Roboflow's COCO export) converted into the YOLO layout.

Found in a folder: `annotations/instances_<split>*.json` (COCO: images in `<folder>/<split>`,
`<folder>/images/<split>`, `<folder>/images` or `<folder>`) and `<split>/_annotations.coco.json`
(Roboflow: images beside the JSON). Converted as Ultralytics' `convert_coco` does: class names from
`categories` in category id order (class i is the i-th smallest id), a bbox `[x, y, w, h]` in
pixels becomes normalised `cx cy w h` (clipped to the image; a box empty after clipping is
dropped), `iscrowd` boxes are skipped, images without annotations stay as background images
(no label file). The original JSON files are kept in the version under `annotations/`.

The JSON is parsed with the json module and read as untrusted: every field that becomes a path
or a number is checked, and errors name the file and the record.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Callable

from .errors import InvalidInput
from .names import is_relative_path, is_split_name, is_within
from .nesting import too_deep
from .yolo import is_image, label_path, layout_yaml

__all__ = ["ROBOFLOW_JSON", "CocoIds", "convert", "find_annotations", "kept_annotations", "original_ids", "stored_ids"]

ROBOFLOW_JSON = "_annotations.coco.json"
_SPLITS = (("train", "train"), ("validation", "val"), ("valid", "val"), ("val", "val"), ("test", "test"))
_ORDER = {"train": 0, "val": 1, "test": 2}


def find_annotations(folder: Path) -> dict[str, Path]:
    """{split: annotation JSON} of a COCO folder (empty: not a COCO folder)."""
    folder = Path(folder)
    found: dict[str, Path] = {}
    coco = sorted((folder / "annotations").glob("instances_*.json"))
    roboflow = sorted(folder.glob(f"*/{ROBOFLOW_JSON}"))
    for path, raw in [(p, p.stem[len("instances_") :]) for p in coco] + [(p, p.parent.name) for p in roboflow]:
        split = _split_name(raw, path)
        if split in found:
            raise InvalidInput(f"{folder}: two annotation files for split '{split}' ({found[split]}, {path})")
        found[split] = path
    return dict(sorted(found.items(), key=lambda kv: (_ORDER.get(kv[0], 3), kv[0])))


def _split_name(raw: str, where: Path) -> str:
    """train2017 -> train, valid / val2017 / validation -> val, test-dev -> test; others as named."""
    lower = raw.lower()
    for prefix, split in _SPLITS:
        if lower.startswith(prefix):
            return split
    if not is_split_name(raw):
        raise InvalidInput(f"{where}: split name {raw!r} is not a usable folder name")
    return raw


def convert(folder: Path) -> dict[str, bytes | Path]:
    """The YOLO version of a COCO folder: {path in the version: local file (images, original
    JSON) or bytes (labels, data.yaml)}."""
    folder = Path(folder)
    annotations = find_annotations(folder)
    for needed in ("train", "val"):
        if needed not in annotations:
            raise InvalidInput(
                f"{folder}: no {needed} annotations (expected annotations/instances_{needed}*.json "
                f"or {needed}/{ROBOFLOW_JSON})"
            )
    files: dict[str, bytes | Path] = {}
    names: list[str] | None = None
    for split, path in annotations.items():
        doc = _read_json(path)
        split_names, classes = _categories(doc, path)
        if names is None:
            names, first = split_names, path
        elif split_names != names:
            raise InvalidInput(f"{path}: its categories differ from those of {first}")
        files.update(_split_files(folder, split, path, doc, classes))
        kept = path.relative_to(folder).as_posix()
        files["annotations/" + kept.removeprefix("annotations/")] = path
    files["data.yaml"] = layout_yaml(list(annotations), names).encode()
    return files


def _read_json(path: Path) -> dict:
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise InvalidInput(f"cannot read {path}: {e.strerror or e}") from None
    return _parse_json(data, path)


def _parse_json(data: bytes, path) -> dict:
    try:
        doc = json.loads(data)
    except ValueError as e:  # JSONDecodeError and UnicodeDecodeError
        raise InvalidInput(f"{path}: not valid JSON ({e})") from None
    except RecursionError:
        raise too_deep(str(path)) from None
    if not isinstance(doc, dict) or not all(
        isinstance(doc.get(k), list) for k in ("images", "annotations", "categories")
    ):
        raise InvalidInput(f"{path}: not a COCO detection file (expected lists 'images', 'annotations', 'categories')")
    return doc


def _categories(doc: dict, path: Path) -> tuple[list[str], dict[int, int]]:
    """(class names in category id order, {category id: class index})."""
    by_id: dict[int, str] = {}
    for n, cat in enumerate(doc["categories"]):
        cid, name = (cat.get("id"), cat.get("name")) if isinstance(cat, dict) else (None, None)
        if not _is_int(cid) or not isinstance(name, str) or not name or cid in by_id:
            raise InvalidInput(f"{path}: categories[{n}]: expected a unique integer 'id' and a 'name'")
        by_id[cid] = name
    if not by_id:
        raise InvalidInput(f"{path}: no categories")
    ids = sorted(by_id)
    return [by_id[i] for i in ids], {cid: index for index, cid in enumerate(ids)}


def _split_files(folder: Path, split: str, path: Path, doc: dict, classes: dict[int, int]) -> dict[str, bytes | Path]:
    images = _images(doc, path)
    rows: dict[int, list[str]] = {image_id: [] for image_id in images}
    for n, ann in enumerate(doc["annotations"]):
        row = _label_row(ann, images, classes, f"{path}: annotations[{n}]")
        if row is not None:
            rows[ann["image_id"]].append(row)
    out: dict[str, bytes | Path] = {}
    for image_id, (file_name, w, h) in images.items():
        rel = f"images/{split}/{file_name}"
        if rel in out:
            raise InvalidInput(f"{path}: image file_name {file_name!r} appears twice")
        out[rel] = _find_image(folder, path, file_name, image_id)
        if rows[image_id]:
            out[label_path(rel)] = "".join(rows[image_id]).encode()
    return out


def _images(doc: dict, path: Path) -> dict[int, tuple[str, float, float]]:
    """{image id: (file_name, width, height)}, each field checked."""
    out = {}
    for n, im in enumerate(doc["images"]):
        where = f"{path}: images[{n}]"
        if not isinstance(im, dict) or not _is_int(im.get("id")) or im["id"] in out:
            raise InvalidInput(f"{where}: expected a unique integer 'id'")
        name = im.get("file_name")
        rel = PurePosixPath(name).as_posix() if isinstance(name, str) else ""  # "./a.jpg" and "a//b.jpg" pass
        if not is_relative_path(rel) or not is_image(name):
            raise InvalidInput(f"{where}: 'file_name' {name!r} is not a relative image path")
        w, h = im.get("width"), im.get("height")
        if not (_is_number(w) and _is_number(h) and w > 0 and h > 0):
            raise InvalidInput(f"{where}: 'width' and 'height' must be positive numbers")
        out[im["id"]] = (rel, float(w), float(h))
    return out


def _label_row(ann, images: dict, classes: dict[int, int], where: str) -> str | None:
    """`class cx cy w h` of one annotation, or None for a crowd box or one empty in the image."""
    if not isinstance(ann, dict):
        raise InvalidInput(f"{where}: expected an object")
    if not _is_int(ann.get("image_id")) or ann["image_id"] not in images:
        raise InvalidInput(f"{where}: 'image_id' {ann.get('image_id')!r} is not an image of this file")
    if not _is_int(ann.get("category_id")) or ann["category_id"] not in classes:
        raise InvalidInput(f"{where}: 'category_id' {ann.get('category_id')!r} is not a category of this file")
    if ann.get("iscrowd"):
        return None
    box = ann.get("bbox")
    if not (isinstance(box, list) and len(box) == 4 and all(_is_number(v) for v in box)):
        raise InvalidInput(f"{where}: 'bbox' must be [x, y, width, height] in pixels")
    _, w, h = images[ann["image_id"]]
    x1, y1 = max(0.0, box[0]), max(0.0, box[1])
    x2, y2 = min(w, box[0] + box[2]), min(h, box[1] + box[3])
    if x2 <= x1 or y2 <= y1:
        return None
    values = ((x1 + x2) / 2 / w, (y1 + y2) / 2 / h, (x2 - x1) / w, (y2 - y1) / h)
    return f"{classes[ann['category_id']]} " + " ".join(f"{v:.6g}" for v in values) + "\n"


def _find_image(folder: Path, path: Path, file_name: str, image_id: int) -> Path:
    if path.name == ROBOFLOW_JSON:
        bases = [path.parent]
    else:
        raw = path.stem[len("instances_") :]
        bases = [folder / raw, folder / "images" / raw, folder / "images", folder]
    for base in bases:
        if (base / file_name).is_file():
            return _inside(folder, base / file_name)
    raise InvalidInput(f"{path}: image {file_name!r} (id {image_id}) not found in {', '.join(str(b) for b in bases)}")


def _inside(folder: Path, image: Path) -> Path:
    """The image, if it lies in the COCO folder once links are resolved: the rule of a plain-folder
    log (names.check_inside), so a link cannot add a file from elsewhere to the version."""
    real, real_folder = os.path.realpath(image), os.path.realpath(folder)
    if not is_within(real, real_folder):
        raise InvalidInput(f"{image}: symlink points outside {folder} (to {real})")
    return image


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and value == value
        and abs(value) != float("inf")
    )


# -- the original ids, for predictions scored against the original file ------------------------
@dataclass
class CocoIds:
    """The ids of the COCO file(s) a version was converted from: `images` {file_name: image id}
    (a name two images share maps to None) and `categories` (class index i -> category id)."""

    images: dict[str, int | None]
    categories: list[int]

    def image_id(self, file_name: str) -> int | None:
        return self.images.get(file_name)

    def originals(self, records: list[dict], file_names: dict[str, str]) -> list[dict]:
        """Our result records (image_id the file stem, category_id the class index) with the file's
        ids; `file_names`: stem -> file_name. An image the file does not hold keeps its stem."""
        out = []
        for r in records:
            image_id = self.image_id(file_names.get(r["image_id"], ""))
            out.append(
                {
                    **r,
                    "image_id": r["image_id"] if image_id is None else image_id,
                    "category_id": self.categories[r["category_id"]],
                }
            )
        return out

    def ours(self, stems: dict[int, str]) -> "Callable[[dict, str], dict]":
        """A translation of records in the file's ids back to ours (stem, class index), for
        read_coco_json; `stems`: image id -> file stem. A record with a string image_id is ours already."""
        index = {cid: i for i, cid in enumerate(self.categories)}

        def translate(rec: dict, where: str) -> dict:
            if not _is_int(rec.get("image_id")):
                return rec
            if rec["image_id"] not in stems:
                raise InvalidInput(f"{where}: image_id {rec['image_id']} is not an image of the COCO file")
            if not _is_int(rec.get("category_id")) or rec["category_id"] not in index:
                raise InvalidInput(
                    f"{where}: category_id {rec.get('category_id')!r} is not a category of the COCO file"
                )
            return {**rec, "image_id": stems[rec["image_id"]], "category_id": index[rec["category_id"]]}

        return translate


def kept_annotations(root: Path) -> dict[str, Path]:
    """{split: original COCO JSON} kept under <root>/annotations by a `--format coco` log (empty:
    the dataset was not converted from COCO)."""
    folder = Path(root) / "annotations"
    if not folder.is_dir():
        return {}
    found = [(p, p.stem[len("instances_") :]) for p in sorted(folder.glob("instances_*.json"))]
    found += [(p, p.parent.name) for p in sorted(folder.glob(f"*/{ROBOFLOW_JSON}"))]
    return {_split_name(raw, p): p for p, raw in found}


def original_ids(root: Path, split: str) -> CocoIds | None:
    """The ids of a split's kept COCO file in a dataset folder, or None when it has none."""
    path = kept_annotations(root).get(split)
    return None if path is None else _ids([_read_json(path)], [path])


def stored_ids(store, dataset_ref: str, file_names: set[str]) -> CocoIds | None:
    """The ids of the COCO files kept in a stored dataset version, read from the store (not the
    images): split by split, val first, until every name in `file_names` is found (COCO's train
    file is large). None when the version keeps no COCO file."""
    record = store.resolve(dataset_ref)
    by_split = {}
    for entry in store.entries(record, prefix="annotations/"):
        split = _kept_split(entry.path)
        if split is not None:
            by_split[split] = entry
    docs, wheres, seen = [], [], set()
    for split in sorted(by_split, key=lambda name: (name == "train", name != "val", name)):
        where = f"{store.uri}: {dataset_ref}: {by_split[split].path}"
        docs.append(_parse_json(store.read_blob(by_split[split].digest), where))
        wheres.append(where)
        seen |= {PurePosixPath(name).name for name, _, _ in _images(docs[-1], where).values()}
        if file_names <= seen:
            break
    return _ids(docs, wheres, by_name=True) if docs else None


def _kept_split(path: str) -> str | None:
    """The split of an original JSON as convert keeps it in a version, or None for another file:
    annotations/instances_<split>*.json (COCO) or annotations/<split>/_annotations.coco.json (Roboflow)."""
    parts = path.split("/")
    if len(parts) == 2 and parts[1].startswith("instances_") and parts[1].endswith(".json"):
        return _split_name(parts[1][len("instances_") : -len(".json")], Path(path))
    if len(parts) == 3 and parts[2] == ROBOFLOW_JSON:
        return _split_name(parts[1], Path(path))
    return None


def _ids(docs: list[dict], wheres: list, by_name: bool = False) -> CocoIds:
    """CocoIds of parsed COCO files (their categories agree: convert checked it when logging).
    by_name: keyed by the file name alone (predict sees image files, not their split paths)."""
    images: dict[str, int | None] = {}
    categories: list[int] = []
    for doc, where in zip(docs, wheres):
        categories = sorted(_categories(doc, where)[1])
        for image_id, (file_name, _, _) in _images(doc, where).items():
            key = PurePosixPath(file_name).name if by_name else file_name
            images[key] = image_id if images.get(key, image_id) == image_id else None
    return CocoIds(images, categories)
