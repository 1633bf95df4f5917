"""Resume from anywhere, with real SIGKILLs: bit-exact continuation, kills during a save,
S3 into an empty folder on "another machine", and one-line errors for bad input."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from clirunner import assert_bit_identical_twins, run_cli

import artifactkit
from artifactkit import checkpoint, runs

TRAIN = ["--epochs", "2", "--imgsz", "64", "--batch", "4", "--save-period", "1"]


@pytest.fixture(scope="module")
def chess(tmp_path_factory) -> Path:
    from artifactkit.detector.chess import generate

    return generate(tmp_path_factory.mktemp("data") / "chess", n_train=8, n_val=4, n_heldout=2, imgsz=64).parent


def train_until_killed(args: list[str], marker: Path, env: dict | None = None, cwd=None) -> None:
    """Start `artifactkit train`, SIGKILL it as soon as `marker` (a checkpoint record) exists."""
    import os

    proc = subprocess.Popen(
        [sys.executable, "-m", "artifactkit", "train", *args],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    deadline = time.time() + 240
    while not marker.exists():
        if proc.poll() is not None:
            raise AssertionError(f"train ended before its first checkpoint: {proc.stderr.read().decode()}")
        if time.time() > deadline:
            proc.kill()
            raise AssertionError("no checkpoint within 240 s")
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()


@pytest.mark.parametrize("workers", [0, 2])
def test_killed_and_resumed_run_is_bit_identical(tmp_path, chess, workers):
    store = tmp_path / "store"
    common = ["--data", str(chess), *TRAIN, "--workers", str(workers), "--store", str(store)]
    run_cli("train", *common, "--run-id", "straight")
    marker = store / "artifacts" / "killed-model" / "versions" / "0.json"
    train_until_killed([*common, "--run-id", "killed"], marker)
    proc = run_cli("resume", str(store / "runs" / "killed"), "--json")
    assert json.loads(proc.stdout.strip().splitlines()[-1])["status"] == "finished"
    assert "resuming run killed at epoch 2/2" in proc.stderr
    assert_bit_identical_twins(store, "straight", "killed", epochs=2)
    s = artifactkit.open_store(str(store))
    assert artifactkit.verify(s).ok


def _train_one_epoch(data, store, run_id: str, **kw):
    """`artifactkit train` of one epoch, no loader workers, into `store` as run_id."""
    options = ["--epochs", "1", "--workers", "0", "--store", str(store), "--run-id", run_id]
    return run_cli("train", "--data", str(data), *TRAIN, *options, **kw)


def test_resume_from_s3_on_another_machine(tmp_path, chess, s3_bucket):
    import shutil

    data = tmp_path / "mine" / "chess"
    shutil.copytree(chess, data)
    store = f"{s3_bucket}/ak"
    _train_one_epoch(data, store, "far", env={"ARTIFACTKIT_CACHE_DIR": str(tmp_path / "cache-a")})
    shutil.rmtree(tmp_path / "mine")  # nothing of the first machine is left but the store
    elsewhere = tmp_path / "other"
    elsewhere.mkdir()
    proc = run_cli(
        "resume",
        f"{store}/runs/far",
        "--epochs",
        "2",
        "--json",
        cwd=elsewhere,
        env={"ARTIFACTKIT_CACHE_DIR": str(elsewhere / "cache")},
    )
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert (summary["status"], summary["epochs_completed"]) == ("finished", 2)


CHILD_SAVE = """
import os, signal, sys, torch
import artifactkit
from artifactkit import checkpoint, runs
import artifactkit.backends.local as local
store = artifactkit.open_store(sys.argv[1])
checkpoint.save(store, "r-model", {"w": torch.zeros(10), "b": torch.ones(3), "epoch": 1})
point = sys.argv[2]
real_many, real_write = local.LocalBackend.write_many, local.LocalBackend.write
def write_many(self, items):
    real_many(self, items[:1]); os.kill(os.getpid(), signal.SIGKILL)
