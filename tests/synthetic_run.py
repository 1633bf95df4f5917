"""A plausible run written straight into a store, without training: a run record, per-epoch
metrics and one evaluation table per epoch over a dataset version's validation images, with
predictions that improve epoch by epoch. A fixture for the viewer's tests and benchmark
(bench/viewer.py), kept out of the package: the viewer itself only reads. The records have
exactly the shapes training writes (runs.py, evaluation.py, session.py), so the viewer cannot
tell them apart."""

from __future__ import annotations

import io
import math
import random
from typing import Any

from artifactkit.errors import InvalidInput, missing_extra
from artifactkit.evaluation import MIN_CONF, debugger_ids, table_bytes
from artifactkit.records import now_iso
from artifactkit.runs import RunRecord, create_run, save_run, write_epoch_metrics
from artifactkit.store import Store
from artifactkit.viewer.dataset import class_names, parse_labels, split_of
from artifactkit.yolo import IMAGE_EXTS, label_path


def synthesize_run(
    store: Store, dataset: str, run_id: str, epochs: int = 5, split: str = "val", seed: int = 0, bbox_interval: int = 1
) -> RunRecord:
    """Write run `run_id` on dataset version `dataset` (NAME:VERSION in `store`)."""
    record = store.resolve(dataset)
    ref = f"{record.name}:{record.label}"
    images = _val_images(store, record, split)
    names = class_names(store, {e.path: e for e in store.manifest(record).entries}, "data.yaml", ref)
    top = max((int(g[0]) for im in images for g in im["gt"]), default=0)
    names += [f"class {i}" for i in range(len(names), top + 1)]
    now = now_iso()
    run = RunRecord(
        run_id=run_id,
        created=now,
        updated=now,
        status="running",
        dataset=ref,
        model_artifact=f"{run_id}-model",
        total_epochs=epochs,
        config={
            "model": "n",
            "epochs": epochs,
            "batch": 16,
            "imgsz": images[0]["shape"][1],
            "seed": seed,
            "bbox_interval": bbox_interval,
            "synthetic": True,
        },
    )
    create_run(store, run)
    rng = random.Random(seed)
    debug = debugger_ids([im["im_id"] for im in images], seed)
    best: tuple[float, dict[str, float]] = (-1.0, {})
    for epoch in range(1, epochs + 1):
        skill = 1 - math.exp(-epoch / max(epochs / 3, 1))
        rows = [_row(im, skill, rng, len(names)) for im in images]
        metrics = _metrics(epoch, epochs, skill, rows, rng)
        if epoch % bbox_interval == 0 or epoch == epochs:
            _log_table(store, run_id, ref, epoch, split, names, metrics, debug, rows)
        write_epoch_metrics(
            store,
            run_id,
            epoch,
            {
                "epoch": epoch,
                "step": epoch * 10,
                "time": now_iso(),
                "metrics": metrics,
                "system": {"system/cpu_percent": 40 + 20 * rng.random(), "system/rss_bytes": 6e8 + 1e7 * epoch},
            },
        )
        if metrics["fitness"] > best[0]:
            best = (metrics["fitness"], {k: v for k, v in metrics.items() if k.startswith("metrics/")})
        run = run.with_(epochs_completed=epoch, best_fitness=best[0], best_metrics=best[1])
        save_run(store, run)
    run = run.with_(status="finished")
    save_run(store, run)
    return run


def _val_images(store: Store, record, split: str) -> list[dict[str, Any]]:
    try:
        from PIL import Image
    except ImportError:
        raise missing_extra("Pillow", "train") from None
    entries = {e.path: e for e in store.manifest(record).entries}
    paths = sorted(p for p in entries if p.lower().endswith(IMAGE_EXTS) and split_of(p) == split)
    if not paths:
        raise InvalidInput(f"{store.uri}: {record.name}:{record.label} has no images in split {split!r}")
    out = []
    for path in paths:
        digest = entries[path].digest
        with Image.open(io.BytesIO(store.read_blob(digest))) as im:  # reads the header only
            w, h = im.size
        label = entries.get(label_path(path))
        boxes = parse_labels(store.read_blob(label.digest), path) if label else []
        gt = [
            [c, (cx - bw / 2) * w, (cy - bh / 2) * h, (cx + bw / 2) * w, (cy + bh / 2) * h]
            for c, cx, cy, bw, bh in boxes
        ]
        stem = path.rsplit("/", 1)[-1].rsplit(".", 1)[0]
        out.append({"im_id": stem, "path": path, "image": digest, "shape": [h, w], "gt": gt})
    return out


