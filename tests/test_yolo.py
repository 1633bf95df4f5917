"""The one YOLO-format reader (artifactkit/yolo.py), on real files: every data.yaml form
Ultralytics users have, the label policy, the label counts, the self-contained layout, and every
consumer (trainer, scoring, viewer, W&B tables) reading the same boxes and the same errors."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import pytest
from PIL import Image

from artifactkit.errors import InvalidInput
from artifactkit.yolo import (
    check_split_labels,
    label_path,
    load_data_config,
    parse_labels,
    read_labels,
    version_layout,
)

NAMES = ["a", "b", "c"]
POLYGON = "1 0.1 0.2 0.5 0.2 0.3 0.6"  # a triangle: its box is cx 0.3, cy 0.4, w 0.4, h 0.4


def image(path: Path, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (16, 12), (seed * 40 % 256, 100, 200)).save(path)
    return path


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def standard(root: Path) -> Path:
    """images/{train,val} + labels/{train,val}; train/b.png is a background image."""
    image(root / "images/train/a.png", 1)
    image(root / "images/train/b.png", 2)
    image(root / "images/val/c.png", 3)
    write(root / "labels/train/a.txt", f"0 0.5 0.5 0.2 0.4\n{POLYGON}\n")
    write(root / "labels/val/c.txt", "2 0.25 0.75 0.5 0.5\n")
    return write(root / "data.yaml", "train: images/train\nval: images/val\nnames: [a, b, c]\n")


def stems(split) -> list[str]:
    return [p.stem for p in split.images]


# -- data.yaml forms ------------------------------------------------------------------------------
def test_standard_layout_and_files(tmp_path):
    spec = load_data_config(standard(tmp_path / "ds"))
    root = (tmp_path / "ds").resolve()
    assert spec.root == root and spec.names == NAMES and spec.nc == 3
    assert stems(spec.splits["train"]) == ["a", "b"] and stems(spec.splits["val"]) == ["c"]
    assert spec.splits["train"].labels[1] == root / "labels/train/b.txt"  # looked for, absent: background
    assert sorted(p.relative_to(root).as_posix() for p in spec.files()) == [
        "data.yaml",
        "images/train/a.png",
        "images/train/b.png",
        "images/val/c.png",
        "labels/train/a.txt",
        "labels/val/c.txt",
    ]


def test_yaml_outside_the_dataset_with_absolute_and_relative_path(tmp_path):
    standard(tmp_path / "ds")
    absolute = write(
        tmp_path / "cfg/abs.yaml",
        f"path: {tmp_path / 'ds'}\ntrain: images/train\nval: images/val\nnames: {{0: a, 1: b, 2: c}}\n",
    )
    relative = write(
        tmp_path / "cfg/rel.yaml", "path: ../ds\ntrain: images/train\nval: images/val\nnc: 3\nnames: [a, b, c]\n"
    )
    for yaml in (absolute, relative):
        spec = load_data_config(yaml)
        assert spec.root == (tmp_path / "ds").resolve() and spec.names == NAMES
        assert stems(spec.splits["train"]) == ["a", "b"]
        assert (tmp_path / "ds/images/train/a.png").resolve() in spec.files()


def test_relative_path_falls_back_to_cwd_then_ultralytics_datasets_dir(tmp_path, monkeypatch):
    standard(tmp_path / "work/ds")
    standard(tmp_path / "datasets/coco8")
    yaml = write(tmp_path / "cfg/d.yaml", "path: ds\ntrain: images/train\nval: images/val\nnames: [a, b, c]\n")
    monkeypatch.chdir(tmp_path / "work")  # Ultralytics' own base for a relative path
    assert load_data_config(yaml).root == (tmp_path / "work/ds").resolve()

    settings = tmp_path / "ultralytics-config"
    write(settings / "settings.json", json.dumps({"datasets_dir": str(tmp_path / "datasets")}))
    monkeypatch.setenv("YOLO_CONFIG_DIR", str(settings))
    yaml.write_text("path: coco8\ntrain: images/train\nval: images/val\nnames: [a, b, c]\n")
    assert load_data_config(yaml).root == (tmp_path / "datasets/coco8").resolve()

    yaml.write_text("path: nowhere\ntrain: images/train\nval: images/val\nnames: [a, b, c]\n")
    with pytest.raises(InvalidInput, match=f"{re.escape(str(yaml))}: key 'path': dataset folder nowhere not found"):
        load_data_config(yaml)


def test_list_of_folders_recursive_and_hidden_files_skipped(tmp_path):
    root = tmp_path / "ds"
    standard(root)
    image(root / "images/extra/deep/d.png")
    image(root / "images/extra/._d.png")  # macOS metadata, no image
    image(root / "images/extra/.cache/e.png")
    write(root / "labels/extra/deep/d.txt", "0 0.5 0.5 0.5 0.5\n")
    yaml = write(root / "data.yaml", "train: [images/train, images/extra]\nval: images/val\nnames: [a, b, c]\n")
    train = load_data_config(yaml).splits["train"]
    assert [p.relative_to(root.resolve()).as_posix() for p in train.images] == [
        "images/train/a.png",
        "images/train/b.png",
        "images/extra/deep/d.png",
    ]
    assert read_labels(train.labels[2], 3) == [(0, 0.5, 0.5, 0.5, 0.5)]


def test_txt_lists_of_images(tmp_path):
    root = tmp_path / "ds"
    standard(root)
    write(
        root / "lists/train.txt",
        f"./../images/train/a.png\nimages/train/b.png\n\n{root / 'images/val/c.png'}\nnotes.md\n",
    )
    yaml = write(root / "data.yaml", "train: lists/train.txt\nval: images/val\nnames: [a, b, c]\n")
    train = load_data_config(yaml).splits["train"]
    assert stems(train) == ["a", "b", "c"] and train.sources == ((root / "lists/train.txt").resolve(),)
    assert (root / "lists/train.txt").resolve() in load_data_config(yaml).files()

    write(root / "lists/train.txt", "images/train/a.png\nimages/train/zz.png\n")
    with pytest.raises(InvalidInput, match=re.escape(f"{(root / 'lists/train.txt').resolve()}:2: image ")):
        load_data_config(yaml)


def roboflow(root: Path) -> Path:
    """Roboflow's YOLOv8 export: data.yaml beside train/ valid/ test/, each images/ + labels/."""
    for split, seed in (("train", 1), ("valid", 2), ("test", 3)):
        image(root / split / "images" / f"{split}-x.jpg", seed)
        write(root / split / "labels" / f"{split}-x.txt", "0 0.5 0.5 0.2 0.2\n")
    return write(
        root / "data.yaml",
        "train: ../train/images\nval: ../valid/images\ntest: ../test/images\n\n"
        "nc: 3\nnames: ['a', 'b', 'c']\n\nroboflow:\n  workspace: me\n  project: p\n"
        "  version: 1\n  license: CC BY 4.0\n  url: https://universe.roboflow.com/x\n",
    )


