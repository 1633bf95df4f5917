"""Box arithmetic, anchors, CIoU, NMS and letterbox inversion."""

import pytest
import torch

from artifactkit.detector.ops import (
    bbox2dist,
    bbox_iou,
    box_iou,
    dist2bbox,
    make_anchors,
    non_max_suppression,
    scale_boxes,
)
from artifactkit.errors import InvalidInput


def _prediction(rows: list[tuple[float, float, float, float, int, float]], nc: int = 3) -> torch.Tensor:
    """(1, n, 4 + nc) decoded prediction from (x1, y1, x2, y2, class, prob) rows."""
    pred = torch.zeros(1, len(rows), 4 + nc)
    for i, (x1, y1, x2, y2, cls, prob) in enumerate(rows):
        pred[0, i, :4] = torch.tensor([x1, y1, x2, y2])
        pred[0, i, 4 + cls] = prob
    return pred


def test_make_anchors_centres_cells_in_row_major_order():
    feats = [torch.zeros(1, 1, 2, 3), torch.zeros(1, 1, 1, 1)]
    points, strides = make_anchors(feats, torch.tensor([8.0, 16.0]))
    assert points.tolist()[:4] == [[0.5, 0.5], [1.5, 0.5], [2.5, 0.5], [0.5, 1.5]]
    assert points.shape == (7, 2) and strides.squeeze(1).tolist() == [8.0] * 6 + [16.0]


def test_dist2bbox_and_bbox2dist_round_trip():
    anchors = torch.tensor([[5.0, 5.0], [2.5, 7.5]])
    dist = torch.tensor([[1.0, 2.0, 3.0, 4.0], [0.5, 0.5, 2.0, 1.0]])
    boxes = dist2bbox(dist, anchors)
    assert boxes[0].tolist() == [4.0, 3.0, 8.0, 9.0]
    assert torch.allclose(bbox2dist(anchors, boxes, reg_max=16), dist)
    assert bbox2dist(anchors, torch.tensor([[-50.0, 0, 60, 6]] * 2), reg_max=16).max() <= 14.99 + 1e-6


def test_ciou_of_identical_boxes_is_one_and_penalises_distance():
    box = torch.tensor([[10.0, 20.0, 50.0, 80.0]])
    assert torch.allclose(bbox_iou(box, box, ciou=True), torch.ones(1), atol=1e-5)
    apart = torch.tensor([[100.0, 20.0, 140.0, 80.0]])
    assert bbox_iou(box, apart).item() == pytest.approx(0.0, abs=1e-6)
    assert bbox_iou(box, apart, ciou=True).item() < 0  # distance term keeps a gradient alive


def test_plain_iou_agrees_with_pairwise_box_iou():
    a = torch.tensor([[0.0, 0, 10, 10], [5, 5, 15, 15]])
    b = torch.tensor([[0.0, 0, 10, 20]])
    assert torch.allclose(bbox_iou(a, b.expand(2, 4)), box_iou(a, b).squeeze(1))


def test_nms_removes_overlapping_same_class_boxes():
    pred = _prediction([(0, 0, 10, 10, 0, 0.9), (1, 1, 11, 11, 0, 0.8), (50, 50, 60, 60, 0, 0.7)])
    (kept,) = non_max_suppression(pred, conf_thres=0.1, iou_thres=0.5)
    assert kept[:, 4].tolist() == pytest.approx([0.9, 0.7])
    assert kept[:, 5].tolist() == [0.0, 0.0]


def test_nms_keeps_overlapping_boxes_of_different_classes():
    pred = _prediction([(0, 0, 10, 10, 0, 0.9), (1, 1, 11, 11, 1, 0.8)])
    (kept,) = non_max_suppression(pred, conf_thres=0.1, iou_thres=0.5)
    assert sorted(kept[:, 5].tolist()) == [0.0, 1.0]
    (agnostic,) = non_max_suppression(pred, conf_thres=0.1, iou_thres=0.5, agnostic=True)
    assert len(agnostic) == 1


def test_nms_multi_label_keeps_each_class_above_threshold_for_one_box():
    pred = _prediction([(0, 0, 10, 10, 0, 0.9)])
    pred[0, 0, 4 + 2] = 0.4  # same box, second class
    (multi,) = non_max_suppression(pred, conf_thres=0.1)
    assert sorted(multi[:, 5].tolist()) == [0.0, 2.0]
    (best_only,) = non_max_suppression(pred, conf_thres=0.1, multi_label=False)
    assert best_only[:, 4:].tolist() == [pytest.approx([0.9, 0.0])]


def test_nms_respects_conf_thres_and_max_det():
    rows = [(i * 20, 0, i * 20 + 10, 10, 0, 0.05 + i * 0.01) for i in range(50)]
    (kept,) = non_max_suppression(_prediction(rows), conf_thres=0.3, iou_thres=0.5, max_det=5)
    assert len(kept) == 5
    assert (kept[:, 4] > 0.3).all() and torch.all(kept[:-1, 4] >= kept[1:, 4])
    (none,) = non_max_suppression(_prediction(rows), conf_thres=0.99)
    assert none.shape == (0, 6)


def test_nms_matches_one_at_a_time_greedy_reference():
    generator = torch.Generator().manual_seed(0)
    xy = torch.rand(600, 2, generator=generator) * 200
    boxes = torch.cat((xy, xy + torch.rand(600, 2, generator=generator) * 60 + 1), dim=1)
    scores = torch.rand(600, generator=generator)
    pred = torch.cat((boxes, scores[:, None]), dim=1)[None]
    (kept,) = non_max_suppression(pred, conf_thres=0.0, iou_thres=0.45, max_det=1000, max_candidates=600)
    order = scores.argsort(descending=True)
    iou = box_iou(boxes[order], boxes[order])
    suppressed, reference = torch.zeros(600, dtype=torch.bool), []
    for i in range(600):
        if not suppressed[i]:
            reference.append(order[i].item())
            suppressed |= iou[i] > 0.45
    assert torch.equal(kept[:, :4], boxes[reference])


def test_nms_rejects_bad_thresholds():
    with pytest.raises(InvalidInput):
        non_max_suppression(torch.zeros(1, 4, 6), conf_thres=1.5)


def test_scale_boxes_inverts_the_letterbox_mapping():
    ori_shape, gain, pad = (300, 400), 0.5, (4.0, 29.0)  # (h, w); letterboxed = original * gain + pad
    original = torch.tensor([[10.0, 20.0, 110.0, 220.0], [0.0, 0.0, 400.0, 300.0]])
    letterboxed = original * gain + torch.tensor([pad[0], pad[1], pad[0], pad[1]])
    restored = scale_boxes(letterboxed, (gain, pad), ori_shape)
    assert torch.allclose(restored, original)
    clipped = scale_boxes(torch.tensor([[0.0, 0.0, 500.0, 500.0]]), (gain, pad), ori_shape)
    assert clipped.tolist() == [[0.0, 0.0, 400.0, 300.0]]


def test_scale_boxes_recomputes_a_centred_letterbox_from_shapes():
    original = torch.tensor([[40.0, 30.0, 200.0, 150.0]])
    gain = 416 / 640
    letterboxed = original * gain + torch.tensor([0.0, 52.0, 0.0, 52.0])  # 640x480 -> 416x312 + 52 px bands
    assert torch.allclose(scale_boxes(letterboxed, None, (480, 640), img_shape=(416, 416)), original, atol=1e-4)
    with pytest.raises(InvalidInput):
        scale_boxes(letterboxed, None, (480, 640))
