"""Ultralytics habits through the real CLI (issue 31): KEY=VALUE words on train, val, predict and
export, no silent choice among several stored datasets, one start line naming dataset version,
weights and device, and a top-level --help that wraps cleanly at 80 columns."""

from __future__ import annotations

import json
import re

import pytest
from clirunner import run_cli

TINY_WORDS = ["epochs=1", "imgsz=64", "batch=4", "workers=0", "bbox_interval=0"]


@pytest.fixture(scope="module")
def chess(tmp_path_factory):
    from artifactkit.detector.chess import generate

    return generate(tmp_path_factory.mktemp("data") / "chess", n_train=8, n_val=4, n_heldout=0, imgsz=64).parent


@pytest.fixture(scope="module")
def trained(chess, tmp_path_factory):
    """A run trained the Ultralytics way: `train data=... epochs=1 imgsz=64 ...`."""
    store = tmp_path_factory.mktemp("store") / "s"
    proc = run_cli("train", f"data={chess}", *TINY_WORDS, "lr0=0.002", "--run-id", "words", "--store", str(store))
    return store, proc


def test_train_takes_key_value_words_as_set_does_and_says_what_it_starts_from(trained):
    import artifactkit
    from artifactkit.runs import load_run

    store, proc = trained
    config = load_run(artifactkit.open_store(str(store)), "words").config
    assert (config["epochs"], config["imgsz"], config["batch"], config["lr0"]) == (1, 64, 4, 0.002)
    start = [line for line in proc.stderr.splitlines() if line.startswith("run words ")]
    assert len(start) == 1, proc.stderr
    assert "on chess:v0, weights none (from scratch), device cpu, workers 0: resume with" in start[0]


@pytest.mark.parametrize(
    "words, message",
    [
        (["epochs=abc"], "error: epochs=abc: Input should be a valid integer"),
        (["lr=0.1"], "error: lr=0.1: unknown train config key, did you mean lr0? (known: model, epochs,"),
        (["epochs=0"], "error: epochs=0: Input should be greater than or equal to 1 (got 0)"),
        (["--epochs", "2", "epochs=3"], "error: epochs=3: given twice (also as --epochs)"),
        (["chess"], "error: unexpected argument 'chess' (expected --OPTION VALUE or KEY=VALUE)"),
    ],
)
def test_bad_words_name_the_word_typed_and_create_nothing(chess, tmp_path, words, message):
    proc = run_cli("train", f"data={chess}", "--store", str(tmp_path / "store"), *words, check=False)
    assert proc.returncode == 1 and proc.stderr.startswith(message) and len(proc.stderr.splitlines()) == 1
    assert not (tmp_path / "store").exists()


def test_set_suggests_the_closest_key(chess, tmp_path):
    proc = run_cli("train", "--data", str(chess), "--set", "lr=0.1", "--store", str(tmp_path / "s"), check=False)
    assert proc.returncode == 1
    assert proc.stderr.startswith("error: --set lr: unknown train config key, did you mean lr0?")


def test_val_predict_and_export_take_key_value_words(chess, trained, tmp_path):
    store, _ = trained
    run = f"{store}/runs/words"
    scores = json.loads(run_cli("val", f"data={chess}", f"model={run}", "conf=0.25", "--json").stdout.splitlines()[-1])
    assert scores["images"] == 4 and scores["split"] == "val"
    bad = run_cli("val", f"data={chess}", f"model={run}", "conf=2", check=False)
    assert bad.returncode == 1 and bad.stderr.startswith("error: conf=2: Input should be less than or equal to 1")
    typo = run_cli("val", f"data={chess}", f"model={run}", "cnf=0.2", check=False)
    assert typo.returncode == 1 and typo.stderr.startswith("error: cnf=0.2: unknown key for val, did you mean conf?")
    missing = run_cli("val", f"model={run}", check=False)
    assert missing.returncode == 1 and missing.stderr.strip() == "error: missing --data (or data=VALUE)"

    out = tmp_path / "preds.json"
    proc = run_cli("predict", f"source={chess / 'images' / 'val'}", f"model={run}", "conf=0.01", f"out={out}", "--json")
    assert json.loads(proc.stdout.splitlines()[-1])["images"] == 4 and out.is_file()
    twice = run_cli("predict", str(chess / "images" / "val"), "--weights", run, f"weights={run}", check=False)
    assert twice.returncode == 1 and twice.stderr.strip() == f"error: weights={run}: given twice (also as --weights)"

    exported = tmp_path / "m.safetensors"
    proc = run_cli("export", f"model={run}", f"out={exported}", "--json")
    assert json.loads(proc.stdout.splitlines()[-1])["out"] == str(exported) and exported.is_file()
    sized = run_cli("export", run, str(tmp_path / "m.pt"), "imgsz=64", check=False)  # the option's own check
    assert sized.returncode == 1 and "an image size applies to .onnx exports only" in sized.stderr


