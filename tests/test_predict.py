"""`predict` on a tiny trained model: COCO JSON that `val --preds` scores, annotated images, the
same boxes as validation computes, sources as files, folders and globs, one-line errors."""

from __future__ import annotations

import json
import shutil

import pytest
from clirunner import run_cli
from tiny_run import IMGSZ, tiny_run

import artifactkit
from artifactkit.errors import InvalidInput, NotFound
from artifactkit.inference import image_paths

# Validation keeps nearly every box (conf 0.001); a 1-epoch model is far from confident.
LOW_CONF = "0.001"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return tiny_run(tmp_path_factory)


def test_cli_writes_coco_json_and_annotated_images(run, tmp_path):
    from PIL import Image, ImageChops

    out, drawn = tmp_path / "preds.json", tmp_path / "drawn"
    proc = run_cli(
        "predict",
        "--weights",
        run.uri,
        str(run.val_images),
        "--out",
        str(out),
        "--save-images",
        str(drawn),
        "--conf",
        LOW_CONF,
        "--device",
        "cpu",
        "--json",
    )
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    images = sorted(run.val_images.iterdir())
    records = json.loads(out.read_text())
    assert summary["images"] == len(images) and summary["boxes"] == len(records) > 0
    assert {r["image_id"] for r in records} <= {p.stem for p in images}
    for r in records:
        x, y, w, h = r["bbox"]
        assert 0 <= x and 0 <= y and w >= 0 and h >= 0 and x + w <= IMGSZ + 1e-3 and y + h <= IMGSZ + 1e-3
        assert 0.001 <= r["score"] <= 1 and 0 <= r["category_id"] < 12
    for image in images:  # same size as the original, with something drawn on it
        with Image.open(image) as a, Image.open(drawn / image.name) as b:
            assert a.size == b.size
            if image.stem in {r["image_id"] for r in records}:
                assert ImageChops.difference(a.convert("RGB"), b.convert("RGB")).getbbox() is not None
    scored = run_cli("val", "--data", str(run.data), "--preds", str(out), "--json")  # the format val scores
    assert 0 <= json.loads(scored.stdout.strip().splitlines()[-1])["metrics"]["metrics/mAP50"] <= 1


def test_api_gives_the_boxes_validation_computes(run, tmp_path):
    """Same preprocessing, forward pass and NMS as `val --save-json` at validation's threshold."""
    from artifactkit.val import evaluate_weights

    saved = tmp_path / "val.json"
    evaluate_weights(run.uri, str(run.data), imgsz=IMGSZ, batch=4, device="cpu", save_json=saved)
    expected = sorted((r["image_id"], r["category_id"], r["score"]) for r in json.loads(saved.read_text()))
    predictions = artifactkit.predict(
        f"{run.run_id}-model:best", [run.val_images], store=str(run.store), conf=0.001, batch=4, device="cpu"
    )
    assert [p.image_id for p in predictions] == sorted(p.stem for p in run.val_images.iterdir())
    assert all((p.width, p.height) == (IMGSZ, IMGSZ) for p in predictions)
    got = sorted((p.image_id, b.class_id, b.confidence) for p in predictions for b in p.boxes)
    assert len(got) == len(expected) > 0
    assert all(g[:2] == e[:2] and g[2] == pytest.approx(e[2], abs=1e-5) for g, e in zip(got, expected))
    assert {b.name for p in predictions for b in p.boxes} <= set(_names(run))


def _names(run) -> list[str]:
    import yaml

    return list(yaml.safe_load((run.data / "data.yaml").read_text())["names"].values())


def test_sources_are_files_folders_and_globs(run, tmp_path):
    images = sorted(run.val_images.iterdir())
    assert image_paths([run.val_images]) == images
    assert image_paths([str(run.val_images / "*.jpg"), images[0]]) == images  # a file named twice counts once
    assert image_paths([str(run.val_images.parent / "**" / "val-0000[01].jpg")]) == images[:2]
    assert image_paths([images[1], run.val_images]) == [images[1], *[p for p in images if p != images[1]]]
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(InvalidInput, match="notes.txt: not an image"):
        image_paths([tmp_path / "notes.txt"])
    with pytest.raises(NotFound, match="nowhere: no such image, folder or glob"):
        image_paths(["nowhere"])
    with pytest.raises(InvalidInput, match=r"\*\.png: no images"):
        image_paths([str(tmp_path / "*.png")])
    twin = tmp_path / "twin"
    twin.mkdir()
    shutil.copy(images[0], twin / images[0].name)
    with pytest.raises(InvalidInput, match=f"share the image id '{images[0].stem}'"):
        image_paths([run.val_images, twin])


def test_bad_weights_and_options_are_one_line_errors(run, tmp_path):
    image = str(sorted(run.val_images.iterdir())[0])
    for args, message in [
        (["--weights", str(tmp_path / "nothing.pt"), image], "nothing.pt: no such weights file"),
        (["--weights", "model.bin", image], "weights 'model.bin': "),  # a bare word, in no store: the forms follow
        (["--weights", "model.bin", image], "expected a .safetensors or .pt file, a run URI (<store>/runs/<run-id>)"),
        (["--weights", run.uri, image, "--imgsz", "100"], "image size 100 is not a positive multiple of 32"),
        (["--weights", run.uri, image, "--conf", "2"], "conf and iou must lie in [0, 1]"),
        (["--weights", f"{run.store}/runs/nope", image], "runs/nope: no such run"),
        (["--weights", run.uri, image, "--device", "gpu"], "device 'gpu': expected auto, cpu, cuda or cuda:N"),
    ]:
        proc = run_cli("predict", *args, "--out", str(tmp_path / "p.json"), check=False)
        assert proc.returncode == 1 and message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, (
            proc.stderr
        )
    assert not (tmp_path / "p.json").exists()
