"""YOLO data loading: data.yaml parsing, label checks, augmentation determinism, batches.
(Every data.yaml form and label policy of the shared reader: tests/test_yolo.py.)"""

import random
import re

import numpy as np
import pytest
import torch
from PIL import Image

from artifactkit.detector.augment import letterbox
from artifactkit.detector.data import AugmentConfig, EpochSampler, YoloDataset, build_dataloader
from artifactkit.errors import InvalidInput
from artifactkit.yolo import label_path, load_data_config

NAMES = ["a", "b", "c"]


def _image(path, w, h, seed):
    arr = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


def _labels(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(" ".join(str(v) for v in row) + "\n" for row in rows))


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """images/{train,val} of odd sizes with random boxes; one train image is background."""
    root = tmp_path_factory.mktemp("yolo")
    rng = np.random.default_rng(0)
    for split, n in (("train", 10), ("val", 3)):
        for i in range(n):
            w, h = [(80, 60), (50, 90), (64, 64)][i % 3]
            _image(root / "images" / split / f"{split}{i}.png", w, h, i)
            if split == "train" and i == 9:
                continue  # background: no label file
            k = int(rng.integers(1, 5))
            wh = rng.uniform(0.1, 0.4, (k, 2))
            c = rng.uniform(wh / 2, 1 - wh / 2)
            rows = [[int(rng.integers(3)), *np.round(c[j], 4), *np.round(wh[j], 4)] for j in range(k)]
            _labels(root / "labels" / split / f"{split}{i}.txt", rows)
    (root / "data.yaml").write_text("path: .\ntrain: images/train\nval: images/val\nnames: [a, b, c]\n")
    return root


def _train_set(root, **kw):
    return YoloDataset(root / "images" / "train", NAMES, imgsz=64, augment=True, seed=3, **kw)


# data.yaml ------------------------------------------------------------------------------------


def test_config_names_list_dict_and_relative_path(root, tmp_path):
    cfg = load_data_config(root)  # a folder means <folder>/data.yaml
    assert cfg.names == NAMES and cfg.root == root.resolve()
    assert {k: s.sources for k, s in cfg.splits.items()} == {
        "train": ((root / "images/train").resolve(),),
        "val": ((root / "images/val").resolve(),),
    }
    assert [p.name for p in cfg.splits["val"].images] == ["val0.png", "val1.png", "val2.png"]
    conf = tmp_path / "configs" / "mine.yaml"
    conf.parent.mkdir()
    conf.write_text(
        f"path: ../{root.name}x\ntrain: images/train\nval: images/val\n"
        "val-heldout: images/val\ndownload: https://example.com/x.zip\n"
        "nc: 3\nnames: {0: a, 1: b, 2: c}\n"
    )
    (tmp_path / f"{root.name}x").symlink_to(root)
    cfg = load_data_config(conf)
    assert cfg.names == NAMES and cfg.nc == 3
    assert set(cfg.splits) == {"train", "val", "val-heldout"}
    assert cfg.splits["val-heldout"].sources == ((root / "images/val").resolve(),)


@pytest.mark.parametrize(
    "body, needle",
    [
        ("train: images/train\nval: images/val\nnc: 4\nnames: [a, b, c]\n", "'nc'"),
        ("train: images/train\nval: images/val\n", "'names'"),
        ("train: images/train\nval: images/val\nnames: {0: a, 2: c}\n", "'names'"),
        ("train: images/train\nnames: [a]\n", "'val'"),
        ("train: images/train\nval: images/nope\nnames: [a]\n", "'val'"),
        ("train: [images/train, images/nope]\nval: images/val\nnames: [a]\n", "'train'"),
        ("train: {a: 1}\nval: images/val\nnames: [a]\n", "'train'"),
        ("train: images/train\nval: images/val\nnames: [a\n", "line"),
        ("- just\n- a list\n", "mapping"),
    ],
)
def test_config_errors_name_file_and_key(root, tmp_path, body, needle):
    conf = tmp_path / "bad.yaml"
    conf.write_text(f"path: {root}\n" + body if not body.startswith("-") else body)
    with pytest.raises(InvalidInput, match=str(conf)) as err:
        load_data_config(conf)
    assert needle in str(err.value)


