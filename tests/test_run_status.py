"""Runs that tell the truth, with real processes: a SIGKILLed training is `interrupted` (no
process survives to say so: its lease does), a raising run is `failed` with its error,
`train --resume` picks the interrupted run and never a failed one, two resumes of one run at once
leave exactly one running, a killed holder never blocks; `resume RUN_ID --store`, `ls`."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from clirunner import run_cli
from tiny_run import train_tiny

import artifactkit
from artifactkit import checkpoint, runs

TINY = ["--imgsz", "64", "--batch", "4", "--workers", "0", "--save-period", "1", "--set", "threads=1"]


def last_json(proc) -> dict:
    return json.loads(proc.stdout.strip().splitlines()[-1])


def statuses(store: Path) -> dict[str, dict]:
    return {r["run_id"]: r for r in last_json(run_cli("runs", "--store", str(store), "--json"))["runs"]}


def start(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "artifactkit", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def wait_for(path: Path, proc: subprocess.Popen, what: str) -> None:
    deadline = time.monotonic() + 240
    while not path.exists():
        assert proc.poll() is None, f"ended before {what}: {proc.stderr.read()}"
        assert time.monotonic() < deadline, f"no {what} within 240 s"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def killed(tmp_path_factory) -> Path:
    """A store holding run `k`: 2 epochs asked, SIGKILLed once its epoch-1 checkpoint exists."""
    from artifactkit.detector.chess import generate

    root = tmp_path_factory.mktemp("killed")
    data = generate(root / "chess", n_train=8, n_val=4, n_heldout=0, imgsz=64).parent
    store = root / "store"
    proc = start("train", "--data", str(data), "--epochs", "2", *TINY, "--store", str(store), "--run-id", "k")
    wait_for(store / "artifacts" / "k-model" / "versions" / "0.json", proc, "the first checkpoint")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return store


@pytest.fixture
def store(tmp_path, killed) -> Path:
    """A copy of the killed run's store, for a test to resume as it likes."""
    return Path(shutil.copytree(killed, tmp_path / "store"))


def test_a_killed_run_is_interrupted_and_a_raising_run_failed_and_resume_picks_the_interrupted(store, tmp_path):
    assert statuses(store)["k"]["status"] == "interrupted"
    # a later run that raised (the caller's own code, here its progress callback) is `failed`
    data = Path(runs.load_run(artifactkit.open_store(str(store)), "k").config["data"]).parent

    def report(event: str, details: dict) -> None:
        if event == "epoch" and details["epoch"] == 2:
            raise RuntimeError("boom in epoch 2, see s3://me:hunter2@host/log\nsecond line")

    with pytest.raises(RuntimeError, match="boom"):
        train_tiny(store, data, run_id="f", epochs=2, save_period=1, report=report)
    listed = statuses(store)
    assert (listed["f"]["status"], listed["f"]["error"]) == (
        "failed",
        "RuntimeError: boom in epoch 2, see s3://host/log",
    )
    assert listed["k"]["status"] == "interrupted" and listed["k"]["error"] is None
    table = run_cli("runs", "--store", str(store), env={"COLUMNS": "250"}).stdout
    assert "interrupted" in table and "failed" in table and "RuntimeError: boom" in table
    # the failed run is the more recent one, yet `train --resume` continues the interrupted one
    proc = run_cli("train", "--resume", "--store", str(store), "--json")
    assert (last_json(proc)["run_id"], last_json(proc)["status"]) == ("k", "finished")
    refused = run_cli("train", "--resume", "--store", str(store), check=False)
    assert refused.returncode == 1
    assert refused.stderr.strip().splitlines()[-1] == (
        f"error: {store}: no interrupted run to resume (failed: f (resume one by id: artifactkit resume RUN_ID))"
    )
    # named by id, in --store as `view` takes it, a failed run resumes (from its epoch-1 checkpoint)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    proc = run_cli("resume", "f", "--store", str(store), "--json", cwd=elsewhere)
    assert (last_json(proc)["status"], last_json(proc)["epochs_completed"], last_json(proc)["error"]) == (
        "finished",
        2,
        None,
    )
    assert "at epoch 2/2" in proc.stderr


def test_two_resumes_at_once_exactly_one_proceeds(store):
    uri = str(store / "runs" / "k")
    procs = [start("resume", uri, "--epochs", "4", "--json") for _ in range(2)]
    outs = [(p.pid, *p.communicate(timeout=600), p.returncode) for p in procs]
    won = [o for o in outs if o[3] == 0]
    lost = [o for o in outs if o[3] != 0]
    assert len(won) == 1 and len(lost) == 1, outs
    assert json.loads(won[0][1].strip().splitlines()[-1])["status"] == "finished"
    line = lost[0][2].strip().splitlines()[-1]
    assert line.startswith(f"error: {uri} is held by host ") and f", pid {won[0][0]}, since " in line, line
    assert [m["epoch"] for m in runs.read_metrics(artifactkit.open_store(str(store)), "k")] == [1, 2, 3, 4]