def test_roboflow_export(tmp_path):
    spec = load_data_config(roboflow(tmp_path / "rf"))
    assert set(spec.splits) == {"train", "val", "test"}
    val = spec.splits["val"]
    assert stems(val) == ["valid-x"] and val.labels[0] == (tmp_path / "rf/valid/labels/valid-x.txt").resolve()
    assert read_labels(val.labels[0], spec.nc) == [(0, 0.5, 0.5, 0.2, 0.2)]


@pytest.mark.parametrize(
    "body, names",
    [
        ("nc: 2\n", ["class_0", "class_1"]),
        ("names: {1: b, 0: a}\n", ["a", "b"]),
        ("names: ['0', 1]\n", ["0", "1"]),
    ],
)
def test_names_forms(tmp_path, body, names):
    standard(tmp_path / "ds")
    yaml = write(tmp_path / "ds/d.yaml", "path: .\ntrain: images/train\nvalidation: images/val\n" + body)
    spec = load_data_config(yaml)
    assert spec.names == names and stems(spec.splits["val"]) == ["c"]  # `validation` is read as `val`


@pytest.mark.parametrize(
    "body, needle",
    [
        ("nc: 2\nnames: [a, b, c]\n", "'nc' is 2 but 'names' lists 3"),
        ("nc: two\n", "'nc' must be a positive integer"),
        ("names: {0: a, 2: c}\n", "ids 0..1"),
        ("", "'names' missing"),
    ],
)
def test_bad_names_name_the_key(tmp_path, body, needle):
    standard(tmp_path / "ds")
    yaml = write(tmp_path / "ds/d.yaml", "train: images/train\nval: images/val\n" + body)
    with pytest.raises(InvalidInput, match=re.escape(str(yaml))) as err:
        load_data_config(yaml)
    assert needle in str(err.value)


# -- labels ---------------------------------------------------------------------------------------
def test_label_path_keeps_its_type_and_replaces_the_last_images():
    assert label_path("images/val/a.b.jpg") == "labels/val/a.b.txt"
    assert label_path("train/images/x.jpg") == "train/labels/x.txt"
    assert label_path(Path("/d/images/x/images/t/a.png")) == Path("/d/images/x/labels/t/a.txt")
    assert label_path("flat/x.jpg") == "flat/x.txt"


