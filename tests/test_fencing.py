"""Fencing of run holders with real processes (issue 27): a training paused (SIGSTOP) right after
its epoch-end lease check, whose run is then resumed elsewhere and finished, writes nothing once
continued (SIGCONT): no run record, metrics, checkpoint, alias or table; it stops with one line.
On a local folder and on S3."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
from clirunner import run_cli, start_paused

import artifactkit
from artifactkit import runs

TTL = "2"  # seconds a lease lives without a heartbeat: the paused holder loses it quickly

HOLDER = """
import contextlib, os, signal, sys, threading
import artifactkit
from artifactkit.errors import ArtifactkitError
from artifactkit.run_keys import RunKeys

# The pause must not land while a thread of this process (the heartbeat's renew, the saver's
# fenced write) holds the run's flock (RunKeys.lease_lock): the resume elsewhere would wait on it and
# give up. So the flock is counted, and the pause waits until no thread holds it and lets none take it.
gate, held, pausing = threading.Condition(), [0], [False]
lease_lock = RunKeys.lease_lock

@contextlib.contextmanager
def counted_lease_lock(self, run_id):
    with gate:
        gate.wait_for(lambda: not pausing[0])
        held[0] += 1
    try:
        with lease_lock(self, run_id):
            yield
    finally:
        with gate:
            held[0] -= 1
            gate.notify_all()

RunKeys.lease_lock = counted_lease_lock

def report(event, details):
    if event == "warning":
        print("warning:", details["message"], file=sys.stderr)
    if event == "epoch" and details["epoch"] == 2:  # after its epoch-end lease check, holding no flock
        with gate:
            pausing[0] = True
            gate.wait_for(lambda: held[0] == 0)
        os.kill(os.getpid(), signal.SIGSTOP)
        with gate:
            pausing[0] = False
            gate.notify_all()

try:
    artifactkit.train(sys.argv[1], data=sys.argv[2], run_id="r", epochs=3, imgsz=64, batch=4, workers=0,
                      save_period=1, bbox_interval=1, report=report)
except ArtifactkitError as e:  # as the CLI does: one line
    print(f"error: {e}", file=sys.stderr)
    sys.exit(1)
"""


@pytest.fixture(scope="module")
def chess(tmp_path_factory) -> Path:
    from artifactkit.detector.chess import generate

    return generate(tmp_path_factory.mktemp("data") / "chess", n_train=8, n_val=4, n_heldout=2, imgsz=64).parent


def _records(store) -> dict[str, bytes]:
    """Every key a run holder writes (records, aliases, metrics, leases), with its bytes."""
    keys = [i.key for top in ("artifacts/", "runs/") for i in store.backend.list(top) if not i.key.endswith("/.fence")]
    return dict(store.backend.read_many(keys))


def _take_over_from_a_paused_holder(tmp_path, script: str, uri: str, chess, paused_at: str):
    """Start a trainer that pauses itself (SIGSTOP) at `paused_at`, let its lease expire, resume and
    finish the run elsewhere, then continue the paused one: it must stop with one "taken over" line.
    Returns the store and its records as the rightful holder left them."""
    holder = start_paused(tmp_path / "holder.py", script, [uri, str(chess)], paused_at, 300)
    try:
        time.sleep(float(TTL) + 1)  # its lease expires (it is paused: no heartbeat)
        resumed = run_cli("resume", f"{uri}/runs/r", "--workers", "0", check=False)
        assert resumed.returncode == 0, resumed.stderr
        store = artifactkit.open_store(uri)
        finished = runs.load_run(store, "r")
        assert (finished.status, finished.epochs_completed) == ("finished", 3)
        before = _records(store)
    finally:
        os.kill(holder.pid, signal.SIGCONT)
    _out, err = holder.communicate(timeout=300)
    assert holder.returncode == 1, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "taken over" in lines[0], err
    return store, before


@pytest.mark.parametrize("kind", ["local", "s3"])
def test_a_paused_holder_that_lost_its_run_writes_nothing(kind, tmp_path, request, chess, monkeypatch):
    monkeypatch.setenv("ARTIFACTKIT_LEASE_SECONDS", TTL)
    uri = str(tmp_path / "s") if kind == "local" else f"{request.getfixturevalue('s3_bucket')}/ak"
    store, before = _take_over_from_a_paused_holder(tmp_path, HOLDER, uri, chess, "epoch 2")
    assert _records(store) == before  # not one record, alias, metric, lease or table written
    latest = store.resolve("r-model:latest")
    assert latest.metadata["epochs_trained"] == 3
    assert artifactkit.verify(store).ok


# The child SIGSTOPs itself exactly between a fenced write's check and its PUT: s3fs's PUT is
# wrapped, and the first PUT of the run record after epoch 1 (the saver thread recording the epoch
# once its checkpoint committed) stops the process before the request goes out.
PAUSED_AT_PUT = """
import os, signal, sys
import s3fs.core
import artifactkit
from artifactkit.errors import ArtifactkitError

armed, put = [], s3fs.core.S3FileSystem._pipe_file

async def paused_put(self, path, data, *args, **kw):
    if armed and path.endswith("/runs/r/run.json"):
        armed.clear()
        os.kill(os.getpid(), signal.SIGSTOP)  # checked already; the PUT has not gone out
    return await put(self, path, data, *args, **kw)

s3fs.core.S3FileSystem._pipe_file = paused_put

def report(event, details):
    if event == "warning":
        print("warning:", details["message"], file=sys.stderr)
    if event == "epoch" and details["epoch"] == 1:
        armed.append(1)

try:
    artifactkit.train(sys.argv[1], data=sys.argv[2], run_id="r", epochs=3, imgsz=64, batch=4, workers=0,
                      save_period=1, bbox_interval=1, report=report)
except ArtifactkitError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(1)
"""


def test_on_s3_a_holder_paused_between_its_check_and_its_put_writes_nothing(tmp_path, request, chess, monkeypatch):
    monkeypatch.setenv("ARTIFACTKIT_LEASE_SECONDS", TTL)
    uri = f"{request.getfixturevalue('s3_bucket')}/ak"
    store, before = _take_over_from_a_paused_holder(tmp_path, PAUSED_AT_PUT, uri, chess, "the run record's PUT")
    assert _records(store) == before  # the PUT it was paused in was refused, and nothing came after
    assert runs.load_run(store, "r").status == "finished"
    assert store.resolve("r-model:latest").metadata["epochs_trained"] == 3
