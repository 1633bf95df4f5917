"""Detection media in W&B's own formats: boxes, the bounding-box debugger's images, and the
dataset and evaluation tables.

Boxes carry `class_labels` and, for predictions, `scores.conf`, so the UI's class toggles and
confidence slider work. Two box groups per image: "predictions" and "ground_truth".
"""

from __future__ import annotations

import posixpath
from pathlib import Path
from typing import Any, Callable, Mapping


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
        box = {
            "position": {"minX": b[1], "minY": b[2], "maxX": b[3], "maxY": b[4]},
            "domain": "pixel",
            "class_id": cls,
            "box_caption": _name(names, cls),
        }
        if scored:
            box["scores"] = {"conf": float(b[5])}
            box["box_caption"] = f"{_name(names, cls)} {b[5]:.2f}"
        data.append(box)
    return {"box_data": data, "class_labels": class_labels(names)}


def yolo_boxes(labels: list[tuple], names: list[str]) -> dict[str, Any]:
    """YOLO label rows [cls, cx, cy, w, h] (relative) -> a W&B ground-truth box group; W&B's
    relative domain takes the centre and size as they are."""
    data = [
        {
            "position": {"middle": [cx, cy], "width": w, "height": h},
            "class_id": int(c),
            "box_caption": _name(names, int(c)),
        }
        for c, cx, cy, w, h in labels
    ]
    return {"box_data": data, "class_labels": class_labels(names)}


def row_image(wandb: Any, base: Any, row: Mapping[str, Any], names: list[str]) -> Any:
    """A wandb.Image of one evaluation-table row: `base` is a path or a wandb.Image (whose file,
    if it came from a dataset artifact, stays a reference to it) plus both box groups."""
    boxes = {
        "predictions": pixel_boxes(row["pred"], names, scored=True),
        "ground_truth": pixel_boxes(row["gt"], names, scored=False),
    }
    return wandb.Image(base, boxes=boxes, classes=classes(wandb, names))


def debugger_images(wandb: Any, table: Mapping[str, Any], image_path: Callable[[Mapping], str]) -> list[Any]:
    """The bounding-box debugger: the table's fixed debugger rows (its first rows), in order."""
    wanted = set(table["debugger"])
    rows = [r for r in table["rows"] if r["im_id"] in wanted]
    return [row_image(wandb, image_path(r), r, table["names"]) for r in rows]


def evaluation_columns(names: list[str]) -> list[str]:
    return [
        "epoch",
        "id",
        "path",
        "digest",
        "image",
        "gt_boxes",
        "pred_boxes",
        "tp",
        "fp",
        "fn",
        "avg_conf",
        *(f"conf/{n}" for n in names),
    ]


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
        out.add_data(
            table["epoch"],
            row["im_id"],
            row["path"],
            row["image"],
            image,
            len(row["gt"]),
            len(row["pred"]),
            row["tp"],
            row["fp"],
            row["fn"],
            row["avg_conf"],
            *per_class,
        )
    return out


# -- datasets -------------------------------------------------------------------------------
def dataset_tables(wandb: Any, root: Path, yaml_rel: str, digests: Mapping[str, str]) -> dict[str, Any]:
    """{split: wandb.Table} of every image with its ground-truth boxes and the classes present
    (a list column, for the UI's grouping by class). The version folder `root` is the dataset's
    folder (its data.yaml read by the one YOLO-format reader, `path:` aside); images are the files
    under root, so a table added to an artifact that already holds those files refers to them
    instead of copying."""
    from artifactkit.yolo import load_data_config, read_labels

    spec = load_data_config(root / yaml_rel, root=root)
    names, base = list(spec.names), spec.root
    tables = {}
    for split in spec.splits.values():
        table = wandb.Table(columns=["id", "path", "digest", "image", "classes", "boxes"])
        for image, label in zip(split.images, split.labels):
            rel = posixpath.relpath(image.as_posix(), base.as_posix())
            if rel not in digests:
                continue  # not a file of this version
            labels = read_labels(label, spec.nc)
            present = sorted({_name(names, c) for c, *_ in labels})
            wimage = wandb.Image(
                str(image), boxes={"ground_truth": yolo_boxes(labels, names)}, classes=classes(wandb, names)
            )
            table.add_data(image.stem, rel, digests[rel], wimage, present, len(labels))
            # wandb.Image decodes the file and keeps it; it re-reads the file if it ever needs the
            # pixels again, so drop them: a large dataset would otherwise sit decoded in memory.
            getattr(wimage, "_free_ram", lambda: None)()
        if len(table.data):
            tables[split.name] = table
    return tables
