"""Scoring outside training: `val` of a stored checkpoint or of a COCO-JSON predictions file,
and `export` of a checkpoint's EMA weights as a plain state_dict."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from . import checkpoint
from .errors import InvalidInput
from .runs import load_run
from .store import Store, open_store
from .uri import looks_like_ref, split_run_uri


def checkpoint_source(uri: str, store: str | None, storage_options: dict | None) -> tuple[Store, str]:
    """A run URI (its latest checkpoint) or NAME:VERSION in `store` -> (store, checkpoint ref)."""
    if looks_like_ref(uri):
        return open_store(store, storage_options, must_exist=True), uri
    store_uri, run_id = split_run_uri(uri)
    s = open_store(store_uri, storage_options)  # a missing store: "<store>/runs/<id>: no such run"
    return s, f"{load_run(s, run_id).model_artifact}:latest"


def ground_truth(data: str, split: str) -> tuple[dict[str, tuple[Any, Any]], list[str]]:
    """{image stem: (classes, xyxy boxes in original pixels)} from a split's label files."""
    import torch

    from .detector.data import _image_shape, _list_images, label_path, load_data_config, read_labels
    from .detector.ops import xywh2xyxy

    cfg = load_data_config(data)
    if split not in cfg.splits:
        raise InvalidInput(f"split {split!r} is not in {data} (known: {', '.join(sorted(cfg.splits))})")
    out = {}
    for image in _list_images(cfg.splits[split]):
        labels = torch.from_numpy(read_labels(label_path(image), len(cfg.names)))
        h, w = _image_shape(image)
        boxes = xywh2xyxy(labels[:, 1:5]) * torch.tensor([w, h, w, h], dtype=torch.float32)
        out[image.stem] = (labels[:, 0].long(), boxes)
    return out, list(cfg.names)


def score_predictions(preds: str | os.PathLike, data: str, split: str = "val") -> dict[str, float]:
    from .detector.metrics import score_coco_json

    gt, names = ground_truth(data, split)
    return score_coco_json(preds, gt, names).compute()


def evaluate_weights(weights: str, data: str, split: str = "val", *, store: str | None = None,
                     storage_options: dict | None = None, imgsz: int = 416, batch: int = 16, device: str = "auto",
                     save_json: str | os.PathLike | None = None) -> dict[str, float]:
    from .detector.data import load_data_config
    from .detector.metrics import coco_records, write_coco_json
    from .detector.train import resolve_device
    from .detector.validation import Evaluator

    s, ref = checkpoint_source(weights, store, storage_options)
    state = checkpoint.load(s, ref)
    cfg = load_data_config(data)
    scale = state["config"]["model"]
    model = _model_for(state, len(cfg.names), scale, f"{s.uri}: {ref}")
    dev = resolve_device(device)
    evaluator = Evaluator(cfg, imgsz, batch, workers=0, device=dev)
    metrics, result = evaluator.evaluate(model.to(dev), split)
    if save_json is not None:
        write_coco_json(save_json, [r for im in result.images for r in coco_records(im.im_id, im.pred)])
    return {"mAP50": metrics[_key(split, "mAP50")], "mAP50_95": metrics[_key(split, "mAP50-95")],
            "precision": metrics[_key(split, "precision")], "recall": metrics[_key(split, "recall")]}


def _key(split: str, name: str) -> str:
    from .detector.validation import metric_prefix

    return f"{metric_prefix(split)}/{name}"


def _model_for(state: dict, nc: int, scale: str, where: str):
    from .detector.validation import build_model

    try:
        return build_model(_ema_weights(state), nc, scale)
    except RuntimeError as e:  # shape mismatch: another scale or class count
        raise InvalidInput(f"{where}: weights do not fit a YOLO-{scale} with {nc} classes ({str(e).splitlines()[0]})") from None


def _ema_weights(state: dict) -> dict:
    """The EMA weights (what validation scores); a checkpoint without them is not ours."""
    try:
        return state["ema"]["model"]
    except (KeyError, TypeError):
        raise InvalidInput("checkpoint holds no EMA weights: not an artifactkit trainer checkpoint") from None


def export_weights(uri: str, out: str | os.PathLike, *, store: str | None = None,
                   storage_options: dict | None = None) -> dict[str, Any]:
    import torch

    s, ref = checkpoint_source(uri, store, storage_options)
    record = s.resolve(ref)
    weights = _ema_weights(checkpoint.load(s, ref))
    out = Path(out)
    tmp = out.with_name(f".{out.name}.part")
    torch.save({k: v.contiguous() for k, v in weights.items()}, tmp)
    os.replace(tmp, out)
    return {"out": str(out), "checkpoint": f"{record.name}:{record.label}", "tensors": len(weights)}