def test_train_without_data_refuses_a_store_of_several_datasets(chess, tmp_path):
    store = str(tmp_path / "store")
    run_cli("log-dataset", str(chess), "--name", "first", "--store", store)
    default_workers = [w for w in TINY_WORDS if not w.startswith("workers=")]
    one = run_cli("train", *default_workers, "--run-id", "one", "--store", store)  # one dataset: the default stands
    assert "run one on first:v0" in one.stderr
    assert "device cpu, workers 0:" in one.stderr  # TrainConfig's 2 workers: none for 2 batches an epoch
    run_cli("log-dataset", str(chess), "--name", "second", "--store", store)
    proc = run_cli("train", *TINY_WORDS, "--store", store, check=False)
    assert proc.returncode == 1 and len(proc.stderr.splitlines()) == 1
    assert re.match(
        r"error: .* holds 2 datasets \(second:v0, first:v0\): name one with --data NAME:VERSION", proc.stderr
    ), proc.stderr
    import artifactkit
    from artifactkit.runs import list_runs

    assert [r.run_id for r in list_runs(artifactkit.open_store(store))] == ["one"]  # no run was started
    named = run_cli("train", "data=second", *TINY_WORDS, "--run-id", "two", "--store", store)  # a stored name
    assert "run two on second:v0" in named.stderr


def test_resume_start_line_names_the_checkpoint_and_device(trained):
    store, _ = trained
    proc = run_cli("resume", f"{store}/runs/words", "--epochs", "2", "--store", str(store))
    line = next(x for x in proc.stderr.splitlines() if x.startswith("resuming run words"))
    assert line == "resuming run words at epoch 2/2 on chess:v0, weights words-model:v0, device cpu, workers 0"


def test_top_level_help_wraps_cleanly_at_80_columns(tmp_path):
    proc = run_cli("--help", env={"COLUMNS": "80", "TERM": "dumb"})
    lines = proc.stdout.splitlines()
    assert all(len(line) <= 80 for line in lines)
    commands = next(i for i, line in enumerate(lines) if " Commands " in line)
    rows = [line for line in lines[commands + 1 :] if line.startswith("│ ")]
    assert len(rows) >= 20  # every command, some over two lines
    column = re.match(r"│ \S+\s+", rows[0]).end()  # where the descriptions start
    width = len(rows[0]) - 2 - column  # the description column, up to the panel's right border
    descriptions = [(line[2:column].strip(), line[column:-1].rstrip()) for line in rows]
    for (name, text), (next_name, next_text) in zip(descriptions, descriptions[1:]):
        if not next_name and text and next_text:  # a wrapped line: the next word would not have fitted
            assert len(text) + 1 + len(next_text.split()[0]) > width, (text, next_text)