def write(self, key, data, *, create_only=False):
    if key.startswith("artifacts/"):
        os.kill(os.getpid(), signal.SIGKILL)
    return real_write(self, key, data, create_only=create_only)
if point == "between-blobs":
    local.LocalBackend.write_many = write_many
else:
    local.LocalBackend.write = write
checkpoint.save(store, "r-model", {"w": torch.full((10,), 2.0), "b": torch.full((3,), 5.0), "epoch": 2})
"""


@pytest.mark.parametrize("point", ["between-blobs", "before-record"])
def test_kill_during_save_keeps_previous_checkpoint(tmp_path, point):
    script = tmp_path / "child.py"
    script.write_text(CHILD_SAVE)
    proc = subprocess.run([sys.executable, str(script), str(tmp_path / "s"), point], capture_output=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()
    store = artifactkit.open_store(str(tmp_path / "s"))
    assert checkpoint.load(store, "r-model:latest")["epoch"] == 1
    assert artifactkit.verify(store).ok


def check_error(proc, *fragments):
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert lines and lines[-1].startswith("error: "), proc.stderr
    for fragment in fragments:
        assert fragment in lines[-1], (fragment, lines[-1])


def test_resume_bad_input(tmp_path, chess):
    store = tmp_path / "s"
    check_error(run_cli("resume", f"{store}/runs/ghost", check=False), "ghost", "no such run")
    check_error(run_cli("resume", "not/a-run-uri", check=False), "invalid run URI")
    check_error(
        run_cli("resume", "ghost", "--store", str(store), check=False),
        "runs/ghost: no such run",
        "or a run id with --store",
    )
    _train_one_epoch(chess, store, "done")
    check_error(run_cli("resume", f"{store}/runs/done", check=False), "finished all 1 epochs", "--epochs")
    # (a run with no checkpoint yet is no error: it starts again, test_preemption.py)
    s = artifactkit.open_store(str(store))
    # a corrupted tensor blob
    ckpt = s.resolve("done-model:latest")
    entry = next(e for e in s.manifest(ckpt).entries if e.path.startswith("tensors/") and e.size > 1000)
    blob = store / "objects" / entry.digest[:2] / entry.digest[2:]
    blob.write_bytes(b"\0" * entry.size)
    check_error(run_cli("resume", f"{store}/runs/done", "--epochs", "2", check=False), "corrupt")


def test_checkpoint_of_another_scale_is_refused(tmp_path, chess):
    store = tmp_path / "s"
    _train_one_epoch(chess, store, "small")
    s = artifactkit.open_store(str(store))
    state = checkpoint.load_full(s, "small-model", "small-state")  # the whole training state
    state["config"]["model"] = "s"  # the weights are n's; the record claims s
    checkpoint.save(s, "small-model", state)
    check_error(
        run_cli("val", "--weights", f"{store}/runs/small:latest", "--data", str(chess), "--imgsz", "64", check=False),
        "do not fit a YOLO-s",
    )
    check_error(run_cli("resume", f"{store}/runs/small", "--epochs", "2", check=False), "small")


def test_resume_restores_aliases_lost_to_a_kill(tmp_path):
    """A kill between a checkpoint's version record and its aliases loses epoch-<E> (and, on
    the first save, best); resume puts them back before the run and its mirrors go on."""
    from artifactkit.session import _repair_aliases

    s = artifactkit.open_store(str(tmp_path / "s"))
    checkpoint.save(s, "r-model", {"epoch": 1}, metadata={"fitness": 0.2})  # killed before its aliases
    _repair_aliases(s, "r-model", 1)
    assert s.aliases("r-model") == {"epoch-1": 0, "best": 0}
    checkpoint.save(s, "r-model", {"epoch": 2}, metadata={"fitness": 0.1})
    _repair_aliases(s, "r-model", 2)
    assert s.aliases("r-model") == {"epoch-1": 0, "epoch-2": 1, "best": 0}
    # a checkpoint from inside an epoch (--save-every) is never `best`, even where fitness ties at 0
    checkpoint.save(s, "m-model", {"epoch": 0, "batch": 3}, metadata={"batch": 3, "fitness": None})
    checkpoint.save(s, "m-model", {"epoch": 1}, metadata={"fitness": 0.0})  # killed before its aliases
    _repair_aliases(s, "m-model", 1)
    assert s.aliases("m-model") == {"epoch-1": 1, "best": 1}


def test_run_records_from_before_a_key_was_retired_still_load():
    from artifactkit.records import parse_record

    record = {
        "run_id": "old1",
        "created": "t",
        "updated": "t",
        "config": {},
        "model_artifact": "old1-model",
        "total_epochs": 1,
        "dataset_complete": True,
    }
    run = parse_record(runs.RunRecord, json.dumps(record).encode(), "runs/old1/run.json")
    assert run.run_id == "old1" and "dataset_complete" not in run.model_dump()
    with pytest.raises(artifactkit.InvalidInput, match="runs/old1/run.json.*surprise"):
        parse_record(runs.RunRecord, json.dumps({**record, "surprise": 1}).encode(), "runs/old1/run.json")


def test_a_dataset_folder_is_trained_in_place_and_a_stored_version_is_pulled(tmp_path, chess, monkeypatch):
    from artifactkit import datasets

    monkeypatch.setenv("ARTIFACTKIT_CACHE_DIR", str(tmp_path / "cache"))
    store = artifactkit.open_store(str(tmp_path / "s"))
    local = datasets.resolve(store, str(chess))
    assert local.in_place and local.root == chess
    pulled = datasets.resolve(store, local.ref)
    assert not pulled.in_place and pulled.root != chess and pulled.yaml_path.is_file()


KILLED_AT_EPOCH = """
import os, signal, sys
import artifactkit

