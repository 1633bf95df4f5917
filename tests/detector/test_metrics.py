"""DetectionMetrics against the COCO reference evaluator, plus match_image and the COCO JSON I/O."""

import contextlib
import io
import json
import time

import numpy as np
import pytest
import torch

from artifactkit.detector.metrics import (
    DetectionMetrics,
    _greedy_match,
    coco_records,
    match_image,
    read_coco_json,
    records_to_preds,
    score_coco_json,
    write_coco_json,
)
from artifactkit.errors import InvalidInput, NotFound

NC = 5  # class 4 never appears in ground truth but is predicted
NAMES = [f"c{i}" for i in range(NC)]
W, H = 640, 480


def _random_boxes(rng, n):
    """xyxy boxes from 4 px to ~300 px, varied aspect ratios, inside a W x H image."""
    size = np.exp(rng.uniform(np.log(4), np.log(300), n))
    w = np.minimum(size * rng.uniform(0.5, 1.5, n), W - 1)
    h = np.minimum(size * rng.uniform(0.5, 1.5, n), H - 1)
    x1, y1 = rng.uniform(0, W - w), rng.uniform(0, H - h)
    return np.stack([x1, y1, x1 + w, y1 + h], 1)


def _jitter(rng, box, sigma):
    """Corners moved in proportion to box size; re-sorted because a detector never emits w < 0."""
    b = box + rng.normal(0, sigma, 4) * np.tile(box[2:] - box[:2], 2)
    return np.concatenate([np.minimum(b[:2], b[2:]), np.maximum(b[:2], b[2:])])


def _image_preds(rng, gt_cls, gt_boxes):
    """Jittered hits, misses, duplicates, wrong classes and free false positives for one image."""
    rows = []
    for c, b in zip(gt_cls, gt_boxes):
        if rng.random() < 0.85:  # else missed
            rows.append([*_jitter(rng, b, rng.uniform(0.01, 0.25)), rng.uniform(0.2, 1), c])
        if rng.random() < 0.25:  # duplicate, usually looser and less confident
            rows.append([*_jitter(rng, b, rng.uniform(0.02, 0.3)), rng.uniform(0.05, 0.8), c])
        if rng.random() < 0.1:  # right place, wrong class
            rows.append([*_jitter(rng, b, 0.03), rng.uniform(0.05, 0.9), (c + 1) % NC])
    n_fp = rng.integers(0, 6)
    for b, c in zip(_random_boxes(rng, n_fp), rng.integers(0, NC, n_fp)):
        rows.append([*b, rng.uniform(0, 0.7), c])
    return np.array(rows, dtype=np.float64).reshape(-1, 6)


def make_case(seed, n_img=24, round_scores=False):
    """{stem: (gt_cls, gt_boxes)}, {stem: pred (n, 6)}; one image has > 100 dets of one class."""
    rng = np.random.default_rng(seed)
    gts, preds = {}, {}
    for i in range(n_img):
        m = int(rng.integers(0, 10))  # 0 -> background image
        gt_cls, gt_boxes = rng.integers(0, NC - 1, m), _random_boxes(rng, m)
        pred = _image_preds(rng, gt_cls, gt_boxes)
        if i == 3:  # exercises the per-image-per-class cap of 100
            extra = np.concatenate([_random_boxes(rng, 130), rng.uniform(0, 1, (130, 1)), np.zeros((130, 1))], 1)
            pred = np.concatenate([pred, extra])
            gt_cls, gt_boxes = np.append(gt_cls, [0] * 3), np.concatenate([gt_boxes, extra[:3, :4]])
        if round_scores:  # ties in score, so the tie-break order must agree too
            pred[:, 4] = np.round(pred[:, 4], 1)
        stem = f"img{i:03d}"
        gts[stem] = (torch.tensor(gt_cls, dtype=torch.long), torch.tensor(gt_boxes).reshape(-1, 4))
        preds[stem] = torch.tensor(pred)
    return gts, preds


