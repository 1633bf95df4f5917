"""Evaluation tables: every validation image's ground truth and predictions, as a store version.

One version of `<run-id>-evaluation` per validated epoch holds `table.json`. Images are referenced
by the digest of their blob in the dataset version (never copied); the bounding-box debugger's
16 images, chosen once from the seed, are the first rows.
"""

from __future__ import annotations

import json
import os
import random
from typing import Any, Mapping

DEBUG_IMAGES = 16
MIN_CONF = 0.1  # predictions kept in tables: enough for any threshold a person inspects
MAX_PER_IMAGE = 100
CONFUSION_CONF, CONFUSION_IOU = 0.25, 0.45  # Ultralytics' confusion matrix settings


def debugger_ids(im_ids: list[str], seed: int, k: int = DEBUG_IMAGES) -> list[str]:
    """The fixed set the bounding-box debugger follows: a function of the ids and seed only,
    so a resumed run follows the same images."""
    ordered = sorted(im_ids)
    return sorted(random.Random(seed).sample(ordered, min(k, len(ordered))))


def build_table(
    epoch: int,
    result: Any,
    dataset_root: str,
    digests: Mapping[str, str],
    seed: int,
    names: list[str],
) -> dict[str, Any]:
    """result: the trainer's ValidationResult; digests: dataset path -> blob digest. Beside the
    rows: the precision-recall curve (IoU 0.5, 101 recall points), the confusion matrix (rows
    predicted, columns true, last index background) and the per-class metrics."""
    from .detector.metrics import confusion_matrix, match_image

    debug = debugger_ids([im.im_id for im in result.images], seed)
    rows = []
    for im in result.images:
        pred = im.pred[im.pred[:, 4] >= MIN_CONF][:MAX_PER_IMAGE]
        tp, fp, fn = match_image(im.pred, im.gt_cls, im.gt_boxes, iou=0.5, conf=0.25)
        confs = pred[:, 4].tolist()
        rel = os.path.relpath(im.path, dataset_root).replace(os.sep, "/")
        rows.append(
            {
                "im_id": im.im_id,
                "path": rel,
                "image": digests.get(rel),
                "shape": list(im.ori_shape),
                "gt": [[int(c), *_round(b)] for c, b in zip(im.gt_cls.tolist(), im.gt_boxes.tolist())],
                "pred": [[int(p[5]), *_round(p[:4]), round(p[4], 4)] for p in pred.tolist()],
                "avg_conf": round(sum(confs) / len(confs), 4) if confs else 0.0,
                "class_conf": _class_conf(pred),
                "tp": tp,
                "fp": fp,
                "fn": fn,
            }
        )
    order = {im_id: i for i, im_id in enumerate(debug)}
    rows.sort(key=lambda r: (order.get(r["im_id"], len(order)), r["im_id"]))
    return {
        "epoch": epoch,
        "split": result.split,
        "names": names,
        "metrics": result.metrics,
        "debugger": debug,
        "min_conf": MIN_CONF,
        "rows": rows,
        "pr_curve": result.pr_curve,
        "classes": result.classes,
        "confusion": {
            "conf": CONFUSION_CONF,
            "iou": CONFUSION_IOU,
            "matrix": confusion_matrix(result.images, len(names), CONFUSION_CONF, CONFUSION_IOU),
        },
    }


def _round(box: list[float]) -> list[float]:
    return [round(v, 1) for v in box]


def _class_conf(pred) -> dict[str, float]:
    out: dict[str, list[float]] = {}
    for conf, cls in zip(pred[:, 4].tolist(), pred[:, 5].tolist()):
        out.setdefault(str(int(cls)), []).append(conf)
    return {k: round(sum(v) / len(v), 4) for k, v in sorted(out.items())}


def table_bytes(table: dict[str, Any]) -> bytes:
    return json.dumps(table, separators=(",", ":")).encode()