def report(event, details):
    if event == "epoch" and details["epoch"] == int(sys.argv[3]):
        os.kill(os.getpid(), signal.SIGKILL)  # after the epoch's record and metrics, before its checkpoint

artifactkit.train(sys.argv[1], data=sys.argv[2], run_id="k", epochs=3, imgsz=64, batch=4, workers=0,
                  save_period=int(sys.argv[4]), report=report)
"""


@pytest.mark.parametrize("save_period, kill_at", [(1, 2), (1, 1), (0, 2)])
def test_a_killed_run_claims_no_epoch_whose_checkpoint_is_missing(tmp_path, chess, save_period, kill_at):
    """Issue 27: a SIGKILL left `epochs_completed: 2` and no checkpoint of epoch 2 although
    --save-period 1 asked for one. The record claims an epoch only once the checkpoint it needs is
    committed, and resume says exactly what exists."""
    script = tmp_path / "child.py"
    script.write_text(KILLED_AT_EPOCH)
    store = tmp_path / "s"
    proc = subprocess.run(
        [sys.executable, str(script), str(store), str(chess), str(kill_at), str(save_period)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    s = artifactkit.open_store(str(store))
    record = runs.load_run(s, "k")
    saved = [checkpoint.load(s, f"k-model:v{v}")["epoch"] for v in s.version_numbers("k-model")]
    if save_period:
        assert record.epochs_completed == kill_at - 1 and saved == list(range(1, kill_at))
    else:  # only a better epoch asks for a checkpoint (issue 29: best whatever the period); the first always is
        fitness = [m["metrics"]["fitness"] for m in runs.read_metrics(s, "k")]
        asked = fitness[kill_at - 1] >= max(fitness[: kill_at - 1])
        assert saved == list(range(1, kill_at)) and record.epochs_completed == kill_at - asked
    resumed = run_cli("resume", f"{store}/runs/k", check=False)
    assert resumed.returncode == 0, resumed.stderr
    if saved:
        assert f"resuming run k at epoch {max(saved) + 1}/3" in resumed.stderr, resumed.stderr
    else:  # nothing saved, nothing to lose: the run starts again with its recorded config (issue 29)
        assert "has no checkpoint yet: starting it again from epoch 1" in resumed.stderr, resumed.stderr
