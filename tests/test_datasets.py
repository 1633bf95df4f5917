"""Datasets in the forms Ultralytics users have, on real files: a yaml outside its dataset (trained,
then the dataset moved away and the run resumed from the store), a Roboflow export, a .txt list, a
COCO folder (converted; boxes checked against pycocotools), a folder without labels (refused,
nothing created), two spellings of one dataset (one manifest), and `val --data NAME:vN`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from clirunner import run_cli
from PIL import Image
from tiny_run import TINY

import artifactkit
from artifactkit import datasets
from artifactkit.errors import ArtifactkitError, InvalidInput
from artifactkit.hashing import hash_file
from artifactkit.yolo import load_data_config, read_labels


def image(path: Path, size=(40, 30), seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (seed * 40 % 256, 90, 160)).save(path)
    return path


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def last_json(proc) -> dict:
    return json.loads(proc.stdout.strip().splitlines()[-1])


def version_files(store, ref: str) -> dict[str, str]:
    return {e.path: e.digest for e in store.manifest(store.resolve(ref)).entries}


def nothing_new(store, before: dict[str, list[int]]) -> None:
    """No run and no new version since `before` (name -> version numbers)."""
    assert store.runs.run_ids() == []
    assert {n: store.version_numbers(n) for n in store.artifact_names()} == before


@pytest.fixture(scope="module")
def chess(tmp_path_factory) -> Path:
    from artifactkit.detector.chess import generate

    return generate(tmp_path_factory.mktemp("data") / "chess", n_train=8, n_val=4, n_heldout=2, imgsz=64).parent


def roboflow(root: Path) -> Path:
    """Roboflow's YOLOv8 export: data.yaml beside train/ valid/ test/, each images/ + labels/."""
    for split, seed in (("train", 1), ("valid", 2), ("test", 3)):
        image(root / split / "images" / f"{split}-x.jpg", seed=seed)
        write(root / split / "labels" / f"{split}-x.txt", f"{seed % 2} 0.5 0.5 0.2 0.2\n")
    return write(
        root / "data.yaml",
        "train: ../train/images\nval: ../valid/images\ntest: ../test/images\n\n"
        "nc: 2\nnames: ['a', 'b']\n\nroboflow:\n  workspace: me\n  version: 1\n",
    )


# -- a yaml outside its dataset -----------------------------------------------------------------------
def test_yaml_outside_its_dataset_trains_then_resumes_after_the_data_moved(tmp_path, chess, monkeypatch):
    data = tmp_path / "mine" / "chess"
    shutil.copytree(chess, data)
    cfg = write(
        tmp_path / "cfg" / "ext.yaml",
        "path: ../mine/chess\ntrain: images/train\nval: images/val\n"
        "names: {0: K, 1: Q, 2: R, 3: B, 4: N, 5: P, 6: k, 7: q, 8: r, "
        "9: b, 10: n, 11: p}\n",
    )
    store_dir = tmp_path / "store"
    run = artifactkit.train(str(store_dir), data=str(cfg), run_id="ext", **TINY)
    assert run.dataset == "ext:v0" and run.data_yaml == "data.yaml"
    store = artifactkit.open_store(str(store_dir))
    files = version_files(store, "ext:v0")
    spec = load_data_config(cfg)
    wanted = {f"images/{s}/{p.name}" for s in ("train", "val") for p in spec.splits[s].images}
    assert set(files) == wanted | {f"labels/{p[7:-4]}.txt" for p in wanted} | {"data.yaml"}
    assert b"path:" not in store.read_blob(files["data.yaml"])  # the version is its own dataset folder
    first = spec.splits["train"].images[0]
    assert files[f"images/train/{first.name}"] == hash_file(first)[0]  # streamed from where it lies

    shutil.rmtree(tmp_path / "mine")  # the dataset is gone from this machine, and so is the cache
    monkeypatch.setenv("ARTIFACTKIT_CACHE_DIR", str(tmp_path / "fresh-cache"))
    resumed = artifactkit.resume(f"{store_dir}/runs/ext", epochs=2, workers=0)
    assert (resumed.status, resumed.epochs_completed, resumed.dataset) == ("finished", 2, "ext:v0")

    # val --data NAME:vN (and NAME:ALIAS) materialises the stored dataset as train does
    from artifactkit.val import evaluate_weights

    by_version = evaluate_weights(f"{store_dir}/runs/ext", "ext:v0", imgsz=64, batch=4)
    store.set_alias("ext", "golden", 0)
    proc = run_cli(
        "val",
        "--weights",
        "ext-model:latest",
        "--data",
        "ext:golden",
        "--store",
        str(store_dir),
        "--imgsz",
        "64",
        "--batch",
        "4",
        "--json",
    )
    assert last_json(proc)["metrics"] == by_version["metrics"] and by_version["images"] == 4


