"""The `val` command's library side: score a model (anything refs.py reads as weights, loaded by
weights.py) or a COCO-JSON predictions file on a dataset split. The metrics themselves are
detector/metrics.py's; the evaluation loop is detector/validation.py's."""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath
from typing import Any

from .errors import InvalidInput
from .store import Store


def dataset_yaml(data: str, store: Store | str | None, storage_options: dict | None) -> str:
    """--data as `val` takes it: a data.yaml, a dataset folder, or NAME:VERSION / NAME:ALIAS / NAME
    in `store`, materialised on this machine as `train` does (datasets.stored_dataset decides)."""
    from functools import cache

    from .datasets import materialise, stored_dataset
    from .store import open_store

    opened = cache(lambda: store if isinstance(store, Store) else open_store(store, storage_options, must_exist=True))
    ref = stored_dataset(data, opened)
    return data if ref is None else str(materialise(opened(), ref).yaml_path)


def ground_truth(data: str, split: str) -> tuple[dict[str, tuple[Any, Any]], list[str]]:
    """{image stem: (classes, xyxy boxes in original pixels)} from a split's label files."""
    import torch

    from .detector.ops import xywh2xyxy
    from .yolo import image_shape, load_data_config, read_labels

    cfg = load_data_config(data)
    chosen = cfg.split(split)
    out = {}
    for image, label in zip(chosen.images, chosen.labels):
        labels = torch.tensor(read_labels(label, cfg.nc), dtype=torch.float32).reshape(-1, 5)
        h, w = image_shape(image)
        boxes = xywh2xyxy(labels[:, 1:5]) * torch.tensor([w, h, w, h], dtype=torch.float32)
        out[image.stem] = (labels[:, 0].long(), boxes)
    return out, list(cfg.names)


def val(
    data: str,
    split: str = "val",
    *,
    weights: str | None = None,
    preds: str | os.PathLike | None = None,
    store: str | None = None,
    storage_options: dict | None = None,
    imgsz: int | None = None,
    batch: int | None = None,
    device: str | None = None,
    conf: float | None = None,
    iou: float | None = None,
    save_json: str | os.PathLike | None = None,
) -> tuple[dict[str, Any], list[str]]:
    """The `val` command: score `weights` (evaluate_weights) or a `preds` file (score_predictions),
    exactly one of them; None options take those functions' defaults. Returns (scores, warnings):
    the lines the CLI prints to stderr (e.g. an imgsz rounded to the model's stride)."""
    if (weights is None) == (preds is None):
        raise InvalidInput("give exactly one of --weights (a model to run) or --preds (a COCO JSON to score)")
    if preds is not None:
        if iou is not None or imgsz is not None:
            raise InvalidInput(
                f"--{'iou' if iou is not None else 'imgsz'} applies to --weights only (--preds are scored as given)"
            )
        given = {} if conf is None else {"conf": conf}
        return score_predictions(preds, data, split, store=store, storage_options=storage_options, **given), []
    given = {k: v for k, v in {"batch": batch, "device": device}.items() if v is not None}
    scores = evaluate_weights(
        weights,
        data,
        split,
        store=store,
        storage_options=storage_options,
        imgsz=imgsz,
        conf=conf,
        iou=iou,
        save_json=save_json,
        **given,
    )
    warnings = []
    if imgsz is not None and scores["imgsz"] != imgsz:
        warnings.append(f"--imgsz {imgsz} is not a multiple of the model's stride 32: using {scores['imgsz']}")
    return scores, warnings


def score_predictions(
    preds: str | os.PathLike,
    data: str,
    split: str = "val",
    conf: float = 0.0,
    *,
    store: str | None = None,
    storage_options: dict | None = None,
) -> dict[str, Any]:
    """Score a COCO-JSON predictions file (detections below `conf` dropped) -> as evaluate_weights.
    `data` as dataset_yaml takes it."""
    from .detector.metrics import score_coco_json
    from .detector.validation import metrics_for_split

    yaml = dataset_yaml(data, store, storage_options)
    gt, names = ground_truth(yaml, split)
    scorer = score_coco_json(preds, gt, names, conf=conf, translate=_coco_translation(yaml, split))
    metrics = metrics_for_split(split, scorer.compute())
    return {"split": split, "images": len(gt), "metrics": metrics, "classes": scorer.per_class()}


def evaluate_weights(
    weights: str,
    data: str,
    split: str = "val",
    *,
    store: str | None = None,
    storage_options: dict | None = None,
    imgsz: int | None = None,
    batch: int = 16,
    device: str = "auto",
    conf: float | None = None,
    iou: float | None = None,
    save_json: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """Run a model (`weights` in any form refs.WEIGHTS lists) over a split: {"split", "imgsz",
    "images", "metrics" (the keys training records, e.g. metrics/mAP50-95), "classes" (per-class
    rows), "weights" (what was loaded)}. imgsz defaults to the size the
    model was trained at; conf and iou are NMS's (default: validation's 0.001 and 0.7). `data` as
    dataset_yaml takes it: a stored dataset is looked up in `store`, else in the weights' store."""
    from .detector.config import normalise_device, round_imgsz
    from .detector.metrics import coco_records, write_coco_json
    from .detector.train import resolve_device
    from .detector.validation import CONF_THRESHOLD, IOU_THRESHOLD, Evaluator
    from .weights import build, read_weights
    from .yolo import load_data_config

    found = read_weights(weights, store, storage_options)
    cfg = load_data_config(dataset_yaml(data, store if store is not None else found.store, storage_options))
    if len(found.names) != len(cfg.names):
        raise InvalidInput(
            f"{found.source}: weights of {len(found.names)} classes cannot score {data!r} ({len(cfg.names)} classes)"
        )
    model = build(found)
    try:
        dev = resolve_device(normalise_device(device))
    except ValueError as e:
        raise InvalidInput(f"device {device!r}: {e}") from None
    size = round_imgsz(imgsz or found.imgsz)
    evaluator = Evaluator(
        cfg,
        size,
        batch,
        workers=0,
        device=dev,
        conf=CONF_THRESHOLD if conf is None else conf,
        iou=IOU_THRESHOLD if iou is None else iou,
    )
    metrics, result = evaluator.evaluate(model.to(dev), split)
    if save_json is not None:
        records = [r for im in result.images for r in coco_records(im.im_id, im.pred)]
        write_coco_json(save_json, _with_original_ids(records, cfg, split, result.images))
    return {
        "split": split,
        "imgsz": size,
        "images": len(result.images),
        "metrics": metrics,
        "classes": result.classes,
        "weights": found.shown,
    }


def _with_original_ids(records: list[dict], cfg, split: str, images) -> list[dict]:
    """For a dataset logged with --format coco: the records in its original file's image and
    category ids, so pycocotools scores them against that file directly; else as they are."""
    from .coco import original_ids

    ids = original_ids(cfg.root, split)
    if ids is None:
        return records
    base = (cfg.root / "images" / split).resolve()
    names = {}
    for im in images:
        try:
            names[im.im_id] = Path(im.path).resolve().relative_to(base).as_posix()
        except ValueError:  # not in the version's layout: keeps its stem
            pass
    return ids.originals(records, names)


def _coco_translation(yaml: str, split: str):
    """For a dataset logged with --format coco: read a predictions file's integer image ids and
    category ids as its original file's (what `val --save-json` wrote); None otherwise."""
    from .coco import original_ids
    from .yolo import load_data_config

    ids = original_ids(load_data_config(yaml).root, split)
    if ids is None:
        return None
    return ids.ours(
        {image_id: PurePosixPath(name).stem for name, image_id in ids.images.items() if image_id is not None}
    )
