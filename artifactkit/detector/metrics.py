"""COCO-style detection metrics that agree with the COCO reference evaluator (pycocotools COCOeval).

What is reproduced from COCOeval (bbox, areaRng="all", maxDets=100), and why it matters:
- IoU thresholds 0.50:0.05:0.95 and 101 recall thresholds, built with the same np.linspace calls, so
  float comparisons against them give the same answers.
- Per image and class, detections are sorted by score (stable, so ties keep input order like
  COCOeval's mergesort) and only the top `max_det` (100) are kept. COCOeval applies maxDets per
  image *per category*, not per image; we follow the implementation, not the paper.
- Greedy matching per IoU threshold in descending score order: each detection takes the unmatched
  GT of its class with the highest IoU >= threshold; equal IoUs go to the later GT (COCOeval's
  `<` comparison); each GT is matched at most once.
- Precision is made monotone (running max from the right) and sampled at the first detection whose
  recall reaches each recall threshold (0 when never reached); AP is their mean; mAP averages over
  classes that have ground truth, then over thresholds.
- Crowd annotations do not exist in YOLO labels, so no GT is ignored. areaRng="all" is
  [0, 1e10] px^2, which no real box leaves, so the area filter is dropped. (COCOeval would also
  ignore unmatched detections of negative area; NMS never emits those, read_coco_json rejects them.)
- Detections are pooled across images in update() order before the global score sort; ties across
  images then break by that order (COCOeval breaks them by sorted image id, which score_coco_json
  reproduces by feeding images in sorted order).
Where COCOeval answers -1 (no ground truth at all), we answer 0.0 so reports stay numeric.
"""

import json
import math
import os
from collections.abc import Callable, Collection, Mapping
from collections.abc import Set as AbstractSet
from pathlib import Path

import numpy as np
import torch

from artifactkit.detector.ops import box_iou
from artifactkit.errors import InvalidInput, NotFound
from artifactkit.fileio import atomic_write

IOU_THRESHOLDS = np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1, endpoint=True)
RECALL_THRESHOLDS = np.linspace(0.0, 1.00, int(np.round((1.00 - 0.0) / 0.01)) + 1, endpoint=True)
_CONF_GRID = np.linspace(0.0, 1.0, 1000)


def _class_masked_iou(pred: torch.Tensor, gt_cls: torch.Tensor, gt_boxes: torch.Tensor) -> np.ndarray:
    """(D, G) IoU in float64, zeroed across classes so a detection can only match its own class."""
    iou = box_iou(pred[:, :4].double(), gt_boxes.double()).numpy()
    same = pred[:, 5].long().numpy()[:, None] == gt_cls.long().numpy()[None, :]
    return np.where(same, iou, 0.0)


