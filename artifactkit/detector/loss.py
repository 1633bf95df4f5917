"""YOLOv8 detection loss: task-aligned label assignment, CIoU + DFL box loss, BCE class loss.

Everything is vectorised over the batch: targets are padded to (B, max_boxes, ...) with a validity
mask, so the cost does not grow with Python-level loops over images or boxes.
"""

import torch
import torch.nn.functional as F

from artifactkit.detector.model import YOLO
from artifactkit.detector.ops import bbox2dist, bbox_iou, dist2bbox, make_anchors, xywh2xyxy
from artifactkit.errors import InvalidInput


class TaskAlignedAssigner:
    """TOOD's task-aligned assigner, as YOLOv8 uses it.

    An anchor is a candidate for a ground-truth box when its centre lies inside the box; among
    candidates, the topk with the highest alignment score**alpha * CIoU**beta become positives
    (so the anchors that already classify *and* localise the object best are taught to do it).
    An anchor claimed by several boxes goes to the box it overlaps most. Soft class targets are
    the alignment normalised per box so that its best anchor's target equals its best CIoU.

    Only the dense (B, M, A) steps that need it (inside test, top-k) touch every box-anchor
    pair; everything else works on the list of candidate pairs, which is far shorter.
    """

    def __init__(
        self, nc: int, topk: int = 10, alpha: float = 0.5, beta: float = 6.0, eps: float = 1e-9, min_side: float = 0.0
    ):
        self.nc, self.topk, self.alpha, self.beta, self.eps = nc, topk, alpha, beta, eps
        # Boxes are widened to at least min_side pixels for the inside test only, so a tiny
        # object still has a few candidate anchors (a 10 px box holds one stride-8 centre or none).
        self.min_side = min_side

    @torch.no_grad()
    def __call__(
        self,
        pred_scores: torch.Tensor,  # (B, A, nc) probabilities
        pred_boxes: torch.Tensor,  # (B, A, 4) xyxy pixels
        anchor_points: torch.Tensor,  # (A, 2) pixels
        gt_labels: torch.Tensor,  # (B, M, 1)
        gt_boxes: torch.Tensor,  # (B, M, 4) xyxy pixels
        gt_valid: torch.Tensor,  # (B, M, 1) bool, False on padding rows
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Returns target boxes (B, A, 4), soft target scores (B, A, nc), foreground mask (B, A)."""
        batch, num_anchors = pred_scores.shape[:2]
        target_boxes = torch.zeros_like(pred_boxes)
        target_scores = torch.zeros_like(pred_scores)
        foreground = torch.zeros(batch, num_anchors, dtype=torch.bool, device=pred_scores.device)
        if gt_boxes.shape[1] == 0:
            return target_boxes, target_scores, foreground
        labels = gt_labels.squeeze(-1).long().clamp(min=0)  # (B, M)
        inside = _anchors_inside_boxes(anchor_points, _widen(gt_boxes, self.min_side), self.eps) & gt_valid  # (B, M, A)
        align, overlaps = self._alignment(pred_scores, pred_boxes, labels, gt_boxes, inside)
        b, m, a = self._positive_pairs(align, overlaps, inside)
        pair_align, pair_overlap = align[b, m, a], overlaps[b, m, a]
        # per box: scale its anchors' alignments so the best one gets the box's best CIoU
        box_key = b * gt_boxes.shape[1] + m
        best_align = _max_per_key(pair_align, box_key, batch * gt_boxes.shape[1])
        best_overlap = _max_per_key(pair_overlap, box_key, batch * gt_boxes.shape[1])
        soft_score = pair_align * best_overlap[box_key] / (best_align[box_key] + self.eps)

        foreground[b, a] = True
        target_boxes[b, a] = gt_boxes[b, m]
        target_scores[b, a, labels[b, m]] = soft_score.to(target_scores.dtype)
        return target_boxes, target_scores, foreground

    def _alignment(self, pred_scores, pred_boxes, labels, gt_boxes, inside):
        """Dense (B, M, A) alignment score**alpha * CIoU**beta and CIoU, computed on candidate
        pairs only and zero elsewhere."""
        align = torch.zeros(inside.shape, dtype=pred_scores.dtype, device=pred_scores.device)
        overlaps = torch.zeros_like(align)
        b, m, a = inside.nonzero(as_tuple=True)
        ciou = bbox_iou(gt_boxes[b, m], pred_boxes[b, a], ciou=True).clamp(min=0).to(align.dtype)
        class_score = pred_scores[b, a, labels[b, m]]
        overlaps[b, m, a] = ciou
        align[b, m, a] = class_score.pow(self.alpha) * ciou.pow(self.beta)
        return align, overlaps

    def _positive_pairs(self, align, overlaps, inside):
        """(b, m, a) index triples of the final positives: topk candidates per box, then each
        anchor claimed by several boxes handed to the box of highest CIoU (YOLOv8's rule, which
        looks at every box, not only the claimants)."""
        k = min(self.topk, align.shape[-1])
        topk = torch.zeros_like(inside)
        topk.scatter_(-1, align.topk(k, dim=-1).indices, True)
        b, m, a = (topk & inside).nonzero(as_tuple=True)
        batch, _, num_anchors = align.shape
        anchor_key = b * num_anchors + a
        claims = torch.bincount(anchor_key, minlength=batch * num_anchors)
        contested = claims[anchor_key] > 1
        if not contested.any():
            return b, m, a
        contested_keys = anchor_key[contested].unique()
        cb, ca = contested_keys // num_anchors, contested_keys % num_anchors
        winner = overlaps[cb, :, ca].argmax(dim=-1)
        keep = ~contested
        return torch.cat((b[keep], cb)), torch.cat((m[keep], winner)), torch.cat((a[keep], ca))


def _anchors_inside_boxes(anchor_points: torch.Tensor, gt_boxes: torch.Tensor, eps: float) -> torch.Tensor:
    """(B, M, A) bool: the anchor centre lies inside the box by more than eps on every side."""
    x, y = anchor_points[:, 0], anchor_points[:, 1]
    x1, y1, x2, y2 = (gt_boxes[..., i : i + 1] for i in range(4))  # (B, M, 1) each
    return (x - x1 > eps) & (y - y1 > eps) & (x2 - x > eps) & (y2 - y > eps)


def _widen(boxes: torch.Tensor, min_side: float) -> torch.Tensor:
    """xyxy boxes with each side grown to at least min_side, about the box centre."""
    centre, half = (boxes[..., :2] + boxes[..., 2:]) / 2, (boxes[..., 2:] - boxes[..., :2]) / 2
    half = half.clamp(min=min_side / 2)
    return torch.cat((centre - half, centre + half), dim=-1)


def _max_per_key(values: torch.Tensor, keys: torch.Tensor, num_keys: int) -> torch.Tensor:
    """Max of non-negative values grouped by integer key (0 for keys without values)."""
    out = values.new_zeros(num_keys)
    return out.scatter_reduce(0, keys, values, reduce="amax", include_self=True)


def _pad_targets(targets: torch.Tensor, batch: int, image_size: torch.Tensor) -> torch.Tensor:
    """(N, 6) [image, class, cx, cy, w, h] normalised -> (B, M, 5) [class, x1, y1, x2, y2] pixels,
    zero-padded to the most boxes any image has (padding rows have zero area and are masked)."""
    if targets.shape[0] == 0:
        return targets.new_zeros(batch, 0, 5)
    image_idx = targets[:, 0].long()
    if image_idx.min() < 0 or image_idx.max() >= batch:
        raise InvalidInput(f"target image indices must lie in [0, {batch}), got {image_idx.min()}..{image_idx.max()}")
    order = torch.argsort(image_idx, stable=True)
    image_idx, targets = image_idx[order], targets[order]
    counts = torch.bincount(image_idx, minlength=batch)
    first_of_image = torch.cumsum(counts, 0) - counts
    slot = torch.arange(targets.shape[0], device=targets.device) - first_of_image[image_idx]
    padded = targets.new_zeros(batch, int(counts.max()), 5)
    scale = image_size[[1, 0, 1, 0]].to(targets.dtype)  # (w, h, w, h)
    padded[image_idx, slot] = torch.cat((targets[:, 1:2], xywh2xyxy(targets[:, 2:6] * scale)), dim=1)
    return padded


def _distribution_focal_loss(box_logits: torch.Tensor, target_dist: torch.Tensor) -> torch.Tensor:
    """DFL: cross-entropy towards the two bins around a continuous target, weighted by nearness,
    so the expected value of the predicted distribution converges on the target.
    box_logits (n, 4, reg_max), target_dist (n, 4) -> (n,) mean over the four sides."""
    left = target_dist.long()
    right = left + 1
    weight_left = right - target_dist
    logits = box_logits.flatten(0, 1)
    loss_left = F.cross_entropy(logits, left.flatten(), reduction="none").view(left.shape)
    loss_right = F.cross_entropy(logits, right.flatten(), reduction="none").view(left.shape)
    return (loss_left * weight_left + loss_right * (1 - weight_left)).mean(dim=-1)


class DetectionLoss:
    """YOLOv8's loss. Returns (loss to backward, items). The loss is the gain-weighted sum times
    the batch size (YOLOv8's convention, which its learning rates and gradient clipping assume);
    items are the weighted components without the batch factor, detached, for logging."""

    def __init__(self, model: YOLO, box: float = 7.5, cls: float = 0.5, dfl: float = 1.5):
        self.model = model
        self.nc, self.reg_max = model.nc, model.reg_max
        self.gains = {"box": box, "cls": cls, "dfl": dfl}
        # The middle stride as the smallest box side for candidates, as Ultralytics 8.4 does.
        self.assigner = TaskAlignedAssigner(model.nc, topk=10, alpha=0.5, beta=6.0, min_side=float(model.stride[1]))

    def __call__(
        self, outputs: list[torch.Tensor], targets: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        # float32 throughout: under mixed precision, CIoU's eps and pixel coordinates lose too
        # much in half precision (a no-op on CPU training, which is float32 already)
        box_logits, cls_logits = (t.float() for t in self.model.flatten_outputs(outputs))
        batch = cls_logits.shape[0]
        strides_per_level = self.model.stride.to(cls_logits.device)
        anchors, strides = make_anchors(outputs, strides_per_level)  # grid units, (A, 1)
        image_size = torch.tensor(outputs[0].shape[2:], device=cls_logits.device) * strides_per_level[0]  # (h, w)
        gt = _pad_targets(targets.to(cls_logits.device, cls_logits.dtype), batch, image_size)
        gt_labels, gt_boxes = gt[..., :1], gt[..., 1:]
        gt_valid = gt_boxes.sum(dim=-1, keepdim=True) > 0

        pred_boxes = dist2bbox(self.model.dfl_distances(box_logits), anchors)  # grid units, xyxy
        target_boxes, target_scores, foreground = self.assigner(
            cls_logits.detach().sigmoid(),
            (pred_boxes.detach() * strides).to(gt_boxes.dtype),
            anchors * strides,
            gt_labels,
            gt_boxes,
            gt_valid,
        )
        # normalise by the soft positive mass, not the anchor count: background-heavy images
        # must not dilute the loss of the few anchors that carry objects
        target_scores_sum = target_scores.sum().clamp(min=1)
        loss_cls = (
            F.binary_cross_entropy_with_logits(cls_logits, target_scores, reduction="none").sum() / target_scores_sum
        )
        loss_box, loss_dfl = self._box_losses(
            box_logits, pred_boxes, anchors, target_boxes / strides, target_scores, target_scores_sum, foreground
        )
        items = {
            "box": loss_box * self.gains["box"],
            "cls": loss_cls * self.gains["cls"],
            "dfl": loss_dfl * self.gains["dfl"],
        }
        total = (items["box"] + items["cls"] + items["dfl"]) * batch
        return total, {name: value.detach() for name, value in items.items()}

    def _box_losses(self, box_logits, pred_boxes, anchors, target_boxes, target_scores, target_scores_sum, foreground):
        """CIoU and DFL losses over foreground anchors, each weighted by its soft target score."""
        if not foreground.any():
            # keep the graph connected so backward works on all-background batches
            zero = box_logits.sum() * 0.0
            return zero, zero
        weight = target_scores.sum(dim=-1)[foreground]  # (n,)
        ciou = bbox_iou(pred_boxes[foreground], target_boxes[foreground], ciou=True)
        loss_box = ((1.0 - ciou) * weight).sum() / target_scores_sum
        anchor_points = anchors.expand(foreground.shape[0], -1, -1)[foreground]
        target_dist = bbox2dist(anchor_points, target_boxes[foreground], self.reg_max)
        fg_logits = box_logits[foreground].view(-1, 4, self.reg_max)
        loss_dfl = (_distribution_focal_loss(fg_logits, target_dist) * weight).sum() / target_scores_sum
        return loss_box, loss_dfl
