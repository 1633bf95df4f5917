"""Detection media in W&B's own formats: boxes, the bounding-box debugger's images, and the
dataset and evaluation tables.

Boxes carry `class_labels` and, for predictions, `scores.conf`, so the UI's class toggles and
confidence slider work. Two box groups per image: "predictions" and "ground_truth".
"""

from __future__ import annotations

import posixpath
from pathlib import Path
from typing import Any, Callable, Mapping

IMAGE_EXTS = {".bmp", ".jpeg", ".jpg", ".png", ".tif", ".tiff", ".webp"}
_NOT_SPLITS = {"path", "names", "nc", "download", "yaml_file"}


def class_labels(names: list[str]) -> dict[int, str]:
    return dict(enumerate(names))


def classes(wandb: Any, names: list[str]) -> Any:
    return wandb.Classes([{"id": i, "name": n} for i, n in enumerate(names)])


def _name(names: list[str], cls: int) -> str:
    return names[cls] if 0 <= cls < len(names) else str(cls)


def pixel_boxes(boxes: list[list[float]], names: list[str], scored: bool) -> dict[str, Any]:
    """[[cls, x1, y1, x2, y2(, conf)]] in original-image pixels -> one W&B box group."""
    data = []
    for b in boxes:
        cls = int(b[0])
        box = {"position": {"minX": b[1], "minY": b[2], "maxX": b[3], "maxY": b[4]}, "domain": "pixel",
               "class_id": cls, "box_caption": _name(names, cls)}
        if scored:
            box["scores"] = {"conf": float(b[5])}
            box["box_caption"] = f"{_name(names, cls)} {b[5]:.2f}"
        data.append(box)
    return {"box_data": data, "class_labels": class_labels(names)}


def yolo_boxes(labels: list[list[float]], names: list[str]) -> dict[str, Any]:
    """YOLO label rows [cls, cx, cy, w, h] (relative) -> a W&B ground-truth box group; W&B's
    relative domain takes the centre and size as they are."""
    data = [{"position": {"middle": [cx, cy], "width": w, "height": h}, "class_id": int(c),
             "box_caption": _name(names, int(c))} for c, cx, cy, w, h in labels]
    return {"box_data": data, "class_labels": class_labels(names)}


def row_image(wandb: Any, base: Any, row: Mapping[str, Any], names: list[str]) -> Any:
    """A wandb.Image of one evaluation-table row: `base` is a path or a wandb.Image (whose file,
    if it came from a dataset artifact, stays a reference to it) plus both box groups."""
    boxes = {"predictions": pixel_boxes(row["pred"], names, scored=True),
             "ground_truth": pixel_boxes(row["gt"], names, scored=False)}
    return wandb.Image(base, boxes=boxes, classes=classes(wandb, names))


def debugger_images(wandb: Any, table: Mapping[str, Any], image_path: Callable[[Mapping], str]) -> list[Any]:
    """The bounding-box debugger: the table's fixed debugger rows (its first rows), in order."""
    wanted = set(table["debugger"])
    rows = [r for r in table["rows"] if r["im_id"] in wanted]
    return [row_image(wandb, image_path(r), r, table["names"]) for r in rows]


def evaluation_columns(names: list[str]) -> list[str]:
    return ["epoch", "id", "path", "digest", "image", "gt_boxes", "pred_boxes", "tp", "fp", "fn",
            "avg_conf", *(f"conf/{n}" for n in names)]


def evaluation_table(wandb: Any, table: Mapping[str, Any], bases: Mapping[str, Any]) -> Any:
    """Every validated image of one epoch. `bases` maps image id -> path or wandb.Image for the
    rows that get an image cell; the others keep path and digest, which name the same file in the
    dataset artifact and the store."""
    names = table["names"]
    out = wandb.Table(columns=evaluation_columns(names))
    for row in table["rows"]:
        base = bases.get(row["im_id"])
        image = row_image(wandb, base, row, names) if base is not None else None
        per_class = [row["class_conf"].get(str(i)) for i in range(len(names))]
        out.add_data(table["epoch"], row["im_id"], row["path"], row["image"], image, len(row["gt"]),
                     len(row["pred"]), row["tp"], row["fp"], row["fn"], row["avg_conf"], *per_class)
    return out


# -- datasets -------------------------------------------------------------------------------
def read_data_yaml(path: Path) -> dict[str, Any]:
    import yaml

    doc = yaml.safe_load(path.read_text())
    return doc if isinstance(doc, dict) else {}


def dataset_names(doc: Mapping[str, Any]) -> list[str]:
    raw = doc.get("names") or []
    if isinstance(raw, dict):
        return [str(v) for _, v in sorted((int(k), v) for k, v in raw.items())]
    return [str(n) for n in raw]


def split_folders(doc: Mapping[str, Any], yaml_rel: str) -> dict[str, str]:
    """{split: image folder as a dataset-relative POSIX path} for the splits data.yaml names."""
    base = posixpath.normpath(posixpath.join(posixpath.dirname(yaml_rel), str(doc.get("path") or ".")))
    out = {}
    for key, value in doc.items():
        if key in _NOT_SPLITS or not isinstance(value, str) or not value:
            continue
        out[str(key)] = posixpath.normpath(posixpath.join(base, value))
    return out


def label_path(image_rel: str) -> str:
    """labels/<split>/<stem>.txt for images/<split>/<stem>.<ext> (YOLO's convention)."""
    head, sep, tail = ("/" + image_rel).rpartition("/images/")
    swapped = f"{head}/labels/{tail}" if sep else "/" + image_rel
    return posixpath.splitext(swapped.lstrip("/"))[0] + ".txt"


def parse_labels(text: str) -> list[list[float]]:
    rows = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 5:
            rows.append([float(p) for p in parts])
    return rows


def dataset_tables(wandb: Any, root: Path, yaml_rel: str, digests: Mapping[str, str]) -> dict[str, Any]:
    """{split: wandb.Table} of every image with its ground-truth boxes and the classes present
    (a list column, for the UI's grouping by class). Images are the files under root, so a table
    added to an artifact that already holds those files refers to them instead of copying."""
    doc = read_data_yaml(root / yaml_rel)
    names = dataset_names(doc)
    tables = {}
    for split, folder in split_folders(doc, yaml_rel).items():
        table = wandb.Table(columns=["id", "path", "digest", "image", "classes", "boxes"])
        for rel in sorted(p for p in digests if p.startswith(folder + "/") and posixpath.splitext(p)[1].lower() in IMAGE_EXTS):
            label_file = root / label_path(rel)
            labels = parse_labels(label_file.read_text()) if label_file.is_file() else []
            present = sorted({_name(names, int(c)) for c, *_ in labels})
            image = wandb.Image(str(root / rel), boxes={"ground_truth": yolo_boxes(labels, names)},
                                classes=classes(wandb, names))
            table.add_data(posixpath.splitext(posixpath.basename(rel))[0], rel, digests[rel], image, present, len(labels))
            # wandb.Image decodes the file and keeps it; it re-reads the file if it ever needs the
            # pixels again, so drop them: a large dataset would otherwise sit decoded in memory.
            getattr(image, "_free_ram", lambda: None)()
        if len(table.data):
            tables[split] = table
    return tables
