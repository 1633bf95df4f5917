"""Training under torchrun, as a user runs it: `python -m torch.distributed.run --nproc-per-node 2
-m artifactkit train|resume ...` in subprocesses, on CPU with gloo. The run finishes with one
checkpoint per save period (rank 0 alone writes); a job SIGKILLed after its first checkpoint
resumes under torchrun and ends bit-identical to one never interrupted; a rank that dies ends the
job with an error naming it, and the store keeps the last good checkpoint."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from clirunner import assert_bit_identical_twins

import artifactkit
from artifactkit import checkpoint, runs

pytestmark = [
    pytest.mark.skipif(
        not (torch.distributed.is_available() and torch.distributed.is_gloo_available()),
        reason="torch built without gloo",
    ),
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="kills and /proc checks are Linux's"),
]

TRAIN = ["--epochs", "2", "--imgsz", "64", "--batch", "4", "--save-period", "1", "--workers", "0", "--device", "cpu"]
LIMIT_S = 240  # per job; a job that runs longer has hung

# Test-only entry point: the CLI, except that the rank named by AK_TEST_DIE_RANK SIGKILLs itself
# as soon as the file AK_TEST_DIE_AFTER exists (a rank lost mid-run, e.g. to the OOM killer).
DYING_RANK = """
import os, runpy, signal, threading, time
from pathlib import Path
if os.environ["RANK"] == os.environ["AK_TEST_DIE_RANK"]:
    marker = Path(os.environ["AK_TEST_DIE_AFTER"])
    def die():
        while not marker.exists():
            time.sleep(0.02)
        os.kill(os.getpid(), signal.SIGKILL)
    threading.Thread(target=die, daemon=True).start()
runpy.run_module("artifactkit", run_name="__main__", alter_sys=True)
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(*args: str, entry: tuple[str, ...] = ("-m", "artifactkit")) -> list[str]:
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc-per-node",
        "2",
        "--master-port",
        str(free_port()),
        *entry,
        *args,
    ]


class Job:
    """A torchrun job in a session of its own, its output in files (a pipe nobody reads could
    fill up and stall it)."""

    def __init__(self, cmd: list[str], folder: Path, env: dict | None = None):
        folder.mkdir(parents=True, exist_ok=True)
        self.out, self.err = folder / "stdout", folder / "stderr"
        with open(self.out, "w") as out, open(self.err, "w") as err:
            self.proc = subprocess.Popen(
                cmd, stdout=out, stderr=err, env={**os.environ, **(env or {})}, start_new_session=True
            )

    def wait(self) -> tuple[int, str, str]:
        try:
            self.proc.wait(timeout=LIMIT_S)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            raise AssertionError(f"torchrun job hung for {LIMIT_S} s:\n{self.err.read_text()[-4000:]}") from None
        return self.proc.returncode, self.out.read_text(), self.err.read_text()

    def wait_for(self, marker: Path) -> None:
        deadline = time.time() + LIMIT_S
        while not marker.exists():
            if self.proc.poll() is not None:
                raise AssertionError(f"job ended before {marker.name} appeared:\n{self.err.read_text()[-4000:]}")
            if time.time() > deadline:
                os.killpg(self.proc.pid, signal.SIGKILL)
                raise AssertionError(f"no {marker} within {LIMIT_S} s")
            time.sleep(0.05)


def run_job(cmd: list[str], folder: Path, env: dict | None = None) -> tuple[int, str, str]:
    return Job(cmd, folder, env).wait()