def test_polygons_are_their_bounding_box_and_bom_blank_lines_are_fine():
    boxes = parse_labels(f"\ufeff0 0.5 0.5 0.2 0.4\n\n{POLYGON}\n".encode(), "l.txt", nc=3)
    assert [b[0] for b in boxes] == [0, 1]
    assert [round(v, 6) for v in boxes[1][1:]] == [0.3, 0.4, 0.4, 0.4]


@pytest.mark.parametrize(
    "bad, needle",
    [
        ("0 0.5 0.5 0.1 0.1 0.3", "expected 5 columns"),
        ("0 0.1 0.1 0.2 0.2", None),  # a good row passes
        ("1 0.1 0.2 0.5 0.2 0.3", "expected 5 columns"),  # two points are no polygon
        ("1 0.1 0.2 0.5 0.2 0.3 1.6", "[0, 1]"),
        ("1 0.1 0.2 0.5 0.2 0.3 0.2", "> 0"),  # a flat polygon has no box
        ("3 0.5 0.5 0.1 0.1", "class id 3 not in 0..2"),
        ("0 0.5 0.5 0.1 x", "non-numeric"),
    ],
)
def test_bad_rows_are_file_and_line(bad, needle):
    text = f"0 0.5 0.5 0.2 0.2\n{bad}\n"
    if needle is None:
        assert len(parse_labels(text, "labels/t/x.txt", nc=3)) == 2
        return
    with pytest.raises(InvalidInput, match=re.escape("labels/t/x.txt:2: ")) as err:
        parse_labels(text, "labels/t/x.txt", nc=3)
    assert needle in str(err.value)


def test_without_nc_class_ids_are_only_checked_to_be_ids():
    assert parse_labels("7 0.5 0.5 0.2 0.2\n", "x.txt")[0][0] == 7
    with pytest.raises(InvalidInput, match="x.txt:1: class id -1"):
        parse_labels("-1 0.5 0.5 0.2 0.2\n", "x.txt")


# -- images without labels --------------------------------------------------------------------------
def test_counts_warn_and_a_split_without_any_label_is_refused(tmp_path):
    spec = load_data_config(standard(tmp_path / "ds"))
    assert check_split_labels(spec.splits["train"], 3) == "1 of 2 train images have no labels"
    assert check_split_labels(spec.splits["val"], 3) is None
    (tmp_path / "ds/labels/val/c.txt").rename(tmp_path / "ds/c.txt")  # labels not where YOLO looks
    with pytest.raises(InvalidInput) as err:
        check_split_labels(spec.splits["val"], 3)
    searched = (tmp_path / "ds/labels/val").resolve()
    assert str(err.value) == f"split 'val': none of its 1 images has a label (searched {searched} for <image name>.txt)"


def test_the_trainers_loading_warns_and_refuses(tmp_path, caplog):
    from artifactkit.detector.data import load_split

    spec = load_data_config(standard(tmp_path / "ds"))
    with caplog.at_level(logging.WARNING, logger="artifactkit.detector.data"):
        train = load_split(spec, "train", imgsz=32)
    assert "1 of 2 train images have no labels" in caplog.text and len(train) == 2
    (tmp_path / "ds/labels/val/c.txt").unlink()
    with pytest.raises(InvalidInput, match="split 'val': none of its 1 images has a label"):
        load_split(spec, "val", imgsz=32)
    with pytest.raises(InvalidInput, match="split 'test' is not in"):
        load_split(spec, "test", imgsz=32)


# -- a self-contained copy ----------------------------------------------------------------------------
def copy_of(spec) -> tuple[dict[str, bytes], str]:
    files, yaml_text = version_layout(spec)
    return {rel: path.read_bytes() for rel, path in files.items()}, yaml_text


def test_two_spellings_of_one_dataset_give_one_layout(tmp_path):
    root = tmp_path / "ds"
    inside = load_data_config(standard(root))
    write(root / "train.txt", "./images/train/a.png\n./images/train/b.png\n")
    outside = load_data_config(
        write(
            tmp_path / "cfg/x.yaml", f"path: {root}\ntrain: train.txt\nval: [images/val]\nnames: {{0: a, 1: b, 2: c}}\n"
        )
    )
    files, yaml_text = copy_of(inside)
    assert (files, yaml_text) == copy_of(outside)
    assert sorted(files) == [
        "images/train/a.png",
        "images/train/b.png",
        "images/val/c.png",
        "labels/train/a.txt",
        "labels/val/c.txt",
    ]
    assert "path:" not in yaml_text  # Ultralytics would read `path: .` as the working directory

    copy = tmp_path / "copy"  # the copy reads back as the same dataset
    for rel, data in {**files, "data.yaml": yaml_text.encode()}.items():
        write(copy / rel, "").write_bytes(data)
    again = load_data_config(copy)
    assert again.names == NAMES and stems(again.splits["train"]) == ["a", "b"]
    assert read_labels(again.splits["train"].labels[0], 3) == read_labels(inside.splits["train"].labels[0], 3)