def test_config_missing_file(tmp_path):
    with pytest.raises(InvalidInput, match="data.yaml"):
        load_data_config(tmp_path)


# labels and images -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad, needle",
    [
        ("3 0.5 0.5 0.1 0.1", "class id"),
        ("-1 0.5 0.5 0.1 0.1", "class id"),
        ("1.5 0.5 0.5 0.1 0.1", "class id"),
        ("nan 0.5 0.5 0.1 0.1", "class id"),
        ("0 1.2 0.5 0.1 0.1", "[0, 1]"),
        ("0 0.5 -0.1 0.1 0.1", "[0, 1]"),
        ("0 0.5 0.5 0.1", "5 columns"),
        ("0 0.5 0.5 0.1 0.1 0.3", "5 columns"),
        ("0 0.5 x 0.1 0.1", "non-numeric"),
        ("0 0.5 0.5 0 0.1", "> 0"),
    ],
)
def test_bad_label_names_file_and_line(tmp_path, bad, needle):
    _image(tmp_path / "images" / "s" / "im.jpg", 32, 32, 0)
    lbl = tmp_path / "labels" / "s" / "im.txt"
    lbl.parent.mkdir(parents=True)
    lbl.write_text(f"0 0.5 0.5 0.2 0.2\n{bad}\n")
    with pytest.raises(InvalidInput, match=re.escape(f"{lbl}:2: ")) as err:
        YoloDataset(tmp_path / "images" / "s", NAMES, imgsz=32)
    assert needle in str(err.value)


def test_label_path_replaces_last_images_dir():
    assert label_path("/d/images/x/images/train/a.b.jpg") == label_path("/d/images/x/images/train/a.b.png")
    assert str(label_path("/d/images/x/images/train/a.b.jpg")) == "/d/images/x/labels/train/a.b.txt"


def test_background_and_empty_label_files(root):
    ds = YoloDataset(root / "images" / "train", NAMES, imgsz=64)
    assert ds.files[-1].stem == "train9" and len(ds.labels[-1]) == 0
    sample = ds[len(ds) - 1]
    assert sample["cls"].shape == (0,) and sample["bboxes"].shape == (0, 4)
    batch = next(iter(build_dataloader(_train_set(root), batch=10)))
    assert batch["targets"].shape[1] == 6