def _greedy_match(iou: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """COCOeval's matching for score-sorted rows of `iou`, all thresholds at once -> (D, T) bool TP.

    Classes are independent (cross-class IoU is 0), so one pass in global score order equals
    COCOeval's per-class passes. Only rows that reach the lowest threshold can match anything,
    so the Python loop runs over those alone.
    """
    n_det, n_gt = iou.shape
    tp = np.zeros((n_det, len(thresholds)), dtype=bool)
    if n_det == 0 or n_gt == 0:
        return tp
    thr = np.minimum(thresholds, 1 - 1e-10)[:, None]  # COCOeval caps the threshold the same way
    taken = np.zeros((len(thresholds), n_gt), dtype=bool)
    for d in np.nonzero(iou.max(1) >= thr.min())[0]:
        ok = ~taken & (iou[d][None, :] >= thr)  # (T, G)
        hit = ok.any(1)
        if not hit.any():
            continue
        cand = np.where(ok, iou[d][None, :], -1.0)[:, ::-1]
        g = n_gt - 1 - cand.argmax(1)  # reversed argmax: the last GT among equal IoUs wins
        taken[hit, g[hit]] = True
        tp[d] = hit
    return tp


def _sort_and_cap(pred: torch.Tensor, max_det: int | None) -> torch.Tensor:
    """Stable descending-score order, keeping the top `max_det` detections per class."""
    pred = pred[np.argsort(-pred[:, 4].numpy(), kind="stable")]
    if max_det is None or len(pred) <= max_det:
        return pred
    cls = pred[:, 5].long().numpy()
    keep = np.ones(len(cls), dtype=bool)
    for c in np.unique(cls):
        keep[np.nonzero(cls == c)[0][max_det:]] = False
    return pred[torch.from_numpy(keep)]


def _as_cpu(pred: torch.Tensor, gt_cls: torch.Tensor, gt_boxes: torch.Tensor):
    pred = pred.detach().cpu().reshape(-1, 6).double()
    return pred, gt_cls.detach().cpu().reshape(-1), gt_boxes.detach().cpu().reshape(-1, 4)


def match_image(
    pred: torch.Tensor, gt_cls: torch.Tensor, gt_boxes: torch.Tensor, iou: float = 0.5, conf: float = 0.0
) -> tuple[int, int, int]:
    """(tp, fp, fn) counts for one image with COCOeval's greedy matching at one IoU threshold.

    pred: (n, 6) [x1, y1, x2, y2, conf, cls]; detections below `conf` are dropped first (tables
    usually count at a deployment threshold, not at NMS's 0.001). No per-class cap is applied.
    """
    pred, gt_cls, gt_boxes = _as_cpu(pred, gt_cls, gt_boxes)
    pred = _sort_and_cap(pred[pred[:, 4] >= conf], None)
    tp = _greedy_match(_class_masked_iou(pred, gt_cls, gt_boxes), np.array([iou]))[:, 0]
    n_tp = int(tp.sum())
    return n_tp, len(pred) - n_tp, len(gt_cls) - n_tp


def _coco_ap(tp: np.ndarray, n_gt: int) -> np.ndarray:
    """Per-threshold 101-point AP from score-sorted (D, T) TP flags, as COCOeval accumulates."""
    if len(tp) == 0:  # GT but no detections: COCOeval leaves precision 0 everywhere
        return np.zeros(tp.shape[1])
    tpc = np.cumsum(tp, axis=0, dtype=float)
    fpc = np.cumsum(~tp, axis=0, dtype=float)
    rc = tpc / n_gt
    pr = tpc / (tpc + fpc + np.spacing(1))
    pr = np.maximum.accumulate(pr[::-1], axis=0)[::-1]  # precision envelope
    ap = np.zeros(tp.shape[1])
    for t in range(tp.shape[1]):
        idx = np.searchsorted(rc[:, t], RECALL_THRESHOLDS, side="left")
        ap[t] = np.where(idx < len(rc), pr[np.minimum(idx, len(rc) - 1), t], 0.0).mean()
    return ap


def _precision_at_recall(tp50: np.ndarray, n_gt: int) -> np.ndarray:
    """Interpolated precision (the envelope) at the 101 recall points, IoU 0.5: a PR curve."""
    if len(tp50) == 0:
        return np.zeros(len(RECALL_THRESHOLDS))
    tpc = np.cumsum(tp50, dtype=float)
    rc = tpc / n_gt
    pr = np.maximum.accumulate((tpc / np.arange(1, len(tpc) + 1))[::-1])[::-1]
    idx = np.searchsorted(rc, RECALL_THRESHOLDS, side="left")
    return np.where(idx < len(rc), pr[np.minimum(idx, len(rc) - 1)], 0.0)


def confusion_matrix(images, nc: int, conf: float = 0.25, iou: float = 0.45) -> list[list[int]]:
    """(nc+1) x (nc+1) counts, rows predicted class, columns true class, index nc background, as
    Ultralytics draws it: detections >= conf matched to ground truth of any class at IoU > iou,
    best pairs first, each box used once. images: objects with pred, gt_cls, gt_boxes."""
    m = np.zeros((nc + 1, nc + 1), dtype=np.int64)
    for im in images:
        pred, gt_cls, gt_boxes = _as_cpu(im.pred, im.gt_cls, im.gt_boxes)
        pred = pred[pred[:, 4] >= conf]
        p_cls, g_cls = pred[:, 5].long().numpy(), gt_cls.long().numpy()
        ious = (
            box_iou(pred[:, :4], gt_boxes.double()).numpy()
            if len(pred) and len(g_cls)
            else np.zeros((len(pred), len(g_cls)))
        )
        d, g = np.nonzero(ious > iou)
        order = np.argsort(-ious[d, g], kind="stable")
        used_d, used_g = set(), set()
        for i in order:
            if d[i] in used_d or g[i] in used_g:
                continue
            used_d.add(d[i])
            used_g.add(g[i])
            m[p_cls[d[i]], g_cls[g[i]]] += 1
        for j in set(range(len(g_cls))) - used_g:
            m[nc, g_cls[j]] += 1
        for j in set(range(len(p_cls))) - used_d:
            m[p_cls[j], nc] += 1
    return m.tolist()


def _pr_curves(tp50: np.ndarray, conf: np.ndarray, n_gt: int) -> tuple[np.ndarray, np.ndarray]:
    """Precision and recall at IoU 0.5 as functions of a confidence grid (for the max-F1 point)."""
    if len(conf) == 0:
        return np.zeros_like(_CONF_GRID), np.zeros_like(_CONF_GRID)
    tpc = np.cumsum(tp50, dtype=float)
    recall = tpc / n_gt
    precision = tpc / np.arange(1, len(tpc) + 1)
    # np.interp needs increasing x: negate the descending confidences
    r = np.interp(-_CONF_GRID, -conf, recall, left=0)
    p = np.interp(-_CONF_GRID, -conf, precision, left=1)
    return p, r


def _smooth(y: np.ndarray, frac: float = 0.1) -> np.ndarray:
    """Box filter so the max-F1 point is not picked on a single noisy grid step."""
    nf = round(len(y) * frac * 2) // 2 + 1
    pad = np.ones(nf // 2)
    return np.convolve(np.concatenate((pad * y[0], y, pad * y[-1])), np.ones(nf) / nf, mode="valid")


class DetectionMetrics:
    """Accumulates per-image matches; compute() gives COCO mAP and max-F1 precision/recall.

    After compute(): `ap` (nc, 10) per-class AP per IoU threshold (NaN for classes without GT),
    `ap50`, `ap50_95` (nc,), `n_gt` (nc,), `precision_c` / `recall_c` (nc,) at the chosen
    confidence `conf_best`, `pr_curve` (101 recall points x mean precision at IoU 0.5 over classes
    with GT, the envelope COCO's AP averages) and per_class() for reports.
    """

    def __init__(self, nc: int, names: list[str], max_det: int | None = 100):
        if nc <= 0 or len(names) != nc:
            raise InvalidInput(f"DetectionMetrics: nc={nc} but {len(names)} class names")
        self.nc, self.names, self.max_det = nc, list(names), max_det
        self.reset()

    def reset(self) -> None:
        self._tp: list[np.ndarray] = []
        self._conf: list[np.ndarray] = []
        self._cls: list[np.ndarray] = []
        self.n_gt = np.zeros(self.nc, dtype=np.int64)
        self.n_images = np.zeros(self.nc, dtype=np.int64)  # images holding each class
        self.pr_curve = np.zeros(len(RECALL_THRESHOLDS))
        self.ap = np.full((self.nc, len(IOU_THRESHOLDS)), np.nan)
        self.precision_c = np.full(self.nc, np.nan)
        self.recall_c = np.full(self.nc, np.nan)
        self.conf_best = 0.0

    def update(self, pred: torch.Tensor, gt_cls: torch.Tensor, gt_boxes: torch.Tensor) -> None:
        """One image: pred (n, 6) xyxy original px + conf + cls; gt_cls (m,); gt_boxes (m, 4)."""
        pred, gt_cls, gt_boxes = _as_cpu(pred, gt_cls, gt_boxes)
        for name, c in (("prediction", pred[:, 5]), ("ground-truth", gt_cls)):
            bad = c[(c < 0) | (c >= self.nc)]
            if len(bad):
                raise InvalidInput(f"{name} class {int(bad[0])} out of range for nc={self.nc}")
        pred = _sort_and_cap(pred, self.max_det)
        self._tp.append(_greedy_match(_class_masked_iou(pred, gt_cls, gt_boxes), IOU_THRESHOLDS))
        self._conf.append(pred[:, 4].numpy())
        self._cls.append(pred[:, 5].long().numpy())
        self.n_gt += np.bincount(gt_cls.long().numpy(), minlength=self.nc)
        self.n_images[np.unique(gt_cls.long().numpy())] += 1

    def compute(self) -> dict[str, float]:
        """{"precision", "recall", "mAP50", "mAP50-95"}; all 0.0 when there is no GT at all."""
        tp, conf, cls = self._pooled()
        p_curve = np.zeros((self.nc, len(_CONF_GRID)))
        r_curve = np.zeros_like(p_curve)
        self.ap = np.full((self.nc, len(IOU_THRESHOLDS)), np.nan)
        envelopes = []
        for c in np.nonzero(self.n_gt)[0]:
            sel = cls == c
            self.ap[c] = _coco_ap(tp[sel], int(self.n_gt[c]))
            envelopes.append(_precision_at_recall(tp[sel, 0], int(self.n_gt[c])))
            p_curve[c], r_curve[c] = _pr_curves(tp[sel, 0], conf[sel], int(self.n_gt[c]))
        has_gt = self.n_gt > 0
        if not has_gt.any():
            return {"precision": 0.0, "recall": 0.0, "mAP50": 0.0, "mAP50-95": 0.0}
        self.pr_curve = np.mean(envelopes, axis=0)
        f1 = 2 * p_curve * r_curve / (p_curve + r_curve + 1e-16)
        best = int(_smooth(f1[has_gt].mean(0)).argmax())
        self.conf_best = float(_CONF_GRID[best])
        self.precision_c = np.where(has_gt, p_curve[:, best], np.nan)
        self.recall_c = np.where(has_gt, r_curve[:, best], np.nan)
        return {
            "precision": float(np.nanmean(self.precision_c)),
            "recall": float(np.nanmean(self.recall_c)),
            "mAP50": float(np.nanmean(self.ap50)),
            "mAP50-95": float(np.nanmean(self.ap50_95)),
        }

    def _pooled(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """All detections in one global stable descending-score order (COCOeval's accumulate)."""
        if not self._conf:
            return np.zeros((0, len(IOU_THRESHOLDS)), bool), np.zeros(0), np.zeros(0, np.int64)
        conf = np.concatenate(self._conf)
        order = np.argsort(-conf, kind="stable")
        return np.concatenate(self._tp)[order], conf[order], np.concatenate(self._cls)[order]

    @property
    def ap50(self) -> np.ndarray:
        return self.ap[:, 0]

    @property
    def ap50_95(self) -> np.ndarray:
        return self.ap.mean(1)

    def per_class(self) -> list[dict]:
        """One row per class, as Ultralytics' val prints them (call compute() first); metrics are
        None for a class without GT."""

        def num(x: float) -> float | None:
            return None if np.isnan(x) else float(x)

        return [
            {
                "class": self.names[c],
                "images": int(self.n_images[c]),
                "instances": int(self.n_gt[c]),
                "precision": num(self.precision_c[c]),
                "recall": num(self.recall_c[c]),
                "mAP50": num(self.ap50[c]),
                "mAP50-95": num(self.ap50_95[c]),
            }
            for c in range(self.nc)
        ]


# ---- COCO results JSON ------------------------------------------------------------------------


def coco_records(image_id: str, pred: torch.Tensor) -> list[dict]:
    """(n, 6) xyxy+conf+cls in original px -> COCO result records for one image."""
    rows = pred.detach().cpu().reshape(-1, 6).double().tolist()
    return [
        {"image_id": image_id, "category_id": int(c), "bbox": [x1, y1, x2 - x1, y2 - y1], "score": s}
        for x1, y1, x2, y2, s, c in rows
    ]


def write_coco_json(path: str | os.PathLike, records: list[dict]) -> None:
    """Write COCO results, atomically: a crash never leaves half a file."""
    atomic_write(path, json.dumps(records).encode())


def _is_num(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _check_record(rec, nc: int | None, image_ids: Collection[str] | None) -> str | None:
    """Why this record is malformed, or None; kept separate so the caller adds file and index."""
    if not isinstance(rec, dict):
        return f"expected an object, got {type(rec).__name__}"
    for key in ("image_id", "category_id", "bbox", "score"):
        if key not in rec:
            return f"missing key '{key}'"
    iid, cat, bbox = rec["image_id"], rec["category_id"], rec["bbox"]
    if not isinstance(iid, (str, int)) or isinstance(iid, bool):
        return f"image_id must be a string (the image file stem), got {iid!r}"
    if not isinstance(cat, int) or isinstance(cat, bool) or cat < 0:
        return f"category_id must be a non-negative integer, got {cat!r}"
    if nc is not None and cat >= nc:
        return f"category_id {cat} out of range for {nc} classes"
    if not isinstance(bbox, list) or len(bbox) != 4 or not all(map(_is_num, bbox)):
        return f"bbox must be [x, y, w, h] of 4 finite numbers, got {bbox!r}"
    if bbox[2] < 0 or bbox[3] < 0:
        return f"bbox has negative size (w={bbox[2]}, h={bbox[3]})"
    if not _is_num(rec["score"]):
        return f"score must be a finite number, got {rec['score']!r}"
    if image_ids is not None and str(iid) not in image_ids:
        return f"image_id {str(iid)!r} is not an image of the dataset"
    return None


def read_coco_json(
    path: str | os.PathLike,
    image_ids: Collection[str] | None = None,
    nc: int | None = None,
    translate: Callable[[dict, str], dict] | None = None,
) -> list[dict]:
    """Read and validate COCO results; image ids come back as strings, numbers as floats.

    With `image_ids` / `nc`, entries naming unknown images or classes are errors too. `translate`
    (record, where) -> record maps another file's ids to ours first (coco.CocoIds.ours).
    Raises NotFound for a missing file, InvalidInput naming the file and entry index otherwise.
    """
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        raise NotFound(f"{path}: predictions file does not exist") from None
    except json.JSONDecodeError as e:
        raise InvalidInput(f"{path}: line {e.lineno}: not valid JSON ({e.msg})") from None
    except UnicodeDecodeError:
        raise InvalidInput(f"{path}: not a UTF-8 text file") from None
    if not isinstance(data, list):
        raise InvalidInput(f"{path}: expected a JSON list of detections, got {type(data).__name__}")
    if image_ids is not None and not isinstance(image_ids, (AbstractSet, Mapping)):
        image_ids = set(image_ids)  # membership is tested once per entry
    out = []
    for i, rec in enumerate(data):
        if translate is not None and isinstance(rec, dict):
            rec = translate(rec, f"{path}: entry {i}")
        problem = _check_record(rec, nc, image_ids)
        if problem:
            raise InvalidInput(f"{path}: entry {i}: {problem}")
        out.append(
            {
                "image_id": str(rec["image_id"]),
                "category_id": rec["category_id"],
                "bbox": [float(v) for v in rec["bbox"]],
                "score": float(rec["score"]),
            }
        )
    return out


def records_to_preds(records: list[dict]) -> dict[str, torch.Tensor]:
    """Group COCO records by image -> (n, 6) xyxy+conf+cls tensors, file order kept per image."""
    rows: dict[str, list[list[float]]] = {}
    for r in records:
        x, y, w, h = r["bbox"]
        row = [x, y, x + w, y + h, r["score"], r["category_id"]]
        rows.setdefault(r["image_id"], []).append(row)
    return {k: torch.tensor(v, dtype=torch.float64) for k, v in rows.items()}


def score_coco_json(
    path: str | os.PathLike,
    ground_truth: Mapping[str, tuple[torch.Tensor, torch.Tensor]],
    names: list[str],
    max_det: int | None = 100,
    conf: float = 0.0,
    translate: Callable[[dict, str], dict] | None = None,
) -> DetectionMetrics:
    """Score a COCO results file against per-image (gt_cls, gt_boxes xyxy original px).

    Every dataset image counts (an image without predictions contributes only misses); entries
    for images outside `ground_truth` are InvalidInput; detections below `conf` are dropped.
    Returns the filled DetectionMetrics:
    call compute() and per_class() on it.
    """
    preds = records_to_preds(read_coco_json(path, image_ids=ground_truth.keys(), nc=len(names), translate=translate))
    metrics = DetectionMetrics(len(names), names, max_det=max_det)
    empty = torch.zeros((0, 6), dtype=torch.float64)
    for image_id in sorted(ground_truth):  # sorted like COCOeval's imgIds, so score ties agree
        gt_cls, gt_boxes = ground_truth[image_id]
        pred = preds.get(image_id, empty)
        metrics.update(pred[pred[:, 4] >= conf], gt_cls, gt_boxes)
    return metrics
