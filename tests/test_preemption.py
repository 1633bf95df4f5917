"""Preemptible by design, with real processes and real signals: a stop (SIGTERM, SIGINT, SIGUSR1)
saves where training stands and prints one line; a checkpoint from inside an epoch resumes
bit-exact; `train --run-id` re-run after a preemption continues the run, and says so when it
finished; a run stopped before its first checkpoint starts again from epoch 1."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from clirunner import assert_bit_identical_twins, run_cli

import artifactkit
from artifactkit import runs
from artifactkit.lifecycle import FULL_STATE

# 12 images at batch 2: 6 batches an epoch, and (nominal batch 16) gradients pending across all of
# them, so a mid-epoch checkpoint must carry them.
TRAIN = ["--epochs", "2", "--imgsz", "64", "--batch", "2", "--workers", "0"]


@pytest.fixture(scope="module")
def straight(tmp_path_factory) -> tuple[Path, Path]:
    """(chess data, store holding the uninterrupted run `straight`)."""
    from artifactkit.detector.chess import generate

    root = tmp_path_factory.mktemp("preempt")
    data = generate(root / "chess", n_train=12, n_val=4, n_heldout=2, imgsz=64).parent
    store = root / "store"
    run_cli("train", "--data", str(data), *TRAIN, "--store", str(store), "--run-id", "straight", "--save-period", "5")
    return data, store


def stop_after_first_batch(args: list[str], signum: int) -> tuple[subprocess.CompletedProcess, float]:
    """Run `artifactkit train`, send `signum` once it reports its first batch; (result, seconds
    from the signal to its exit)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "artifactkit", "train", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    seen = []
    deadline = time.time() + 240
    for line in proc.stderr:
        seen.append(line)
        if re.search(r"batch 1/\d+", line):
            break
        assert time.time() < deadline, "no batch within 240 s"
    else:
        raise AssertionError(f"train ended before its first batch: {''.join(seen)}")
    sent = time.monotonic()
    proc.send_signal(signum)
    rest = proc.stderr.read()
    out = proc.stdout.read()
    code = proc.wait()
    return subprocess.CompletedProcess(proc.args, code, out, "".join(seen) + rest), time.monotonic() - sent


def test_sigterm_saves_prints_one_line_and_the_same_train_line_finishes_it_bit_exact(straight):
    data, store = straight
    line = ["--data", str(data), *TRAIN, "--store", str(store), "--run-id", "preempted"]
    proc, _ = stop_after_first_batch(line, signal.SIGTERM)
    assert proc.returncode == 128 + signal.SIGTERM, proc.stderr
    assert "SIGTERM: saving at the next batch boundary" in proc.stderr and "a second signal" in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    uri = f"{store}/runs/preempted"
    match = re.fullmatch(
        rf"interrupted at epoch (\d), batch (\d)/6: resume with artifactkit resume {re.escape(uri)}", last
    )
    assert match, proc.stderr
    s = artifactkit.open_store(str(store))
    assert runs.observe(s, runs.load_run(s, "preempted")).status == "interrupted"
    latest = s.resolve("preempted-model:latest")
    epoch, batch = int(match[1]), int(match[2])
    assert (latest.metadata["epochs_trained"], latest.metadata.get("batch") or 6) == (epoch - 1, batch)
    # the scheduler re-runs the very same line: it continues the run where the stop saved it
    again = run_cli("train", *line)
    assert f"resuming run preempted at epoch {epoch}/2" in again.stderr
    assert again.stdout.strip() == "run preempted finished: 2/2 epochs"
    assert_bit_identical_twins(store, "straight", "preempted", epochs=2)
    metrics = {m["epoch"]: m["metrics"] for m in runs.read_metrics(s, "preempted")}
    for row in runs.read_metrics(s, "straight"):  # the epoch's row is the uninterrupted one's (but for times)
        assert {k: v for k, v in metrics[row["epoch"]].items() if not k.startswith(("time/", "speed/"))} == {
            k: v for k, v in row["metrics"].items() if not k.startswith(("time/", "speed/"))
        }
    # and once more after it finished: one line, exit 0, nothing trained
    versions = s.version_numbers("preempted-model")
    done = run_cli("train", *line)
    assert done.stdout.strip() == "run preempted finished: 2/2 epochs (already: nothing to do)"
    assert s.version_numbers("preempted-model") == versions
    # killed between its last checkpoint and recording the end: the same line records it finished
    runs.save_run(s, runs.load_run(s, "preempted").with_(status="running"))
    done = run_cli("train", *line)
    assert done.stdout.strip() == "run preempted finished: 2/2 epochs (already: nothing to do)"
    # a longer run on the same line extends it, without restarting the learning-rate schedule
    longer = run_cli("train", *line, "--epochs", "3")
    assert "epochs 2 -> 3: the learning rate goes on from" in longer.stderr and "does not restart" in longer.stderr
    assert longer.stdout.strip() == "run preempted finished: 3/3 epochs"