def test_roboflow_export_without_a_test_split_is_logged_with_a_warning_and_its_other_keys(tmp_path):
    import yaml
    from PIL import Image

    rf = tmp_path / "robo"
    for split in ("train", "valid"):  # Roboflow exported no test split, but its yaml still names one
        (rf / split / "images").mkdir(parents=True)
        (rf / split / "labels").mkdir(parents=True)
        Image.new("RGB", (32, 32), (40, 90, 160)).save(rf / split / "images" / f"{split}-x.jpg")
        (rf / split / "labels" / f"{split}-x.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    (rf / "data.yaml").write_text(
        "train: ../train/images\nval: ../valid/images\ntest: ../test/images\n\nnc: 2\nnames: ['a', 'b']\n\n"
        "roboflow:\n  workspace: me\n  project: p\n  version: 1\n  license: CC BY 4.0\n"
        "  url: https://universe.roboflow.com/me/p/dataset/1\n"
    )
    store = str(tmp_path / "store")
    proc = run_cli("log-dataset", str(rf), "--store", store)
    assert proc.stderr.strip().splitlines() == [
        f"warning: {rf / 'data.yaml'}: key 'test': image folder or .txt list {(rf / 'test' / 'images').resolve()} "
        "does not exist; the test split is left out"
    ]
    stored = yaml.safe_load(run_cli("cat", "robo:v0", "data.yaml", "--store", store).stdout)
    assert "test" not in stored and stored["train"] == "images/train" and stored["val"] == "images/val"
    assert stored["roboflow"]["license"] == "CC BY 4.0" and stored["roboflow"]["url"].endswith("/dataset/1")


def test_a_coco_dataset_gets_predictions_in_its_original_ids(tmp_path):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval
    from test_datasets import coco_folder

    root = tmp_path / "pieces"
    jsons = coco_folder(root)  # category ids 7, 1, 3; image ids 100, 101
    store = str(tmp_path / "store")
    run_cli("log-dataset", "--format", "coco", str(root), "--store", store)
    run_cli("train", "data=pieces:v0", *TINY_WORDS, "--run-id", "coco", "--store", store)
    run = f"{store}/runs/coco"
    saved = tmp_path / "val.json"
    scored = run_cli(
        "val", "data=pieces:v0", f"model={run}", "conf=0.0001", f"save_json={saved}", "--store", store, "--json"
    )
    records = json.loads(saved.read_text())
    assert records and {r["image_id"] for r in records} <= {100, 101}
    assert {r["category_id"] for r in records} <= {1, 3, 7}
    original = COCO(str(jsons["val"]))
    evaluation = COCOeval(original, original.loadRes(str(saved)), "bbox")  # scored against the file as it is
    evaluation.evaluate()
    evaluation.accumulate()
    # and `val --preds` reads the file's ids back: the same scores as the model's own val
    again = run_cli("val", "data=pieces", f"preds={saved}", "--store", store, "--json")  # a stored name, as train
    assert json.loads(again.stdout.splitlines()[-1])["metrics"] == pytest.approx(
        json.loads(scored.stdout.splitlines()[-1])["metrics"]
    )

    predicted = tmp_path / "predictions.json"
    run_cli(
        "predict", f"source={root / 'val2017'}", f"model={run}", "conf=0.0001", f"out={predicted}", "--store", store
    )
    records = json.loads(predicted.read_text())
    assert records and {r["category_id"] for r in records} <= {1, 3, 7}
    assert {r["image_id"] for r in records} == {100, 101}  # val0.jpg and val1.jpg, by their file names


def test_worker_processes_start_only_where_an_epoch_has_batches_to_overlap():
    import os

    from artifactkit.detector.config import AUTO_WORKERS, MIN_BATCHES_FOR_WORKERS, TrainConfig
    from artifactkit.detector.data import effective_workers

    assert TrainConfig(data="d").workers is None  # the default: decided per dataset
    assert effective_workers(None, 8, 4)[0] == 0  # 2 batches an epoch: start-up would outweigh the overlap
    assert effective_workers(None, 4 * MIN_BATCHES_FOR_WORKERS, 4)[0] == min(AUTO_WORKERS, os.cpu_count() or 1)
    assert effective_workers(2, 8, 4)[0] == min(2, os.cpu_count() or 1)  # a number given is taken as given
    assert effective_workers(0, 10_000, 4)[0] == 0


def test_export_help_says_what_a_pt_file_is_for():
    text = " ".join(run_cli("export", "--help", env={"COLUMNS": "200", "TERM": "dumb"}).stdout.split())
    assert ".pt is a plain PyTorch state_dict for artifactkit.load_model()" in text
    assert "Ultralytics' YOLO() cannot load it" in text and "output0 (N, 4 + nc, A)" in text
