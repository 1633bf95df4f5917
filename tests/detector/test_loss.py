"""YOLOv8 loss and task-aligned assigner."""

import pytest
import torch

from artifactkit.detector.loss import DetectionLoss, TaskAlignedAssigner
from artifactkit.detector.model import YOLO
from artifactkit.detector.ops import bbox_iou, make_anchors


@pytest.fixture()
def model() -> YOLO:
    torch.manual_seed(0)
    return YOLO(nc=3)


# image 0 has three boxes, image 1 none: [image, class, cx, cy, w, h], normalised
TARGETS = torch.tensor(
    [
        [0, 2, 0.50, 0.50, 0.40, 0.50],
        [0, 0, 0.20, 0.25, 0.15, 0.20],
        [0, 1, 0.75, 0.30, 0.30, 0.25],
    ]
)


def test_loss_is_finite_positive_and_backpropagates(model):
    outputs = model(torch.rand(2, 3, 64, 64))
    loss, items = DetectionLoss(model)(outputs, TARGETS)
    assert loss.ndim == 0 and torch.isfinite(loss) and loss > 0
    assert set(items) == {"box", "cls", "dfl"} and all(v > 0 and not v.requires_grad for v in items.values())
    # YOLOv8 convention: the loss to backward is the item sum times the batch size
    assert loss.item() == pytest.approx(2 * sum(v.item() for v in items.values()), rel=1e-5)
    loss.backward()
    head_grad = model.head.box_branches[0][-1].weight.grad
    assert head_grad is not None and torch.isfinite(head_grad).all() and head_grad.abs().sum() > 0


def test_batch_without_any_target_still_backpropagates(model):
    outputs = model(torch.rand(2, 3, 64, 64))
    loss, items = DetectionLoss(model)(outputs, torch.zeros(0, 6))
    assert torch.isfinite(loss) and loss > 0  # background still teaches the classifier
    assert items["box"] == 0 and items["dfl"] == 0
    loss.backward()
    assert model.head.cls_branches[0][-1].bias.grad.abs().sum() > 0


def test_gains_scale_the_components(model):
    outputs = model(torch.rand(2, 3, 64, 64))
    _, base = DetectionLoss(model)(outputs, TARGETS)
    _, doubled = DetectionLoss(model, box=15.0, cls=1.0, dfl=3.0)(outputs, TARGETS)
    for name in ("box", "cls", "dfl"):
        assert doubled[name].item() == pytest.approx(2 * base[name].item(), rel=1e-5)


def test_a_few_optimisation_steps_reduce_the_loss(model):
    # 128 px, not 64: at 64 px the stride-32 level is 2x2 and BatchNorm statistics of a batch of
    # two such maps are too noisy for a handful of steps to be a fair test
    images = torch.rand(2, 3, 128, 128)
    criterion = DetectionLoss(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(10):
        loss, _ = criterion(model(images), TARGETS)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert max(losses[-2:]) < 0.5 * losses[0], losses


def _assign(pred_boxes, gt_boxes, gt_labels, nc=2, grid=8, stride=8.0, min_side=0.0):
    """Run the assigner on one image with uniform class scores over a grid x grid level."""
    anchors, strides = make_anchors([torch.zeros(1, 1, grid, grid)], torch.tensor([stride]))
    num_anchors = anchors.shape[0]
    gt_boxes = torch.tensor(gt_boxes, dtype=torch.float32)[None]
    labels = torch.tensor(gt_labels, dtype=torch.float32)[None, :, None]
    valid = gt_boxes.sum(-1, keepdim=True) > 0
    scores = torch.full((1, num_anchors, nc), 0.5)
    return TaskAlignedAssigner(nc, topk=3, min_side=min_side)(
        scores, pred_boxes(anchors * strides), anchors * strides, labels, gt_boxes, valid
    )


def test_assigner_picks_topk_anchors_inside_the_box_and_scales_scores_to_best_iou():
    def predicted(points):  # every anchor predicts a 16 px box centred on itself
        return torch.cat((points - 8, points + 8), dim=-1)[None]

    target_boxes, target_scores, foreground = _assign(predicted, [[4.0, 4.0, 36.0, 36.0], [0, 0, 0, 0]], [1, 0])
    assert foreground.sum() == 3  # topk = 3; padding row assigns nothing
    assert torch.all(target_boxes[foreground] == torch.tensor([4.0, 4.0, 36.0, 36.0]))
    assert torch.all(target_scores[foreground][:, 0] == 0)  # class 1 only
    assert target_scores[..., 1].max().item() == pytest.approx(_best_ciou(), abs=1e-4)
    assert target_scores[~foreground].sum() == 0


def test_assigner_widens_tiny_boxes_so_they_get_candidate_anchors():
    def predicted(points):
        return torch.cat((points - 8, points + 8), dim=-1)[None]

    tiny = [[13.0, 13.0, 19.0, 19.0]]  # 6 px: no stride-8 anchor centre (4, 12, 20, ...) lies inside
    assert not _assign(predicted, tiny, [0])[2].any()
    _, target_scores, foreground = _assign(predicted, tiny, [0], min_side=16.0)
    assert foreground.sum() == 3 and target_scores[foreground][:, 0].gt(0).all()


def _best_ciou() -> float:
    # best anchor centre (20, 20) predicts [12, 12, 28, 28] for the [4, 4, 36, 36] box
    return bbox_iou(torch.tensor([4.0, 4, 36, 36]), torch.tensor([12.0, 12, 28, 28]), ciou=True).item()


def test_assigner_gives_a_shared_anchor_to_the_box_it_overlaps_most():
    def predicted(points):
        return torch.cat((points - 8, points + 8), dim=-1)[None]

    # both boxes contain the anchors around (20, 20); the small one fits their 16 px predictions
    _, target_scores, foreground = _assign(predicted, [[0.0, 0.0, 48.0, 48.0], [10.0, 10.0, 30.0, 30.0]], [0, 1])
    anchor_20_20 = 2 * 8 + 2
    assert foreground[0, anchor_20_20]
    assert target_scores[0, anchor_20_20, 1] > 0 and target_scores[0, anchor_20_20, 0] == 0