def test_a_folder_that_is_its_own_dataset_logs_as_before(tmp_path, chess):
    """The chess folder (data.yaml with `path: .`, images/ + labels/ inside) is logged as the folder
    it is, so stores written before dedup against it; it trains in place."""
    store = artifactkit.open_store(str(tmp_path / "store"))
    before = store.log_folder(chess)
    source = datasets.read_local(chess)
    assert source.files is None and source.data_yaml == "data.yaml"
    again = source.log(store)
    assert (again.created, again.record.label) == (False, before.record.label)
    prepared = datasets.prepare(store, str(chess / "data.yaml"))
    local = prepared.commit(store)
    assert local.in_place and local.root == chess.absolute() and local.ref == "chess:v0"


def test_a_file_linked_from_outside_makes_the_folder_not_its_own_dataset(tmp_path):
    """Only a link out of the folder is resolved: such a folder is stored in the layout instead."""
    root, outside = tmp_path / "ds", tmp_path / "elsewhere"
    write(root / "data.yaml", "path: .\ntrain: images/train\nval: images/train\nnames: [a]\n")
    image(root / "images/train/x.jpg")
    write(root / "labels/train/x.txt", "0 0.5 0.5 0.2 0.2\n")
    assert datasets.read_local(root).files is None
    image(outside / "y.jpg", seed=1)
    (root / "images/train/y.jpg").symlink_to(outside / "y.jpg")
    source = datasets.read_local(root)
    assert (
        source.files is not None
        and (source.files["images/train/y.jpg"]).read_bytes() == (outside / "y.jpg").read_bytes()
    )


# -- Roboflow, .txt lists, two spellings ---------------------------------------------------------------
def test_roboflow_export_is_stored_in_the_canonical_layout(tmp_path):
    rf = tmp_path / "rf-export"
    roboflow(rf)
    store_dir = tmp_path / "store"
    done = last_json(run_cli("log-dataset", str(rf), "--store", str(store_dir), "--json"))
    assert (done["name"], done["version"], done["files"]) == ("rf-export", "v0", 7)
    store = artifactkit.open_store(str(store_dir))
    assert sorted(version_files(store, "rf-export:v0")) == [
        "data.yaml",
        "images/test/test-x.jpg",
        "images/train/train-x.jpg",
        "images/val/valid-x.jpg",
        "labels/test/test-x.txt",
        "labels/train/train-x.txt",
        "labels/val/valid-x.txt",
    ]
    copy = tmp_path / "copy"
    artifactkit.pull(store, "rf-export:v0", copy)
    spec = load_data_config(copy)  # the copy reads back alone, whatever lies beside it
    assert spec.names == ["a", "b"] and read_labels(spec.splits["val"].labels[0], 2) == [(0, 0.5, 0.5, 0.2, 0.2)]


def test_txt_list_and_two_spellings_give_one_manifest(tmp_path):
    ds = tmp_path / "ds"
    for split, n in (("train", 3), ("val", 2)):
        for i in range(n):
            image(ds / "images" / split / f"{split}{i}.png", seed=i)
            write(ds / "labels" / split / f"{split}{i}.txt", f"{i % 2} 0.5 0.5 0.3 0.4\n")
    write(ds / "lists" / "train.txt", "".join(f"./../images/train/train{i}.png\n" for i in range(3)))
    listed = write(ds / "data.yaml", "train: lists/train.txt\nval: images/val\nnames: [a, b]\n")
    absolute = write(
        tmp_path / "cfg1" / "data.yaml",
        f"path: {ds}\ntrain: images/train\nval: [images/val]\nnc: 2\nnames: {{0: a, 1: b}}\n",
    )
    relative = write(
        tmp_path / "cfg2" / "data.yaml", "path: ../ds\ntrain: lists/train.txt\nval: images/val\nnames: [a, b]\n"
    )
    store = artifactkit.open_store(str(tmp_path / "store"))
    first = datasets.read_local(listed)
    assert first.files is not None  # a .txt list may name images anywhere: stored in the layout
    results = [first.log(store)] + [datasets.read_local(p).log(store) for p in (absolute, relative)]
    assert {r.record.manifest for r in results} == {results[0].record.manifest}
    assert [(r.record.label, r.created, r.record.files) for r in results] == [
        ("v0", True, 11),
        ("v0", False, 11),
        ("v0", False, 11),
    ]
    assert [r.uploaded_files for r in results[1:]] == [0, 0]
    assert "lists/train.txt" not in version_files(store, "ds:v0")
    by_cli = last_json(run_cli("log-dataset", str(relative), "--store", str(tmp_path / "store"), "--json"))
    assert (by_cli["name"], by_cli["version"], by_cli["created"]) == ("ds", "v0", False)  # a yaml path, too