def children(pid: int) -> list[int]:
    """Live processes whose parent is pid (torchrun's workers)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            state, parent = stat.read_text().rsplit(")", 1)[1].split()[:2]
        except (OSError, IndexError):
            continue
        if int(parent) == pid and state != "Z":
            found.append(int(stat.parent.name))
    return found


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict:
    """Tiny chess data, a store, and one uninterrupted 2-process run `straight` in it."""
    from artifactkit.detector.chess import generate

    root = tmp_path_factory.mktemp("ddp")
    data = generate(root / "chess", n_train=8, n_val=4, n_heldout=2, imgsz=64).parent
    store = root / "store"
    env = {"ARTIFACTKIT_CACHE_DIR": str(root / "cache")}
    result = run_job(
        torchrun("train", "--data", str(data), *TRAIN, "--store", str(store), "--run-id", "straight", "--json"),
        root / "straight",
        env,
    )
    return {"root": root, "data": data, "store": store, "env": env, "straight": result}


def test_two_process_run_finishes_with_one_checkpoint_per_period(world):
    code, out, err = world["straight"]
    assert code == 0, err[-4000:]
    lines = out.strip().splitlines()
    assert len(lines) == 1, out  # rank 0 alone speaks for the job
    assert json.loads(lines[0])["status"] == "finished"
    assert err.count("run straight on chess:") == 1
    store = artifactkit.open_store(str(world["store"]))
    assert store.version_numbers("straight-model") == [0, 1]  # no duplicates from rank 1
    assert store.version_numbers("straight-evaluation") == [0, 1]
    assert [m["epoch"] for m in runs.read_metrics(store, "straight")] == [1, 2]
    record = runs.load_run(store, "straight")
    assert (record.status, record.epochs_completed) == ("finished", 2)
    assert artifactkit.verify(store).ok


def test_killed_job_resumes_under_torchrun_bit_identical(world):
    store, root = world["store"], world["root"]
    job = Job(
        torchrun("train", "--data", str(world["data"]), *TRAIN, "--store", str(store), "--run-id", "killed"),
        root / "killed",
        world["env"],
    )
    job.wait_for(store / "artifacts" / "killed-model" / "versions" / "0.json")
    workers = children(job.proc.pid)
    assert len(workers) == 2
    os.killpg(job.proc.pid, signal.SIGKILL)  # torchrun and its group; the workers have sessions of their own
    job.proc.wait()
    deadline = time.time() + 30
    while any(alive(pid) for pid in workers) and time.time() < deadline:
        time.sleep(0.05)
    assert not any(alive(pid) for pid in workers), "workers outlived torchrun"

    code, out, err = run_job(
        torchrun("resume", str(store / "runs" / "killed"), "--json"), root / "resume", world["env"]
    )
    assert code == 0, err[-4000:]
    assert json.loads(out.strip().splitlines()[-1])["status"] == "finished"
    assert "resuming run killed at epoch 2/2" in err
    assert_bit_identical_twins(store, "straight", "killed", epochs=2)


def test_a_rank_that_dies_fails_the_job_naming_it(world, tmp_path):
    script = tmp_path / "dying_rank.py"
    script.write_text(DYING_RANK)
    store = tmp_path / "store"
    marker = store / "artifacts" / "dies-model" / "versions" / "0.json"
    env = {**world["env"], "AK_TEST_DIE_RANK": "1", "AK_TEST_DIE_AFTER": str(marker)}
    code, out, err = run_job(
        torchrun(
            "train",
            "--data",
            str(world["data"]),
            *TRAIN,
            "--epochs",
            "3",
            "--store",
            str(store),
            "--run-id",
            "dies",
            entry=(str(script),),
        ),
        tmp_path / "job",
        env,
    )
    assert code != 0
    assert re.search(r"rank\s*:\s*1 \(local_rank: 1\)\s+exitcode\s*:\s*-9", err), err[-4000:]
    s = artifactkit.open_store(str(store))
    assert checkpoint.load(s, "dies-model:latest")["epoch"] >= 1  # the last good checkpoint
    assert runs.load_run(s, "dies").status != "finished"
    assert artifactkit.verify(s).ok


def test_batch_must_split_over_the_processes(world, tmp_path):
    store = tmp_path / "store"
    args = [*TRAIN, "--batch", "5"]
    code, _, err = run_job(
        torchrun("train", "--data", str(world["data"]), *args, "--store", str(store)), tmp_path / "job", world["env"]
    )
    assert code != 0
    assert re.search(r"error: rank 0: .*--batch.*5.*multiple of 2", err), err[-4000:]
    assert "Connection closed" not in err and "[rank1]" not in err  # rank 1 stops quietly, told by rank 0
    assert not (store / "runs").exists() or not any((store / "runs").iterdir())


# ---------------------------------------------------------------- the helpers, in-process


def test_world_from_torchrun_environment():
    from artifactkit.detector.distributed import World
    from artifactkit.errors import InvalidInput

    assert World.from_env({}) == World() and not World().distributed
    env = {"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2"}
    world = World.from_env(env)
    assert (world.rank, world.size, world.local_rank, world.local_size, world.is_main) == (3, 4, 1, 2, False)
    with pytest.raises(InvalidInput, match="LOCAL_RANK"):
        World.from_env({**env, "LOCAL_RANK": "x"})


def test_what_each_rank_is_given():
    from artifactkit.detector import distributed
    from artifactkit.errors import InvalidInput

    two = distributed.World(rank=1, size=2, local_rank=1, local_size=2)
    assert distributed.rank_batch(16, two) == 8
    with pytest.raises(InvalidInput, match="--batch"):
        distributed.rank_batch(5, two)
    assert distributed.rank_device(torch.device("cuda"), two) == torch.device("cuda", 1)
    assert distributed.rank_device(torch.device("cpu"), two) == torch.device("cpu")
    with pytest.raises(InvalidInput, match="--device cuda"):
        distributed.rank_device(torch.device("cuda", 0), two)
    assert distributed.rank_seed(7, 0) == 7 and distributed.rank_seed(7, 1) != distributed.rank_seed(7, 2)
    with pytest.raises(InvalidInput, match="--sync-bn"):
        distributed.sync_batchnorm(torch.nn.BatchNorm2d(3), torch.device("cpu"))


def test_sigterm_stops_every_rank_at_one_batch_and_the_job_resumes_bit_identical(world):
    """torchrun passes SIGTERM on to its workers; the ranks agree on one batch boundary (a flag
    all-reduced per batch), rank 0 saves there, and a resume ends where the uninterrupted run did."""
    store, root = world["store"], world["root"]
    job = Job(
        torchrun("train", "--data", str(world["data"]), *TRAIN, "--store", str(store), "--run-id", "termed"),
        root / "termed",
        world["env"],
    )
    job.wait_for(store / "artifacts" / "termed-model" / "versions" / "0.json")
    job.proc.send_signal(signal.SIGTERM)
    code, _, err = job.wait()
    assert code != 0
    assert err.count("interrupted at epoch") == 1, err[-4000:]  # rank 0 alone says where it saved
    s = artifactkit.open_store(str(store))
    assert runs.observe(s, runs.load_run(s, "termed")).status == "interrupted"
    code, out, err = run_job(
        torchrun("resume", str(store / "runs" / "termed"), "--json"), root / "termed-resume", world["env"]
    )
    assert code == 0, err[-4000:]
    assert_bit_identical_twins(store, "straight", "termed", epochs=2)