def test_roboflow_export_copies_into_the_canonical_layout(tmp_path):
    files, yaml_text = version_layout(load_data_config(roboflow(tmp_path / "rf")))
    assert sorted(files) == [
        "images/test/test-x.jpg",
        "images/train/train-x.jpg",
        "images/val/valid-x.jpg",
        "labels/test/test-x.txt",
        "labels/train/train-x.txt",
        "labels/val/valid-x.txt",
    ]
    assert yaml_text.startswith("train: images/train\nval: images/val\ntest: images/test\nnc: 3\n")


# -- every consumer reads the same boxes and the same errors -------------------------------------------
def trainer_boxes(spec) -> dict[str, list]:
    from artifactkit.detector.data import load_split

    dataset = load_split(spec, "train", imgsz=32)
    return {
        f.name: [[int(r[0]), *(round(float(v), 4) for v in r[1:])] for r in labels]
        for f, labels in zip(dataset.files, dataset.labels)
    }


def viewer_boxes(store, ref: str) -> dict[str, list]:
    from artifactkit.viewer.dataset import load_dataset
    from artifactkit.viewer.images import ImageBank

    items = load_dataset(store, ref, ImageBank())["items"]
    return {Path(it["path"]).name: it["boxes"] for it in items if it["split"] == "train"}


def wandb_boxes(root: Path, digests: dict[str, str]) -> dict[str, list]:
    """The train table as W&B serialises it into an artifact (wandb's own JSON, read back)."""
    import wandb

    from artifactkit.wandb import media

    table = media.dataset_tables(wandb, root, "data.yaml", digests)["train"]
    artifact = wandb.Artifact("check", "dataset")
    artifact.add(table, "train")
    doc = json.loads(Path(artifact.manifest.entries["train.table.json"].local_path).read_text())
    column = doc["columns"].index("image")

    def row_boxes(row) -> list:
        boxes = row[column]["boxes"]["ground_truth"]
        return [
            [
                b["class_id"],
                *(round(v, 4) for v in (*b["position"]["middle"], b["position"]["width"], b["position"]["height"])),
            ]
            for b in boxes
        ]

    return {Path(row[doc["columns"].index("path")]).name: row_boxes(row) for row in doc["data"]}


@pytest.fixture
def wandb_offline(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    for var in ("WANDB_DIR", "WANDB_DATA_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_ARTIFACT_DIR"):
        (tmp_path / var).mkdir()
        monkeypatch.setenv(var, str(tmp_path / var))
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)


def test_trainer_scoring_viewer_and_wandb_read_the_same_boxes_and_errors(tmp_path, wandb_offline):
    from artifactkit.statcache import NullStatCache
    from artifactkit.store import open_store
    from artifactkit.val import ground_truth

    root = tmp_path / "ds"
    yaml = standard(root)
    store = open_store(str(tmp_path / "store"), stat_cache=NullStatCache())
    store.log_folder(root, name="ds")
    digests = {e.path: e.digest for e in store.manifest(store.resolve("ds:v0")).entries}
    spec = load_data_config(yaml)
    expected = {"a.png": [[0, 0.5, 0.5, 0.2, 0.4], [1, 0.3, 0.4, 0.4, 0.4]], "b.png": []}  # the polygon's box
    assert trainer_boxes(spec) == viewer_boxes(store, "ds:v0") == expected
    assert wandb_boxes(root, digests) == expected  # (W&B's table drops nothing: b.png has a row)
    gt_cls, gt_boxes = ground_truth(str(yaml), "train")[0]["a"]
    assert gt_cls.tolist() == [0, 1] and [round(v, 3) for v in gt_boxes[1].tolist()] == [1.6, 2.4, 8.0, 7.2]

    write(root / "labels/train/a.txt", "0 0.5 0.5 0.2 0.4\n3 0.5 0.5 0.2 0.2\n")  # class 3 of 3 classes
    store.log_folder(root, name="ds")
    digests = {e.path: e.digest for e in store.manifest(store.resolve("ds:v1")).entries}
    errors = []
    for read in (
        lambda: trainer_boxes(spec),
        lambda: ground_truth(str(yaml), "train"),
        lambda: viewer_boxes(store, "ds:v1"),
        lambda: wandb_boxes(root, digests),
    ):
        with pytest.raises(InvalidInput) as err:
            read()
        errors.append(str(err.value))
    on_disk = f"{(root / 'labels/train/a.txt').resolve()}:2: class id 3 not in 0..2"
    assert errors == [on_disk, on_disk, f"{store.uri}: ds:v1/labels/train/a.txt:2: class id 3 not in 0..2", on_disk]