# -- COCO ----------------------------------------------------------------------------------------------
def coco_folder(root: Path, roboflow_style: bool = False) -> dict[str, Path]:
    """COCO 2017's layout (annotations/instances_<split>2017.json, images in <split>2017/), or
    Roboflow's COCO export (<split>/_annotations.coco.json beside the images). Categories have
    gaps and come out of order; one crowd box; one image without annotations."""
    cats = [{"id": 7, "name": "queen"}, {"id": 1, "name": "king"}, {"id": 3, "name": "rook"}]
    out = {}
    for split, n in (("train", 3), ("val", 2)):
        folder = root / split if roboflow_style else root / f"{split}2017"
        images, anns = [], []
        for i in range(n):
            w, h = 64 + 16 * i, 48
            image(folder / f"{split}{i}.jpg", size=(w, h), seed=i)
            images.append({"id": 100 + i, "file_name": f"{split}{i}.jpg", "width": w, "height": h})
            if i == n - 1:
                continue  # a background image
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": 100 + i,
                    "category_id": [7, 1, 3][i % 3],
                    "bbox": [4.0 + i, 6.5, 20.25, 10.0],
                    "area": 202.5,
                    "iscrowd": 0,
                }
            )
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": 100 + i,
                    "category_id": 3,
                    "bbox": [30, 20, 12, 18],
                    "area": 216,
                    "iscrowd": 0,
                }
            )
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": 100 + i,
                    "category_id": 1,
                    "bbox": [0, 0, 10, 10],
                    "area": 100,
                    "iscrowd": 1,
                }
            )
        doc = {"info": {}, "images": images, "annotations": anns, "categories": cats}
        path = (
            folder / "_annotations.coco.json"
            if roboflow_style
            else root / "annotations" / f"instances_{split}2017.json"
        )
        out[split] = write(path, json.dumps(doc))
    return out


@pytest.mark.parametrize("roboflow_style", [False, True], ids=["coco", "roboflow-coco"])
def test_coco_folder_is_converted_with_the_boxes_pycocotools_reads(tmp_path, roboflow_style):
    from pycocotools.coco import COCO

    root = tmp_path / "pieces"
    jsons = coco_folder(root, roboflow_style)
    store_dir = tmp_path / "store"
    proc = run_cli("log-dataset", str(root), "--store", str(store_dir), check=False)
    err = proc.stderr.strip().splitlines()
    assert proc.returncode != 0 and len(err) == 1 and f"log-dataset --format coco {root}" in err[0], proc.stderr
    assert not store_dir.exists()  # refused before anything was written

    done = last_json(run_cli("log-dataset", "--format", "coco", str(root), "--store", str(store_dir), "--json"))
    store = artifactkit.open_store(str(store_dir))
    copy = tmp_path / "copy"
    artifactkit.pull(store, f"pieces:{done['version']}", copy)
    spec = load_data_config(copy)
    assert spec.names == ["king", "rook", "queen"]  # category id order: 1, 3, 7
    for split, path in jsons.items():
        kept = f"annotations/{split}/_annotations.coco.json" if roboflow_style else f"annotations/{path.name}"
        assert (copy / kept).read_bytes() == path.read_bytes()  # the original annotations are kept
        coco = COCO(str(path))
        index = {cid: i for i, cid in enumerate(sorted(coco.getCatIds()))}
        for info in coco.loadImgs(coco.getImgIds()):
            anns = coco.loadAnns(coco.getAnnIds(imgIds=info["id"], iscrowd=False))
            w, h = info["width"], info["height"]
            expected = [
                (
                    index[a["category_id"]],
                    (a["bbox"][0] + a["bbox"][2] / 2) / w,
                    (a["bbox"][1] + a["bbox"][3] / 2) / h,
                    a["bbox"][2] / w,
                    a["bbox"][3] / h,
                )
                for a in anns
            ]
            label = copy / "labels" / split / (Path(info["file_name"]).stem + ".txt")
            got = read_labels(label, spec.nc)
            assert (copy / "images" / split / info["file_name"]).is_file()
            assert [b[0] for b in got] == [e[0] for e in expected]
            assert all(abs(g - e) < 1e-5 for b, x in zip(got, expected) for g, e in zip(b[1:], x[1:]))
            assert label.exists() == bool(anns)  # an image without annotations is a background image
    assert datasets.check_trainable(spec, ("val",)) is None