def _row(im: dict[str, Any], skill: float, rng: random.Random, nc: int) -> dict[str, Any]:
    h, w = im["shape"]
    pred = []
    for c, x1, y1, x2, y2 in im["gt"]:
        if rng.random() > 0.3 + 0.65 * skill:
            continue  # missed
        size = max(x2 - x1, y2 - y1)
        jitter = size * (0.02 + 0.2 * (1 - skill))
        cls = c if rng.random() < 0.55 + 0.43 * skill else rng.randrange(nc)
        conf = min(0.99, max(0.0, rng.gauss(0.3 + 0.62 * skill, 0.12)))
        pred.append(
            [cls, *(_clip(v + rng.gauss(0, jitter), lim) for v, lim in ((x1, w), (y1, h), (x2, w), (y2, h))), conf]
        )
    for _ in range(_poisson(rng, 0.5 + 4 * (1 - skill))):  # background false positives, mostly unsure
        x, y, s = rng.uniform(0, w * 0.9), rng.uniform(0, h * 0.9), rng.uniform(0.04, 0.12) * w
        pred.append([rng.randrange(nc), x, y, min(x + s, w), min(y + s, h), rng.uniform(0.1, 0.45)])
    pred = sorted((p for p in pred if p[5] >= MIN_CONF and p[3] > p[1] and p[4] > p[2]), key=lambda p: -p[5])
    tp, fp, fn = _match(pred, im["gt"])
    confs = [p[5] for p in pred]
    by_cls: dict[str, list[float]] = {}
    for p in pred:
        by_cls.setdefault(str(p[0]), []).append(p[5])
    return {
        "im_id": im["im_id"],
        "path": im["path"],
        "image": im["image"],
        "shape": im["shape"],
        "gt": [[int(g[0]), *(round(v, 1) for v in g[1:])] for g in im["gt"]],
        "pred": [[int(p[0]), *(round(v, 1) for v in p[1:5]), round(p[5], 4)] for p in pred],
        "avg_conf": round(sum(confs) / len(confs), 4) if confs else 0.0,
        "class_conf": {k: round(sum(v) / len(v), 4) for k, v in sorted(by_cls.items())},
        "tp": tp,
        "fp": fp,
        "fn": fn,
    }


def _match(
    pred: list[list[float]], gt: list[list[float]], iou: float = 0.5, conf: float = 0.25
) -> tuple[int, int, int]:
    """Greedy by confidence, same class, IoU >= 0.5: the counts the tables log."""
    free = list(range(len(gt)))
    tp = fp = 0
    for p in pred:
        if p[5] < conf:
            continue
        best = max(free, key=lambda j: _iou(p[1:5], gt[j][1:5]) if gt[j][0] == p[0] else -1, default=None)
        if best is not None and gt[best][0] == p[0] and _iou(p[1:5], gt[best][1:5]) >= iou:
            free.remove(best)
            tp += 1
        else:
            fp += 1
    return tp, fp, len(free)


def _iou(a, b) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _metrics(epoch: int, epochs: int, skill: float, rows: list[dict], rng: random.Random) -> dict[str, float]:
    tp, fp, fn = (sum(r[k] for r in rows) for k in ("tp", "fp", "fn"))
    precision, recall = tp / max(tp + fp, 1), tp / max(tp + fn, 1)
    map50 = max(0.0, min(1.0, 0.92 * skill + rng.gauss(0, 0.01)))
    map5095 = 0.68 * map50
    lr = 0.01 * (0.01 + 0.99 * (1 + math.cos(math.pi * (epoch - 1) / max(epochs, 1))) / 2)
    return {
        "metrics/precision": precision,
        "metrics/recall": recall,
        "metrics/mAP50": map50,
        "metrics/mAP50-95": map5095,
        "val-heldout/mAP50": 0.55 * map50,
        "val-heldout/mAP50-95": 0.5 * map5095,
        "train/box_loss": 1.6 - 1.1 * skill + rng.gauss(0, 0.02),
        "train/cls_loss": 3.0 - 2.4 * skill + rng.gauss(0, 0.03),
        "train/dfl_loss": 1.4 - 0.5 * skill + rng.gauss(0, 0.01),
        "lr/pg0": lr,
        "lr/pg1": lr,
        "lr/pg2": lr,
        "fitness": 0.1 * map50 + 0.9 * map5095,
        "speed/train_img_s": 180 + rng.gauss(0, 5),
        "time/epoch_s": 30 + rng.gauss(0, 1),
    }


def _log_table(store, run_id, ref, epoch, split, names, metrics, debug, rows) -> None:
    order = {im_id: i for i, im_id in enumerate(debug)}
    rows = sorted(rows, key=lambda r: (order.get(r["im_id"], len(order)), r["im_id"]))
    table = {
        "epoch": epoch,
        "split": split,
        "names": names,
        "metrics": {k: v for k, v in metrics.items() if k.startswith("metrics/")},
        "debugger": debug,
        "min_conf": MIN_CONF,
        "rows": rows,
    }
    store.log_files(
        {"table.json": table_bytes(table)},
        name=f"{run_id}-evaluation",
        type="evaluation",
        aliases=(f"epoch-{epoch}",),
        metadata={"epoch": epoch, "dataset": ref},
        run_id=run_id,
        dedup_latest=False,
    )


def _clip(v: float, limit: float) -> float:
    return min(max(v, 0.0), float(limit))


def _poisson(rng: random.Random, lam: float) -> int:
    threshold, k, p = math.exp(-lam), 0, 1.0
    while True:
        p *= rng.random()
        if p < threshold:
            return k
        k += 1
