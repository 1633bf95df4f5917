"""`export` by suffix: .pt (plain state_dict), .safetensors (round trip through load_model with
names, image size and scale), .onnx (onnxruntime's outputs against torch's); unknown suffixes."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest
import torch
from clirunner import run_cli
from tiny_run import IMGSZ, tiny_run

import artifactkit
from artifactkit import checkpoint
from artifactkit.export import export_weights, onnx_module
from artifactkit.weights import read_weights

if TYPE_CHECKING:
    import numpy

# ONNX vs torch on the same float32 input: box corners within 1e-3 px, probabilities within 1e-4
# (measured: ~1e-5 px and ~1e-7; the margin covers other CPUs' kernels).
BOX_TOLERANCE_PX, PROB_TOLERANCE = 1e-3, 1e-4


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return tiny_run(tmp_path_factory)


def ema_weights(run) -> dict[str, torch.Tensor]:
    return checkpoint.load(artifactkit.open_store(str(run.store)), f"{run.run_id}-model:latest")["ema"]["model"]


def chess_names(run) -> list[str]:
    import yaml

    return list(yaml.safe_load((run.data / "data.yaml").read_text())["names"].values())


def assert_same_state(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_pt_is_the_plain_ema_state_dict(run, tmp_path):
    out = tmp_path / "model.pt"
    proc = run_cli("export", run.uri, str(out), "--json")
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    assert info["format"] == "pt" and info["source"].endswith("tiny-model:v0")
    assert_same_state(torch.load(out, weights_only=True), ema_weights(run))
    loaded = artifactkit.load_model(out)  # a bare state_dict: class indices, the default size
    assert (loaded.names, loaded.imgsz, loaded.scale) == ([str(i) for i in range(12)], 640, "n")


def test_safetensors_round_trip(run, tmp_path):
    pytest.importorskip("safetensors")
    out = tmp_path / "model.safetensors"
    info = export_weights(f"{run.run_id}-model:best", out, store=str(run.store))
    assert (info["names"], info["imgsz"], info["scale"]) == (chess_names(run), IMGSZ, "n")
    loaded = artifactkit.load_model(out, device="cpu")
    assert (loaded.names, loaded.imgsz, loaded.scale) == (chess_names(run), IMGSZ, "n")
    assert not loaded.model.training
    assert_same_state(loaded.model.state_dict(), ema_weights(run))
    assert read_weights(out).origin["file"] == str(out.resolve())
    from_file = artifactkit.predict(out, run.val_images, conf=0.001, device="cpu")
    from_run = artifactkit.predict(run.uri, run.val_images, conf=0.001, device="cpu")
    assert from_file == from_run


def test_onnx_outputs_match_torch(run, tmp_path):
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from artifactkit.export import ONNX_OPSET
    from artifactkit.inference import _letterboxed, image_paths

    out = tmp_path / "model.onnx"
    info = export_weights(run.uri, out)
    assert (info["opset"], info["imgsz"]) == (ONNX_OPSET, IMGSZ)
    images = torch.stack([torch.from_numpy(_letterboxed(p, IMGSZ)[0]) for p in image_paths([run.val_images])])
    x = images.float() / 255
    with torch.no_grad():
        expected = onnx_module(read_weights(run.uri)).eval()(x).numpy()
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["images"]
    for batch in (x[:1], x):  # the batch dimension is dynamic
        got = session.run(["output0"], {"images": batch.numpy()})[0]
        want = expected[: len(batch)]
        assert got.shape == want.shape == (len(batch), 4 + 12, want.shape[2])
        assert abs(got[:, :4] - want[:, :4]).max() <= BOX_TOLERANCE_PX
        assert abs(got[:, 4:] - want[:, 4:]).max() <= PROB_TOLERANCE


def ultralytics_onnx_detections(session, image: "numpy.ndarray", conf: float, iou: float = 0.7) -> list[tuple]:
    """Detections from an ONNX detector as Ultralytics documents its export: input `images`
    (1, 3, S, S) RGB in [0, 1]; output0 (1, 4 + nc, A), each column an anchor's cx, cy, w, h in
    input pixels and its nc class scores, no objectness, no NMS (the consumer's). Written from
    that description alone: numpy, per-class greedy NMS, boxes clipped to the image afterwards.
    -> [(x1, y1, x2, y2, score, class)]."""
    import numpy as np

    out = session.run(None, {session.get_inputs()[0].name: image[None]})[0][0].T  # (A, 4 + nc)
    cx, cy, w, h = out[:, 0], out[:, 1], out[:, 2], out[:, 3]
    corners = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
    anchors, classes = np.nonzero(out[:, 4:] > conf)
    candidates = sorted(zip(out[anchors, 4 + classes], anchors, classes), reverse=True)
    kept: list[tuple] = []
    for score, a, c in candidates:
        box = corners[a]
        overlaps = [_iou(box, np.array(k[:4])) for k in kept if k[5] == c]
        if all(o <= iou for o in overlaps):
            kept.append((*box.tolist(), float(score), int(c)))
    size = image.shape[1]
    return [(*np.clip(k[:4], 0, size).tolist(), *k[4:]) for k in kept]


def _iou(a, b) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - w * h
    return w * h / union if union > 0 else 0.0


def test_onnx_is_what_ultralytics_consumers_decode(run, tmp_path):
    """The .onnx runs as tools written for Ultralytics exports run it: its metadata read back with
    ast.literal_eval, its output decoded by the documented layout, gives predict's boxes."""
    import ast

    import numpy as np
    from PIL import Image

    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    out = tmp_path / "model.onnx"
    run_cli("export", f"model={run.uri}", f"out={out}")
    meta = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    names = ast.literal_eval(meta["names"])
    assert names == dict(enumerate(chess_names(run))) and ast.literal_eval(meta["imgsz"]) == [IMGSZ, IMGSZ]
    assert (meta["stride"], meta["task"]) == ("32", "detect")
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    output = session.get_outputs()[0]
    anchors = sum((IMGSZ // stride) ** 2 for stride in (8, 16, 32))
    assert output.name == "output0" and output.shape[1:] == [4 + 12, anchors]

    predictions = tmp_path / "preds.json"
    run_cli("predict", f"source={run.val_images}", f"model={run.uri}", "conf=0.0005", f"out={predictions}")
    ours: dict[str, list] = {}
    for r in json.loads(predictions.read_text()):
        x, y, w, h = r["bbox"]
        ours.setdefault(r["image_id"], []).append((x, y, x + w, y + h, r["score"], r["category_id"]))
    compared = 0
    for path in sorted(run.val_images.iterdir()):
        with Image.open(path) as im:  # the chess images are IMGSZ squares: no letterbox to undo
            assert im.size == (IMGSZ, IMGSZ)
            image = np.asarray(im.convert("RGB"), np.float32).transpose(2, 0, 1) / 255
        theirs = ultralytics_onnx_detections(session, image, conf=0.0005)
        for box in sorted(ours.get(path.stem, []), key=lambda b: -b[4])[:5]:  # every strong box is found
            assert any(
                t[5] == box[5] and abs(t[4] - box[4]) < 1e-5 and max(abs(np.subtract(t[:4], box[:4]))) < 0.05
                for t in theirs
            ), (path.name, box)
            compared += 1
    assert compared >= 4


def test_unknown_suffix_is_refused_and_nothing_is_written(run, tmp_path):
    proc = run_cli("export", run.uri, str(tmp_path / "model.bin"), check=False)
    assert proc.returncode == 1
    assert (
        proc.stderr.strip()
        == f"error: {tmp_path / 'model.bin'}: unknown export suffix '.bin' (expected .pt, .safetensors, .onnx)"
    )
    proc = run_cli("export", run.uri, str(tmp_path / "model.pt"), "--imgsz", "64", check=False)
    assert proc.returncode == 1 and "image size applies to .onnx exports only" in proc.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_export_is_atomic_and_a_failed_write_names_the_file(run, tmp_path, suffix):
    (tmp_path / f"taken{suffix}").mkdir()  # a directory where the file should go
    with pytest.raises(artifactkit.InvalidInput, match=f"taken{suffix}"):
        export_weights(run.uri, tmp_path / f"taken{suffix}")
    assert [p.name for p in tmp_path.iterdir()] == [f"taken{suffix}"]  # no temp file left behind


def test_a_foreign_safetensors_file_is_refused(tmp_path):
    st = pytest.importorskip("safetensors.torch")
    path = tmp_path / "other.safetensors"
    st.save_file({"w": torch.zeros(2)}, str(path), metadata={"format": "pt"})
    with pytest.raises(artifactkit.InvalidInput, match="not an artifactkit export"):
        artifactkit.load_model(path)