def test_bad_coco_records_are_one_line_naming_the_file(tmp_path):
    root = tmp_path / "bad"
    jsons = coco_folder(root)
    doc = json.loads(jsons["val"].read_text())
    doc["annotations"][0]["bbox"] = [1, 2, "x", 4]
    jsons["val"].write_text(json.dumps(doc))
    with pytest.raises(InvalidInput, match=r"instances_val2017.json: annotations\[0\]: 'bbox' must be"):
        datasets.read_local(root, "coco")
    doc["images"][0]["file_name"] = "../../etc/passwd.jpg"
    jsons["val"].write_text(json.dumps(doc))
    with pytest.raises(InvalidInput, match=r"images\[0\]: 'file_name' '../../etc/passwd.jpg' is not a relative"):
        datasets.read_local(root, "coco")
    jsons["val"].unlink()
    with pytest.raises(InvalidInput, match="no val annotations"):
        datasets.read_local(root, "coco")


# -- honest inputs: refused before any run or version ----------------------------------------------------
def test_failing_inputs_leave_no_run_and_no_version(tmp_path, chess):
    store_dir = tmp_path / "store"
    store = artifactkit.open_store(str(store_dir))
    store.log_folder(chess)
    before = {"chess": [0]}

    unlabelled = tmp_path / "unlabelled"
    shutil.copytree(chess, unlabelled)
    shutil.rmtree(unlabelled / "labels" / "val")
    with pytest.raises(InvalidInput) as err:
        artifactkit.train(str(store_dir), data=str(unlabelled), **TINY)
    searched = (unlabelled / "labels" / "val").resolve()
    assert str(err.value) == f"split 'val': none of its 4 images has a label (searched {searched} for <image name>.txt)"
    nothing_new(store, before)

    proc = run_cli("train", "--data", str(unlabelled), "--store", str(store_dir), "--epochs", "1", check=False)
    assert proc.returncode != 0 and proc.stderr.strip().splitlines()[-1].startswith("error: split 'val': none of its")
    nothing_new(store, before)

    bad_line = tmp_path / "bad-line"
    shutil.copytree(chess, bad_line)
    label = sorted((bad_line / "labels" / "train").glob("*.txt"))[0]
    label.write_text(label.read_text() + "12 0.5 0.5 0.1 0.1\n")
    n = len(label.read_text().splitlines())
    for data, options, needle in [
        (bad_line, {}, f"{label.resolve()}:{n}: class id 12 not in 0..11"),
        (chess, {"val_splits": ["nope"]}, "split 'nope' is not in"),
        (chess, {"batch": 0}, "'batch'"),
        (chess, {"device": "cuda:99"}, "cuda:99"),
        (chess, {"weights": "no-such:v0"}, "no-such"),
        (tmp_path / "nowhere", {}, "no such data.yaml"),
    ]:
        with pytest.raises(ArtifactkitError) as err:
            artifactkit.train(str(store_dir), data=str(data), **{**TINY, **options})
        assert needle in str(err.value)
        nothing_new(store, before)

    coco_folder(tmp_path / "as-coco")
    with pytest.raises(InvalidInput, match="COCO dataset"):  # train --data on a COCO folder: the hint
        artifactkit.train(str(store_dir), data=str(tmp_path / "as-coco"), **TINY)
    nothing_new(store, before)


