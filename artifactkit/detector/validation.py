"""Validation: run a model over a split, keep every image's ground truth and predictions in
original pixels, and score them. Usable without a Trainer (e.g. `artifactkit val --weights`)."""

import time
from dataclasses import dataclass, field
from typing import Any

import torch

from artifactkit.detector.data import build_dataloader, effective_workers, load_split
from artifactkit.detector.metrics import DetectionMetrics
from artifactkit.detector.model import YOLO
from artifactkit.detector.ops import non_max_suppression, one_thread, scale_boxes, xywh2xyxy
from artifactkit.yolo import DatasetSpec

# YOLOv8's settings for mAP: keep nearly every box so the precision/recall curve is complete.
CONF_THRESHOLD = 0.001
IOU_THRESHOLD = 0.7
MAX_DETECTIONS = 300


@dataclass
class ImageResult:
    """One validation image: ground truth and predictions, both in original image pixels."""

    im_id: str
    path: str
    ori_shape: tuple[int, int]  # (h, w)
    gt_cls: torch.Tensor  # (m,) class indices
    gt_boxes: torch.Tensor  # (m, 4) xyxy
    pred: torch.Tensor  # (n, 6) x1, y1, x2, y2, conf, cls


@dataclass
class ValidationResult:
    split: str
    names: list[str]
    metrics: dict[str, float]
    images: list[ImageResult] = field(default_factory=list)
    seconds: float = 0.0
    classes: list[dict] = field(default_factory=list)  # DetectionMetrics.per_class() rows
    pr_curve: list[float] = field(default_factory=list)  # precision at 101 recall points, IoU 0.5


def metric_prefix(split: str) -> str:
    """'val' reports under Ultralytics' 'metrics/...' keys; other splits under their own name."""
    return "metrics" if split == "val" else split


def metrics_for_split(split: str, scores: dict[str, float]) -> dict[str, float]:
    prefix = metric_prefix(split)
    return {
        f"{prefix}/precision": float(scores["precision"]),
        f"{prefix}/recall": float(scores["recall"]),
        f"{prefix}/mAP50": float(scores["mAP50"]),
        f"{prefix}/mAP50-95": float(scores["mAP50-95"]),
    }


def fitness(scores: dict[str, float]) -> float:
    """YOLOv8's model-selection score: mostly mAP50-95, a little mAP50."""
    return 0.1 * scores["mAP50"] + 0.9 * scores["mAP50-95"]


def build_model(state_dict: dict[str, Any], nc: int, scale: str = "n") -> YOLO:
    """A model ready to evaluate from saved weights (e.g. a checkpoint's "ema" or "model" entry)."""
    model = YOLO(nc=nc, scale=scale)
    model.load_state_dict(state_dict)
    return model.eval()


def autocast(device: torch.device) -> torch.autocast:
    # bf16 needs no loss scaling and halves memory traffic on CUDA; CPU stays in float32 so runs
    # are exact and reproducible there.
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")


def to_model_input(images: torch.Tensor, device: torch.device) -> torch.Tensor:
    """uint8 (B,3,H,W) -> float in [0, 1] on the device (the model adopts its weights' layout)."""
    return images.to(device, non_blocking=True).float().div_(255)


@torch.no_grad()
def detect(
    model: YOLO,
    images: torch.Tensor,
    device: torch.device,
    conf: float = CONF_THRESHOLD,
    iou: float = IOU_THRESHOLD,
    max_det: int = MAX_DETECTIONS,
) -> list[torch.Tensor]:
    """A letterboxed uint8 batch (B, 3, S, S) -> per image an (n, 6) float32 CPU tensor
    [x1, y1, x2, y2, conf, cls] in letterboxed pixels, after NMS. `model` must be in eval mode."""
    x = to_model_input(images, device)
    with autocast(device):
        outputs = model(x)
    decoded = model.decode([o.float() for o in outputs])
    with one_thread():  # the convolutions above use every thread; the small ops below do not gain
        return [d.float().cpu() for d in non_max_suppression(decoded, conf, iou, max_det)]


class Evaluator:
    """Scores models on the splits of one data set; data loaders are built once per split."""

    def __init__(
        self,
        data: DatasetSpec,
        imgsz: int,
        batch: int,
        workers: int | None,
        device: torch.device,
        cache: bool = False,
        conf: float = CONF_THRESHOLD,
        iou: float = IOU_THRESHOLD,
    ):
        self.data, self.imgsz, self.batch, self.workers = data, imgsz, batch, workers
        self.device, self.cache, self.conf, self.iou = device, cache, conf, iou
        self._loaders: dict[str, torch.utils.data.DataLoader] = {}

    def loader(self, split: str) -> torch.utils.data.DataLoader:
        if split not in self._loaders:
            dataset = load_split(self.data, split, imgsz=self.imgsz, augment=False, cache=self.cache)
            workers, _ = effective_workers(self.workers, len(dataset), self.batch)
            self._loaders[split] = build_dataloader(dataset, self.batch, workers, shuffle=False, seed=0)
        return self._loaders[split]

    @torch.no_grad()
    def evaluate(self, model: YOLO, split: str = "val") -> tuple[dict[str, float], ValidationResult]:
        """Metrics (keys as in metrics_for_split) and the per-image result of one split."""
        start = time.perf_counter()
        was_training = model.training
        model.eval()
        scorer = DetectionMetrics(nc=len(self.data.names), names=list(self.data.names))
        result = ValidationResult(split=split, names=list(self.data.names), metrics={})
        for batch in self.loader(split):
            images = self._predict_batch(model, batch)
            with one_thread():
                for image in images:
                    scorer.update(image.pred, image.gt_cls, image.gt_boxes)
            result.images.extend(images)
        model.train(was_training)
        scores = scorer.compute()
        result.metrics = metrics_for_split(split, scores)
        result.classes, result.pr_curve = scorer.per_class(), scorer.pr_curve.round(4).tolist()
        result.seconds = time.perf_counter() - start
        return result.metrics, result

    def _predict_batch(self, model: YOLO, batch: dict[str, Any]) -> list[ImageResult]:
        detections = detect(model, batch["img"], self.device, self.conf, self.iou)
        with one_thread():
            return self._postprocess(detections, batch["img"].shape[2:], batch)

    def _postprocess(
        self, detections: list[torch.Tensor], size: tuple[int, int], batch: dict[str, Any]
    ) -> list[ImageResult]:
        height, width = size
        scale = torch.tensor([width, height, width, height], dtype=torch.float32)
        targets = batch["targets"]
        results = []
        for j, det in enumerate(detections):
            rows = targets[targets[:, 0] == j]
            ratio_pad, ori_shape = batch["ratio_pad"][j], tuple(batch["ori_shapes"][j])
            gt_boxes = scale_boxes(xywh2xyxy(rows[:, 2:6] * scale), ratio_pad, ori_shape)
            pred = det
            pred[:, :4] = scale_boxes(pred[:, :4], ratio_pad, ori_shape)
            results.append(
                ImageResult(batch["im_ids"][j], batch["paths"][j], ori_shape, rows[:, 1].long(), gt_boxes, pred)
            )
        return results
