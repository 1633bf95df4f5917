"""`train --weights`: start from a run's checkpoint or an exported file; another class count keeps
the backbone and neck and re-initialises the head (said in one line); the run records its source."""

from __future__ import annotations

import json

import pytest
import torch
from clirunner import run_cli
from tiny_run import IMGSZ, TINY, three_class_copy, tiny_run

import artifactkit
from artifactkit import runs
from artifactkit.detector.config import TrainConfig
from artifactkit.detector.train import Trainer
from artifactkit.weights import read_weights


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return tiny_run(tmp_path_factory)


@pytest.fixture(scope="module")
def three_classes(run, tmp_path_factory):
    return three_class_copy(run.data, tmp_path_factory.mktemp("three") / "chess3")


@pytest.fixture(autouse=True)
def _restore_torch_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_trainer_starts_from_the_weights(run, three_classes):
    source = read_weights(run.uri)
    same = Trainer(TrainConfig(data=str(run.data / "data.yaml"), **TINY), weights=source.state, weights_from="w")
    assert same.pretrained_note is None
    for model in (same.model, same.ema.ema):  # the EMA starts from the loaded weights too
        assert all(torch.equal(v, source.state[k]) for k, v in model.state_dict().items())
    other = Trainer(TrainConfig(data=str(three_classes / "data.yaml"), **TINY), weights=source.state, weights_from="w")
    assert other.pretrained_note == (
        "w has 12 classes, the dataset 3: kept the backbone and neck, re-initialised the detection head"
    )
    state = other.model.state_dict()
    body = [k for k in state if not k.startswith("head.")]
    assert body and all(torch.equal(state[k], source.state[k]) for k in body)
    assert state["head.cls_branches.0.2.weight"].shape[0] == 3
    assert not torch.equal(
        state["head.box_branches.0.0.conv.weight"], source.state["head.box_branches.0.0.conv.weight"]
    )


def test_finetune_from_a_run_records_its_source(run, tmp_path):
    events = []
    record = artifactkit.train(
        str(tmp_path / "store"),
        data=str(run.data),
        weights=run.uri,
        run_id="ft",
        report=lambda event, details: events.append((event, details)),
        **TINY,
    )
    assert record.status == "finished"
    assert record.weights_from == {"store": str(run.store), "version": "tiny-model:v0"}
    assert record.config["weights"] == run.uri
    assert not [d for e, d in events if e == "warning"]
    stored = runs.load_run(artifactkit.open_store(str(tmp_path / "store")), "ft")
    assert stored.weights_from == record.weights_from


def test_finetune_from_an_exported_file_with_other_classes(run, three_classes, tmp_path):
    pytest.importorskip("safetensors")
    from artifactkit.export import export_weights

    exported = tmp_path / "chess.safetensors"
    export_weights(run.uri, exported)
    store = tmp_path / "store"
    proc = run_cli(
        "train",
        "--data",
        str(three_classes),
        "--weights",
        str(exported),
        "--epochs",
        "1",
        "--imgsz",
        str(IMGSZ),
        "--batch",
        "4",
        "--workers",
        "0",
        "--store",
        str(store),
        "--run-id",
        "three",
        "--json",
    )
    said = [line for line in proc.stderr.splitlines() if "re-initialised" in line]
    assert said == [
        f"warning: {exported.resolve()} has 12 classes, the dataset 3: kept the backbone and neck, "
        f"re-initialised the detection head"
    ]
    assert json.loads(proc.stdout.strip().splitlines()[-1])["status"] == "finished"
    record = runs.load_run(artifactkit.open_store(str(store)), "three")
    assert record.weights_from["file"] == str(exported.resolve())
    from artifactkit.hashing import digest_file

    assert record.weights_from["digest"] == digest_file(exported)
    assert artifactkit.load_model("three-model:latest", store=str(store)).names == ["white", "black", "other"]


def test_weights_of_another_scale_are_refused_before_a_run_exists(run, tmp_path):
    store = tmp_path / "store"
    with pytest.raises(artifactkit.InvalidInput, match="weights of a YOLO-n cannot start a YOLO-s"):
        artifactkit.train(str(store), data=str(run.data), weights=run.uri, model="s", run_id="bad", **TINY)
    assert runs.list_runs(artifactkit.open_store(str(store))) == []