def test_a_killed_holder_never_blocks_the_run(store):
    uri = str(store / "runs" / "k")
    holder = start("resume", uri, "--epochs", "100")  # far more than it will get to train
    wait_for(store / "runs" / "k" / "lease" / "1.json", holder, "the resume's lease")
    seen = statuses(store)["k"]
    assert (seen["status"], seen["holder"]["pid"]) == ("running", holder.pid)
    refused = run_cli("resume", uri, "--epochs", "3", check=False)
    assert f"is held by host {seen['holder']['host']}, pid {holder.pid}" in refused.stderr.strip().splitlines()[-1]
    assert holder.poll() is None, "the holder ended before it was killed"
    holder.send_signal(signal.SIGKILL)
    holder.communicate()
    assert statuses(store)["k"]["status"] == "interrupted"  # on its own machine: at once
    done = checkpoint.load(artifactkit.open_store(str(store)), "k-model:latest")["epoch"]
    proc = run_cli("resume", uri, "--epochs", str(done + 1), "--json")
    assert (last_json(proc)["status"], last_json(proc)["epochs_completed"]) == ("finished", done + 1)


def test_a_holder_on_another_machine_blocks_until_its_lease_expires(store):
    from artifactkit.lease import Lease

    s = artifactkit.open_store(str(store))
    held = Lease.claim(
        s, "k", "run k", ttl=20, holder={"host": "gpu-7", "pid": 4242, "machine": "another", "started": None}
    )
    assert statuses(store)["k"]["holder"] == {"host": "gpu-7", "pid": 4242, "since": held.record.since}
    refused = run_cli("resume", "k", "--store", str(store), check=False)
    assert f"is held by host gpu-7, pid 4242, since {held.record.since}" in refused.stderr.strip().splitlines()[-1]
    time.sleep(max(0.0, held.record.expires - time.time()) + 0.1)
    assert statuses(store)["k"]["status"] == "interrupted"
    assert last_json(run_cli("resume", "k", "--store", str(store), "--json"))["status"] == "finished"


def test_a_short_lease_from_the_environment_is_renewed_by_the_heartbeat(store):
    """ARTIFACTKIT_LEASE_SECONDS=3: the heartbeat renews every 0.75 s, so the run stays held
    through several lease lifetimes, and a second resume is refused meanwhile."""
    uri = str(store / "runs" / "k")
    env = {**os.environ, "ARTIFACTKIT_LEASE_SECONDS": "3"}
    holder = subprocess.Popen(
        [sys.executable, "-m", "artifactkit", "resume", uri, "--epochs", "100"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(store / "runs" / "k" / "metrics" / "000002.json", holder, "the resume's first epoch")
        time.sleep(7)  # more than two lease lifetimes
        assert holder.poll() is None, "the resume ended too soon for this test"
        held = statuses(store)["k"]
        assert (held["status"], held["holder"]["pid"]) == ("running", holder.pid)
        refused = run_cli("resume", uri, check=False)
        assert f"pid {holder.pid}" in refused.stderr.strip().splitlines()[-1]
    finally:
        holder.kill()
        holder.communicate()


def test_ls_lists_the_artifacts_of_a_store(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a.txt").write_text("one")
    store = str(tmp_path / "s")
    run_cli("log-dataset", str(tmp_path / "d"), "--store", store)
    (tmp_path / "d" / "b.txt").write_text("three")
    run_cli("log-dataset", str(tmp_path / "d"), "--store", store)
    run_cli("log-dataset", str(tmp_path / "d"), "--store", store, "--name", "model-ish", "--type", "model")
    listed = last_json(run_cli("ls", "--store", store, "--json"))["artifacts"]
    assert [(a["name"], a["type"], a["versions"], a["latest"], a["files"], a["bytes"]) for a in listed] == [
        ("d", "dataset", 2, "v1", 2, 8),
        ("model-ish", "model", 1, "v0", 2, 8),
    ]
    table = run_cli("ls", "--store", store, env={"COLUMNS": "250"}).stdout
    assert "d" in table and "model-ish" in table and "v1" in table and "8 B" in table
    missing = run_cli("ls", "--store", str(tmp_path / "nothing"), check=False)
    assert missing.returncode == 1 and "no artifactkit store there" in missing.stderr