def test_a_materialised_dataset_is_keyed_by_content_and_holds_exactly_the_version(tmp_path):
    """Issue 27: a store deleted and made again at the same path, whose chess:v0 now holds 1 image
    instead of 3, trained on 4 images (the cache was keyed by store, name and version, and pulled
    without removing extras). The folder is named by the version's root tree and holds it exactly."""

    def dataset(n: int) -> dict[str, bytes]:
        files = {"data.yaml": b"path: .\ntrain: images/train\nval: images/train\nnames: [a]\n"}
        for i in range(n):
            files[f"images/train/{i}.jpg"] = f"image {i}".encode()
            files[f"labels/train/{i}.txt"] = b"0 0.5 0.5 0.2 0.2\n"
        return files

    def files_in(folder: Path) -> set[str]:
        return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}

    store_dir = tmp_path / "store"
    store = artifactkit.open_store(str(store_dir))
    store.log_files(dataset(3), name="chess")
    three = datasets.materialise(store, "chess:v0")
    assert len(list((three.root / "images/train").iterdir())) == 3

    shutil.rmtree(store_dir)
    store = artifactkit.open_store(str(store_dir))
    assert store.log_files(dataset(1), name="chess").record.label == "v0"
    one = datasets.materialise(store, "chess:v0")
    assert files_in(one.root) == set(dataset(1))
    assert len(list((three.root / "images/train").iterdir())) == 3  # the other content's folder is its own

    (one.root / "images/train/stray.jpg").write_bytes(b"not in the version")
    again = datasets.materialise(store, "chess:v0")
    assert again.root == one.root and files_in(again.root) == set(dataset(1))


# -- artifactkit.log_dataset: what log-dataset decides, from Python -----------------------------------------
def standard_yolo(root: Path) -> Path:
    """A folder that is its own dataset (logged as it is)."""
    for split in ("train", "val"):
        image(root / "images" / split / f"{split}0.jpg")
        write(root / "labels" / split / f"{split}0.txt", "0 0.5 0.5 0.2 0.2\n")
    return write(root / "data.yaml", "train: images/train\nval: images/val\nnames: [a]\n").parent


def plain(root: Path) -> Path:
    write(root / "notes.txt", "not a dataset\n")
    return write(root / "sub" / "more.csv", "a,b\n1,2\n").parent.parent


@pytest.mark.parametrize(
    ("make", "fmt"),
    [(standard_yolo, None), (roboflow, None), (coco_folder, "coco"), (plain, None)],
    ids=["yolo-folder", "roboflow-yaml", "coco", "plain"],
)
def test_log_dataset_from_python_gives_the_versions_the_cli_gives(tmp_path, make, fmt):
    made = make(tmp_path / "ds")
    given = made if isinstance(made, Path) else tmp_path / "ds"  # coco_folder gives its json files
    flags = ["--format", fmt] if fmt else []
    by_cli = last_json(run_cli("log-dataset", str(given), *flags, "--store", str(tmp_path / "cli"), "--json"))
    result = artifactkit.log_dataset(given, store=str(tmp_path / "api"), format=fmt)
    assert result.summary().keys() == by_cli.keys()
    assert {k: v for k, v in result.summary().items() if "seconds" not in k} == {
        k: v for k, v in by_cli.items() if "seconds" not in k
    }
    cli_store, api_store = (artifactkit.open_store(str(tmp_path / s)) for s in ("cli", "api"))
    assert result.store == api_store.uri
    assert version_files(api_store, "ds:v0") == version_files(cli_store, "ds:v0")
    assert api_store.resolve("ds:v0").manifest == cli_store.resolve("ds:v0").manifest
    again = artifactkit.log_dataset(given, store=api_store, format=fmt)  # a Store works as well as a URI
    assert (again.record.label, again.created) == ("v0", False)


def test_log_dataset_refuses_as_the_cli_does_and_writes_nothing(tmp_path):
    coco_folder(tmp_path / "cc")
    with pytest.raises(InvalidInput, match="a COCO dataset .*--format coco") as refused:
        artifactkit.log_dataset(tmp_path / "cc", store=str(tmp_path / "s"))
    proc = run_cli("log-dataset", str(tmp_path / "cc"), "--store", str(tmp_path / "s"), check=False)
    assert proc.returncode == 1 and proc.stderr.strip() == f"error: {refused.value}"
    with pytest.raises(InvalidInput, match="metadata"):
        artifactkit.log_dataset(plain(tmp_path / "p"), store=str(tmp_path / "s"), metadata=[1])
    assert not (tmp_path / "s").exists()