def _train_with_workers(data, store, run_id: str, *options: str, **popen) -> subprocess.Popen:
    """`artifactkit train` with two data-loader workers, started in the background."""
    command = [sys.executable, "-m", "artifactkit", "train", "--data", str(data), *TRAIN, "--workers", "2"]
    return subprocess.Popen([*command, *options, "--store", str(store), "--run-id", run_id], **popen)


def test_a_mid_epoch_checkpoint_resumes_bit_exact_after_sigkill(straight, tmp_path):
    """--save-every saves inside epochs; a SIGKILL after one (with loader workers) loses nothing,
    resumed without workers and without the GPU the run records."""
    data, store = straight
    marker = store / "artifacts" / "midway-model" / "versions" / "2.json"
    proc = _train_with_workers(
        data,
        store,
        "midway",
        "--save-every",
        "0.001",
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.time() + 240
    while not marker.exists():
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.time() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    s = artifactkit.open_store(str(store))
    assert s.resolve("midway-model:latest").metadata["batch"] > 0  # inside an epoch
    # on "another machine": no GPU where the run claims one, no loader workers
    from artifactkit import checkpoint

    latest = s.resolve("midway-model:latest")
    state = checkpoint.load_full(s, "midway-model", "midway-state", latest)  # thin history: the whole state
    state["config"]["device"] = "cuda:0"
    metadata = {k: v for k, v in latest.metadata.items() if k != FULL_STATE}  # a checkpoint that holds it all
    checkpoint.save(s, "midway-model", state, metadata=metadata)
    resumed = run_cli("resume", f"{store}/runs/midway", "--workers", "0", env={"CUDA_VISIBLE_DEVICES": ""})
    assert re.search(r"resuming run midway at epoch 1/2, after batch \d/6", resumed.stderr), resumed.stderr
    assert "trained on cuda:0, which this machine lacks" in resumed.stderr
    assert_bit_identical_twins(store, "straight", "midway", epochs=2)


def test_best_is_kept_whatever_the_save_period(straight):
    """--save-period 5 on a 2-epoch run saved epoch 2 only; epoch 1 was the best (fitness >= all
    before it) and is kept too."""
    _, store = straight
    s = artifactkit.open_store(str(store))
    aliases = s.aliases("straight-model")
    assert "epoch-1" in aliases and "epoch-2" in aliases
    best = s.record("straight-model", aliases["best"]).metadata
    assert best["fitness"] == max(
        s.record("straight-model", n).metadata["fitness"] for n in s.version_numbers("straight-model")
    )


def test_a_run_stopped_before_its_first_checkpoint_starts_again(straight, tmp_path):
    """The trap: no checkpoint, so `resume` said 'no checkpoint yet' and `train --run-id` 'already
    exists'. Both now start it again from epoch 1 with its recorded config."""
    data, store = straight
    s = artifactkit.open_store(str(store))
    record = runs.load_run(s, "straight")
    for run_id in ("early", "early2"):
        runs.save_run(
            s,
            record.model_copy(
                update={
                    "run_id": run_id,
                    "model_artifact": f"{run_id}-model",
                    "status": "interrupted",
                    "epochs_completed": 0,
                }
            ),
        )
    proc = run_cli("resume", f"{store}/runs/early", "--epochs", "1")
    assert "has no checkpoint yet: starting it again from epoch 1" in proc.stderr
    assert proc.stdout.strip() == "run early finished: 1/1 epochs"
    proc = run_cli("train", "--data", str(data), *TRAIN, "--epochs", "1", "--store", str(store), "--run-id", "early2")
    assert "resuming run early2 at epoch 1/1" in proc.stderr
    assert proc.stdout.strip() == "run early2 finished: 1/1 epochs"


def check_error(proc, *fragments):
    assert proc.returncode == 1, (proc.returncode, proc.stderr)
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: "), proc.stderr
    for fragment in fragments:
        assert fragment in last, (fragment, last)


def test_train_run_id_refuses_another_config_and_resume_another_batch(straight):
    data, store = straight
    check_error(
        run_cli(
            "train",
            "--data",
            str(data),
            *TRAIN,
            "--set",
            "lr0=0.02",
            "--store",
            str(store),
            "--run-id",
            "straight",
            check=False,
        ),
        "runs/straight exists with lr0=0.01 (given 0.02)",
        "a run keeps its config",
    )
    check_error(
        run_cli("resume", f"{store}/runs/straight", "--epochs", "3", "--batch", "4", check=False),
        "--batch 4: the run trains at batch 2",
        "data order",
    )


def test_a_run_uri_means_its_best_checkpoint_and_latest_on_request(straight, tmp_path):
    """val, export and predict given a run take `best` (Ultralytics' best.pt) and say which version."""
    from artifactkit import checkpoint

    data, store = straight
    s = artifactkit.open_store(str(store))
    runs.save_run(s, runs.load_run(s, "straight").model_copy(update={"run_id": "twin", "model_artifact": "twin-model"}))
    state = checkpoint.load(s, "straight-model:best")
    metadata = s.resolve("straight-model:best").metadata
    best = checkpoint.save(s, "twin-model", state, aliases=("best",), metadata=metadata).record
    latest = checkpoint.save(s, "twin-model", state, metadata={**metadata, "fitness": -1.0}).record  # a worse latest
    uri = f"{store}/runs/twin"
    proc = run_cli("export", uri, str(tmp_path / "w.pt"))
    assert f"twin-model:{best.label} (best))" in proc.stdout
    proc = run_cli("export", f"{uri}:latest", str(tmp_path / "w.pt"))
    assert f"twin-model:{latest.label} (latest))" in proc.stdout
    image = next((data / "images" / "val").iterdir())
    proc = run_cli("predict", str(image), "--weights", uri, "--out", str(tmp_path / "p.json"))
    assert f"weights: {s.uri}: twin-model:{best.label} (best)" in proc.stderr
    proc = run_cli("val", "--weights", f"{uri}:latest", "--data", str(data), "--imgsz", "64")
    assert f"weights: {s.uri}: twin-model:{latest.label} (latest)" in proc.stderr


def test_a_stop_that_cannot_save_within_its_grace_exits_and_keeps_the_run(straight):
    """--stop-grace bounds a stop: past it the process exits without the save, and says so; the
    run is interrupted, resumable from its last checkpoint (here: none, so from epoch 1)."""
    data, store = straight
    proc, seconds = stop_after_first_batch(
        ["--data", str(data), *TRAIN, "--store", str(store), "--run-id", "hasty", "--stop-grace", "0.001"],
        signal.SIGUSR1,
    )
    assert proc.returncode == 128 + signal.SIGUSR1, proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (
        "warning: SIGUSR1: no checkpoint within --stop-grace 0.001 s: exiting without it; "
        "the run resumes from its last checkpoint"
    )
    s = artifactkit.open_store(str(store))
    assert runs.observe(s, runs.load_run(s, "hasty")).status == "interrupted"


def test_ctrl_c_in_a_terminal_stops_cleanly_with_loader_workers(straight):
    """A terminal's Ctrl-C reaches the whole process group, data-loader workers included: they
    ignore it, so the trainer still reaches its batch boundary and saves."""
    data, store = straight
    proc = _train_with_workers(
        data,
        store,
        "ctrl-c",
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if re.search(r"batch 1/\d+", line):
            break
    else:
        raise AssertionError("".join(seen))
    os.killpg(proc.pid, signal.SIGINT)  # what the terminal does
    rest = proc.stderr.read()
    assert proc.wait() == 128 + signal.SIGINT, rest
    assert re.fullmatch(
        r"interrupted at epoch 1, batch \d/6: resume with artifactkit resume .*/runs/ctrl-c",
        rest.strip().splitlines()[-1],
    ), rest