def coco_reference(gts, preds):
    """pycocotools COCOeval stats and per-class, per-threshold AP (K, T) for the same case."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    ids = {stem: k + 1 for k, stem in enumerate(sorted(gts))}  # ints, in sorted-stem order
    anns = []
    for stem, (cls, boxes) in gts.items():
        for c, (x1, y1, x2, y2) in zip(cls.tolist(), boxes.tolist()):
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": ids[stem],
                    "category_id": c,
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "area": (x2 - x1) * (y2 - y1),
                    "iscrowd": 0,
                }
            )
    dets = [dict(r, image_id=ids[r["image_id"]]) for stem in sorted(preds) for r in coco_records(stem, preds[stem])]
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
        gt = COCO()
        gt.dataset = {
            "images": [{"id": i} for i in ids.values()],
            "annotations": anns,
            "categories": [{"id": c} for c in range(NC)],
        }
        gt.createIndex()
        ev = COCOeval(gt, gt.loadRes(dets), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    prec = ev.eval["precision"][:, :, :, 0, 2]  # (T, R, K) at area=all, maxDets=100
    per_class = np.where((prec > -1).all(axis=(0, 1)), prec.mean(1), np.nan).T
    return ev.stats, per_class


def ours(gts, preds):
    m = DetectionMetrics(NC, NAMES)
    for stem in sorted(gts):
        m.update(preds[stem], *gts[stem])
    return m, m.compute()


@pytest.mark.parametrize("seed,round_scores", [(0, False), (1, False), (2, False), (3, True), (4, True)])
def test_agrees_with_pycocotools(seed, round_scores):
    gts, preds = make_case(seed, round_scores=round_scores)
    stats, ref_ap = coco_reference(gts, preds)
    m, res = ours(gts, preds)
    assert 0.05 < stats[0] < 0.95  # the case is neither trivial nor hopeless
    assert res["mAP50-95"] == pytest.approx(stats[0], abs=0.01)
    assert res["mAP50"] == pytest.approx(stats[1], abs=0.01)
    # we reproduce COCOeval's algorithm, so per class and threshold it agrees to rounding
    np.testing.assert_allclose(m.ap, ref_ap, atol=1e-6)
    assert np.isnan(m.ap50[NC - 1]) and m.per_class()[NC - 1]["mAP50"] is None


def test_score_coco_json_agrees_with_pycocotools(tmp_path):
    gts, preds = make_case(7, round_scores=True)
    path = tmp_path / "preds.json"
    write_coco_json(path, [r for stem, p in preds.items() for r in coco_records(stem, p)])
    stats, _ = coco_reference(gts, preds)
    res = score_coco_json(path, gts, NAMES).compute()
    assert res["mAP50-95"] == pytest.approx(stats[0], abs=0.01)
    assert res["mAP50"] == pytest.approx(stats[1], abs=0.01)


def test_perfect_predictions_score_one():
    gts, _ = make_case(5)
    m = DetectionMetrics(NC, NAMES)
    for cls, boxes in gts.values():
        pred = torch.cat([boxes, torch.full((len(cls), 1), 0.9), cls[:, None].double()], 1)
        m.update(pred, cls, boxes)
    res = m.compute()
    assert res == pytest.approx({"precision": 1.0, "recall": 1.0, "mAP50": 1.0, "mAP50-95": 1.0})


def test_no_predictions_score_zero():
    gts, _ = make_case(6)
    m = DetectionMetrics(NC, NAMES)
    for cls, boxes in gts.values():
        m.update(torch.zeros((0, 6)), cls, boxes)
    assert m.compute() == {"precision": 0.0, "recall": 0.0, "mAP50": 0.0, "mAP50-95": 0.0}
    assert DetectionMetrics(NC, NAMES).compute()["mAP50"] == 0.0  # no GT at all: 0, not -1


def test_match_image_hand_made():
    gt_cls = torch.tensor([0, 0, 1])
    gt_boxes = torch.tensor([[0, 0, 10, 10], [20, 20, 40, 40], [50, 50, 60, 60]], dtype=torch.float)
    pred = torch.tensor(
        [
            [1, 0, 11, 10, 0.8, 0],  # duplicate of GT 0 (IoU 0.82), lower score: FP
            [0, 0, 10, 10, 0.9, 0],  # GT 0: TP
            [20, 20, 40, 40, 0.7, 1],  # GT 1's place, wrong class: FP
            [100, 100, 110, 110, 0.6, 0],  # nothing there: FP
            [50, 50, 60, 61, 0.5, 1],  # GT 2 at IoU 0.91: TP
        ]
    )
    assert match_image(pred, gt_cls, gt_boxes) == (2, 3, 1)
    assert match_image(pred, gt_cls, gt_boxes, iou=0.95) == (1, 4, 2)
    assert match_image(pred, gt_cls, gt_boxes, conf=0.65) == (1, 2, 2)
    assert match_image(torch.zeros((0, 6)), gt_cls, gt_boxes) == (0, 0, 3)
    assert match_image(pred, torch.zeros(0), torch.zeros((0, 4))) == (0, 5, 0)


def test_greedy_match_is_cocos_not_optimal():
    # the first (highest-score) detection takes its best GT even if that strands the second one
    iou = np.array([[0.7, 0.6], [0.6, 0.0]])
    assert _greedy_match(iou, np.array([0.5])).tolist() == [[True], [False]]
    # equal IoUs: COCOeval's `<` test hands the detection the later GT
    iou = np.array([[0.8, 0.8], [0.0, 0.6]])
    assert _greedy_match(iou, np.array([0.5])).tolist() == [[True], [False]]
    assert _greedy_match(iou, np.array([0.5, 0.7])).tolist() == [[True, True], [False, False]]


def test_max_det_caps_per_image_per_class():
    boxes = torch.tensor([[0.0, 0, 10, 10]])
    far = torch.tensor([[100.0, 100, 110, 110, 0.9, 0]]).repeat(100, 1)
    hit = torch.tensor([[0.0, 0, 10, 10, 0.5, 0]])  # 101st by score in class 0
    other = torch.tensor([[500.0, 0, 510, 10, 0.95, 1]])  # another class does not count
    m = DetectionMetrics(NC, NAMES)
    m.update(torch.cat([far, hit, other]), torch.tensor([0]), boxes)
    m.compute()
    assert m.ap50[0] == 0.0
    m = DetectionMetrics(NC, NAMES, max_det=None)
    m.update(torch.cat([far, hit, other]), torch.tensor([0]), boxes)
    m.compute()
    assert m.ap50[0] > 0.0


def test_compute_is_fast_at_validation_scale():
    rng = np.random.default_rng(0)
    m = DetectionMetrics(12, [str(i) for i in range(12)])
    for _ in range(200):
        gt_boxes = torch.tensor(_random_boxes(rng, 20))
        gt_cls = torch.tensor(rng.integers(0, 12, 20))
        pred = torch.cat(
            [
                torch.tensor(_random_boxes(rng, 260)),
                torch.tensor(rng.uniform(0, 1, (260, 1))),
                torch.tensor(rng.integers(0, 12, (260, 1)), dtype=torch.float64),
            ],
            1,
        )
        near = torch.cat(
            [
                gt_boxes + torch.tensor(rng.normal(0, 2, (20, 4))),
                torch.tensor(rng.uniform(0, 1, (20, 1))),
                gt_cls[:, None].double(),
            ],
            1,
        )
        m.update(torch.cat([pred, near, near]), gt_cls, gt_boxes)
    t0 = time.perf_counter()
    res = m.compute()
    assert time.perf_counter() - t0 < 2.0
    assert 0 < res["mAP50"] <= 1


def test_coco_json_round_trip(tmp_path):
    _, preds = make_case(8)
    records = [r for stem, p in preds.items() for r in coco_records(stem, p)]
    path = tmp_path / "preds.json"
    write_coco_json(path, records)
    back = read_coco_json(path, image_ids=set(preds), nc=NC)
    assert back == records  # repr floats survive JSON exactly
    grouped = records_to_preds(back)
    assert set(grouped) == {s for s, p in preds.items() if len(p)}
    for stem, p in grouped.items():
        torch.testing.assert_close(p, preds[stem], rtol=0, atol=1e-9)


GOOD = {"image_id": "img000", "category_id": 1, "bbox": [1.0, 2.0, 3.0, 4.0], "score": 0.5}


@pytest.mark.parametrize(
    "content,fragment",
    [
        ('[{"image_id": ', "line 1: not valid JSON"),
        (json.dumps({"annotations": []}), "expected a JSON list"),
        (json.dumps([GOOD, GOOD, GOOD, 7]), "entry 3: expected an object"),
        (json.dumps([GOOD] * 3 + [{k: v for k, v in GOOD.items() if k != "score"}]), "entry 3: missing key 'score'"),
        (json.dumps([GOOD] * 3 + [dict(GOOD, image_id=["a"])]), "entry 3: image_id must be"),
        (json.dumps([GOOD] * 3 + [dict(GOOD, category_id="1")]), "entry 3: category_id must be"),
        (json.dumps([GOOD] * 3 + [dict(GOOD, category_id=-1)]), "entry 3: category_id must be"),
        (json.dumps([GOOD] * 3 + [dict(GOOD, category_id=NC)]), "entry 3: category_id 5 out of range"),
        (json.dumps([GOOD] * 3 + [dict(GOOD, bbox=[1, 2, 3])]), "entry 3: bbox must be"),
        (json.dumps([GOOD] * 3 + [dict(GOOD, bbox=[1, 2, "3", 4])]), "entry 3: bbox must be"),
        (json.dumps([GOOD] * 3 + [dict(GOOD, bbox=[1, 2, -3, 4])]), "entry 3: bbox has negative size"),
        (json.dumps([GOOD] * 3 + [dict(GOOD, score="high")]), "entry 3: score must be"),
        (json.dumps([GOOD] * 3 + [dict(GOOD, score=None)]), "entry 3: score must be"),
        (json.dumps([GOOD] * 3 + [dict(GOOD, image_id="nope")]), "entry 3: image_id 'nope' is not"),
    ],
)
def test_bad_coco_json_names_file_and_entry(tmp_path, content, fragment):
    path = tmp_path / "bad-preds.json"
    path.write_text(content)
    with pytest.raises(InvalidInput) as err:
        read_coco_json(path, image_ids={"img000"}, nc=NC)
    assert str(path) in str(err.value) and fragment in str(err.value)


def test_coco_json_unknown_image_surfaces_through_scoring(tmp_path):
    path = tmp_path / "preds.json"
    write_coco_json(path, [GOOD, dict(GOOD, image_id="elsewhere")])
    gts = {"img000": (torch.tensor([1]), torch.tensor([[1.0, 2.0, 4.0, 6.0]]))}
    with pytest.raises(InvalidInput, match="entry 1: image_id 'elsewhere'"):
        score_coco_json(path, gts, NAMES)
    assert read_coco_json(path)[1]["image_id"] == "elsewhere"  # unchecked without image_ids
    with pytest.raises(NotFound, match="missing.json"):
        read_coco_json(tmp_path / "missing.json")


def test_per_class_rows_pr_curve_and_confusion_matrix():
    from types import SimpleNamespace

    from artifactkit.detector.metrics import confusion_matrix

    gt_cls, gt_boxes = torch.tensor([0, 1]), torch.tensor([[0.0, 0, 10, 10], [20, 20, 30, 30]])
    pred = torch.tensor(
        [
            [0.0, 0, 10, 10, 0.9, 0],  # right box, right class
            [20, 20, 30, 30, 0.8, 0],  # right box, wrong class (true 1)
            [50, 50, 60, 60, 0.7, 1],  # nothing there: background
            [0, 0, 10, 10, 0.1, 1],
        ]
    )  # below the matrix's conf 0.25
    m = DetectionMetrics(3, ["a", "b", "c"])
    m.update(pred, gt_cls, gt_boxes)
    m.update(torch.zeros((0, 6)), torch.tensor([0]), torch.tensor([[0.0, 0, 5, 5]]))
    m.compute()
    rows = m.per_class()
    assert [(r["class"], r["images"], r["instances"]) for r in rows] == [("a", 2, 2), ("b", 1, 1), ("c", 0, 0)]
    assert rows[2]["mAP50"] is None and rows[0]["mAP50"] == pytest.approx(0.5, abs=0.01)
    assert len(m.pr_curve) == 101 and m.pr_curve[0] == pytest.approx(0.5) and m.pr_curve[-1] == 0.0
    image = SimpleNamespace(pred=pred, gt_cls=gt_cls, gt_boxes=gt_boxes)
    assert confusion_matrix([image], nc=3) == [[1, 1, 0, 0], [0, 0, 0, 1], [0, 0, 0, 0], [0, 0, 0, 0]]