def test_corrupt_images_name_the_file(tmp_path):
    bad = tmp_path / "images" / "s" / "garbage.jpg"
    _image(tmp_path / "images" / "s" / "good.jpg", 32, 32, 0)
    bad.write_bytes(b"not an image at all")
    with pytest.raises(InvalidInput, match=str(bad)):
        YoloDataset(tmp_path / "images" / "s", NAMES, imgsz=32)
    data = bad.with_name("good.jpg").read_bytes()
    bad.write_bytes(data[: len(data) // 2])  # truncated: the header reads, decoding fails
    ds = YoloDataset(tmp_path / "images" / "s", NAMES, imgsz=32)
    with pytest.raises(InvalidInput, match=str(bad)):
        ds[0]
    (tmp_path / "empty").mkdir()
    with pytest.raises(InvalidInput, match="no images"):
        YoloDataset(tmp_path / "empty", NAMES)


def test_loader_unwraps_worker_errors(root, monkeypatch):
    # What torch re-raises from a worker: the type kept, the message replaced by a traceback.
    # (Simulated: a real worker failure costs ~10 s of torch's worker shutdown.)
    wrapped = (
        "Caught InvalidInput in DataLoader worker process 0.\nOriginal Traceback (most "
        'recent call last):\n  File "x.py", line 1\nartifactkit.errors.InvalidInput: '
        "cannot read image /d/a.jpg: truncated\n"
    )

    def fail(self, key):
        raise InvalidInput(wrapped)

    ds = YoloDataset(root / "images" / "val", NAMES, imgsz=64)
    monkeypatch.setattr(YoloDataset, "__getitem__", fail)
    with pytest.raises(InvalidInput) as err:
        list(build_dataloader(ds, batch=1))
    assert str(err.value) == "cannot read image /d/a.jpg: truncated"


def test_exif_rotation_gives_displayed_shape(tmp_path):
    path = tmp_path / "images" / "s" / "rot.jpg"
    path.parent.mkdir(parents=True)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90: stored 40x20 displays as 20x40
    Image.new("RGB", (40, 20), (200, 10, 10)).save(path, exif=exif)
    ds = YoloDataset(path.parent, NAMES, imgsz=40)
    assert ds.shapes[0] == (40, 20)
    assert ds.load_image(0).shape == (40, 20, 3)


# samples ---------------------------------------------------------------------------------------


def _same(a, b):
    return torch.equal(a["img"], b["img"]) and torch.equal(a["cls"], b["cls"]) and torch.equal(a["bboxes"], b["bboxes"])


def test_sample_is_a_function_of_seed_epoch_index(root):
    a, b = _train_set(root), _train_set(root, cache=True)
    for i in range(len(a)):
        assert _same(a[(i, 5, True)], b[(i, 5, True)])
        assert _same(a[(i, 5, False)], b[(i, 5, False)])
    a.set_epoch(5)
    assert _same(a[2], b[(2, 5, True)])
    assert not _same(a[(2, 5, True)], a[(2, 6, True)])
    assert not _same(a[(2, 5, True)], a[(2, 5, False)])
    other_seed = YoloDataset(root / "images" / "train", NAMES, imgsz=64, augment=True, seed=4)
    assert not _same(a[(2, 5, True)], other_seed[(2, 5, True)])


def test_augmented_targets_stay_inside(root):
    ds = _train_set(root)
    n_boxes = 0
    for epoch in range(6):
        for i in range(len(ds)):
            s = ds[(i, epoch, epoch % 2 == 0)]
            assert s["img"].shape == (3, 64, 64) and s["img"].dtype == torch.uint8
            box = s["bboxes"]
            n_boxes += len(box)
            assert ((box >= 0) & (box <= 1)).all()
            assert (box[:, 2:] > 0).all()
            lo, hi = box[:, :2] - box[:, 2:] / 2, box[:, :2] + box[:, 2:] / 2
            assert ((lo >= -1e-6) & (hi <= 1 + 1e-6)).all()
            assert ((s["cls"] >= 0) & (s["cls"] < 3)).all()
    assert n_boxes > 50


def test_flip_and_no_augment_config(root):
    off = AugmentConfig(mosaic=0, scale=0, translate=0, hsv_h=0, hsv_s=0, hsv_v=0, contrast=0, blur=0, fliplr=1)
    ds = YoloDataset(root / "images" / "train", NAMES, imgsz=64, augment=True, hyp=off)
    ev = YoloDataset(root / "images" / "train", NAMES, imgsz=64)
    for i in range(3):
        s, e = ds[i], ev[i]
        assert torch.equal(s["img"], e["img"].flip(-1))
        expect = e["bboxes"].clone()
        expect[:, 0] = 1 - expect[:, 0]
        assert torch.allclose(s["bboxes"], expect, atol=1e-5)


def test_letterbox_ratio_pad_maps_back_to_original(root):
    ds = YoloDataset(root / "images" / "val", NAMES, imgsz=64)
    for i in range(len(ds)):
        s = ds[i]
        h0, w0 = s["ori_shape"]
        gain, (pad_w, pad_h) = s["ratio_pad"]
        assert gain == pytest.approx(64 / max(h0, w0))
        box = s["bboxes"].numpy() * 64
        orig_cx = (box[:, 0] - pad_w) / gain
        orig_cy = (box[:, 1] - pad_h) / gain
        labels = ds.labels[i]
        assert np.allclose(orig_cx, labels[:, 1] * w0, atol=1.0)
        assert np.allclose(orig_cy, labels[:, 2] * h0, atol=1.0)
        assert np.allclose(box[:, 2] / gain, labels[:, 3] * w0, atol=1.0)
        # the pad is grey, the image sits inside it
        img = s["img"].numpy()
        if pad_w >= 1:
            assert (img[:, :, 0] == 114).all()
        if pad_h >= 1:
            assert (img[:, 0, :] == 114).all()
    out, gain, pad = letterbox(np.zeros((10, 40, 3), np.uint8), 80)
    assert out.shape == (3, 80, 80) and gain == 2.0 and pad == (0.0, 30.0)


# sampler and loader ----------------------------------------------------------------------------


def test_sampler_order_and_ddp_shards(root):
    ds = _train_set(root)
    s = EpochSampler(ds, shuffle=True, seed=1)
    assert np.array_equal(s.order(0), EpochSampler(ds, shuffle=True, seed=1).order(0))
    assert not np.array_equal(s.order(0), s.order(1))
    assert sorted(s.order(0)) == list(range(len(ds)))
    shards = [EpochSampler(ds, True, 1, rank=r, world_size=3) for r in range(3)]
    orders = [sh.order(2) for sh in shards]
    assert {len(o) for o in orders} == {4} and {len(sh) for sh in shards} == {4}
    assert set(np.concatenate(orders)) == set(range(len(ds)))
    assert np.array_equal(EpochSampler(ds, False).order(7), np.arange(len(ds)))
    ds.set_epoch(2)
    keys = list(s)
    assert [k[0] for k in keys] == list(s.order(2)) and keys[0][1:] == (2, True)
    with pytest.raises(InvalidInput):
        EpochSampler(ds, rank=2, world_size=2)


def _epochs(loader, ds, epochs):
    out = []
    for epoch in epochs:
        ds.set_epoch(epoch)
        if epoch == epochs[-1]:
            ds.close_mosaic()
        out.append(list(loader))
    return out


def test_loader_identical_across_worker_counts(root):
    rng_states = (random.getstate(), np.random.get_state()[1].copy(), torch.get_rng_state())
    runs = []
    for workers in (0, 2):
        ds = _train_set(root)
        runs.append(_epochs(build_dataloader(ds, 4, workers, shuffle=True, seed=1), ds, [0, 1, 2]))
    a, b = runs
    for epoch_a, epoch_b in zip(a, b):
        assert len(epoch_a) == len(epoch_b) == 3
        for x, y in zip(epoch_a, epoch_b):
            assert torch.equal(x["img"], y["img"]) and torch.equal(x["targets"], y["targets"])
            assert x["im_ids"] == y["im_ids"]
    assert not torch.equal(a[0][0]["img"], a[1][0]["img"])
    # Loading touched none of the global RNGs the trainer's own state depends on.
    assert random.getstate() == rng_states[0]
    assert np.array_equal(np.random.get_state()[1], rng_states[1])
    assert torch.equal(torch.get_rng_state(), rng_states[2])


def test_batch_format(root):
    ds = YoloDataset(root / "images" / "val", NAMES, imgsz=64)
    batch = next(iter(build_dataloader(ds, batch=3)))
    assert batch["img"].shape == (3, 3, 64, 64) and batch["img"].dtype == torch.uint8
    t = batch["targets"]
    assert t.dtype == torch.float32 and t.shape[1] == 6
    assert set(t[:, 0].tolist()) <= {0.0, 1.0, 2.0}
    assert batch["im_ids"] == ["val0", "val1", "val2"]
    assert batch["paths"][0].endswith("val0.png")
    assert batch["ori_shapes"][0] == (60, 80)
    gain, pad = batch["ratio_pad"][0]
    assert gain == pytest.approx(0.8) and pad == (0.0, 8.0)
    expected = sum(len(ds.labels[i]) for i in range(3))
    assert len(t) == expected


def test_style_knobs_draw_only_when_on_and_change_only_the_pixels(root):
    """contrast and blur (style robustness) draw from the sample's RNG only when on: with both
    at 0 a sample is the one the recipe made before they existed (the colour jitter alone, whose
    draws come first). On, they move pixels, never boxes, deterministically."""
    base = AugmentConfig(mosaic=0, fliplr=0, contrast=0, blur=0)
    plain = YoloDataset(root / "images" / "train", NAMES, imgsz=64, augment=True, hyp=base)
    colour_only = YoloDataset(
        root / "images" / "train", NAMES, imgsz=64, augment=True, hyp=base.model_copy(update={"blur": 1.0})
    )
    styled = YoloDataset(
        root / "images" / "train",
        NAMES,
        imgsz=64,
        augment=True,
        hyp=base.model_copy(update={"contrast": 0.9, "blur": 1.0}),
    )
    from artifactkit.detector.augment import colour_matrix, recolour

    for i in range(4):
        a, b, c = plain[i], colour_only[i], styled[i]
        rng = np.random.default_rng([0, 0, i, 1])  # the sample stream: (seed, epoch, index, 1)
        before, _ = plain._warped(i, rng, False)
        before = recolour(before, colour_matrix(rng, (base.hsv_h, base.hsv_s, base.hsv_v)))
        assert torch.equal(a["img"], torch.from_numpy(before))  # the pre-knob pipeline, draw for draw
        assert not torch.equal(a["img"], b["img"]) and torch.equal(a["bboxes"], b["bboxes"])
        assert not torch.equal(a["img"], c["img"]) and torch.equal(c["img"], styled[i]["img"])
    geometry = AugmentConfig(mosaic=0, fliplr=0, hsv_h=0, hsv_s=0, hsv_v=0, contrast=0, blur=0)
    for knob in ({"contrast": 0.9}, {"blur": 1.0}, {"erase": 1.0}):
        on = YoloDataset(root / "images" / "train", NAMES, imgsz=64, augment=True, hyp=geometry.model_copy(update=knob))
        off = YoloDataset(root / "images" / "train", NAMES, imgsz=64, augment=True, hyp=geometry)
        for i in range(4):
            assert torch.equal(on[i]["bboxes"], off[i]["bboxes"]) and torch.equal(on[i]["cls"], off[i]["cls"])


def test_hide_parts_covers_at_most_a_quarter_of_each_object_and_nothing_outside():
    from artifactkit.detector.augment import hide_parts

    img = np.full((3, 96, 96), 7, np.uint8)
    boxes = np.array(
        [[0, 4, 4, 40, 44], [1, 50, 10, 90, 30], [2, 60, 60, 200, 200]], np.float32
    )  # the last crosses the edge
    inside = np.zeros((96, 96), bool)
    for _, x0, y0, x1, y1 in boxes.astype(int):
        inside[y0:y1, x0:x1] = True
    hidden_any = 0
    for seed in range(30):
        out = hide_parts(img, boxes, np.random.default_rng(seed))
        changed = (out != 7).any(0)
        assert not (changed & ~inside).any() and (img == 7).all()  # input untouched
        for _, x0, y0, x1, y1 in boxes.astype(int):
            assert changed[y0:y1, x0:x1].sum() <= 0.25 * (x1 - x0) * (y1 - y0) + (x1 - x0) + (y1 - y0)
        hidden_any += changed.any()
        assert np.array_equal(out, hide_parts(img, boxes, np.random.default_rng(seed)))
    assert hidden_any > 20


def test_contrast_keeps_which_side_is_lighter():
    from artifactkit.detector.augment import recolour, with_contrast

    img = np.zeros((3, 2, 2), np.uint8)
    img[:, 0] = 250  # a white piece's pixels above a black piece's
    for seed in range(50):
        matrix, offset = with_contrast(np.eye(3, dtype=np.float32), np.random.default_rng(seed), 0.9)
        out = recolour(img, matrix, offset)
        assert (out[:, 0].astype(int) > out[:, 1].astype(int)).all()


def test_augmentation_is_declared_once_in_train_config():
    """AugmentConfig is TrainConfig's augmentation fields, not a second declaration that can drift:
    same keys, defaults and bounds, and every key reaches the dataset from a run's config."""
    from artifactkit.detector.config import AUGMENT_KEYS, TrainConfig, augment_config

    assert set(AugmentConfig.model_fields) == set(AUGMENT_KEYS) <= set(TrainConfig.model_fields)
    for key in AUGMENT_KEYS:
        ours, theirs = AugmentConfig.model_fields[key], TrainConfig.model_fields[key]
        assert (ours.default, ours.metadata) == (theirs.default, theirs.metadata), key
    changed = {key: 0.25 for key in AUGMENT_KEYS}
    assert augment_config(TrainConfig(data="d", **changed)).model_dump() == changed
