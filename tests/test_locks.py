"""gc and writers (locks.py), on a local folder and on S3: gc with --grace 0 in a loop against a
log slowed on purpose never lets a version commit that references an object it deleted; a writer
that a gc judged gone commits nothing; locks of exited processes hold nothing; a gc lock is never
judged by time."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest
from clirunner import start_paused

import artifactkit
from artifactkit import lease as leases
from artifactkit.errors import StoreBusy
from artifactkit.locks import LockRecord
from artifactkit.maintenance import gc
from artifactkit.records import now_iso, to_json

FILES = 1100  # more than one batch of blobs (ingest._BATCH_FILES): the first is written long before the commit


def _uri(kind: str, tmp_path, request) -> str:
    return str(tmp_path / "s") if kind == "local" else f"{request.getfixturevalue('s3_bucket')}/ak"


def _open(uri: str):
    """pack=false on S3: each blob is its own object, visible (and deletable) as soon as it is written,
    where packs would hold the first batch in memory until the log's end."""
    return artifactkit.open_store(uri, {"pack": "false"} if uri.startswith("s3://") else None)


def _folder(path, n: int = FILES, tag: str = ""):
    path.mkdir(parents=True)
    for i in range(n):
        (path / f"f{i:05d}.txt").write_text(f"file {i} {tag}\n")
    return path


def _check_whole(uri: str, tmp_path, ref: str) -> None:
    store = artifactkit.open_store(uri)
    report = artifactkit.verify(store)
    assert report.ok, report.problems[:3]
    artifactkit.pull(store, ref, tmp_path / f"pulled-{ref.replace(':', '-')}")


@pytest.mark.parametrize("kind", ["local", "s3"])
def test_gc_in_a_loop_never_deletes_what_a_running_log_relies_on(kind, tmp_path, request):
    """Issue 27: gc --grace 0 run once the log's first batch of blobs was written deleted them, and
    the log committed a version missing 1,024 blobs. Here gc runs again and again inside the log."""
    uri = _uri(kind, tmp_path, request)
    folder = _folder(tmp_path / "ds")
    store, collector = _open(uri), _open(uri)
    calls, reports = [0], []

    def slowed(done, total) -> None:  # a progress callback: after the first batch, a gc every 25 files
        calls[0] += 1
        if calls[0] > 1024 and calls[0] % 25 == 0:
            reports.append(gc(collector, grace_seconds=0))

    result = store.log_folder(folder, name="ds", progress=slowed)
    assert reports and all(r.writers and r.deleted_objects == 0 for r in reports)
    _check_whole(uri, tmp_path, "ds:v0")
    after = gc(collector, grace_seconds=0)  # the log is done: gc runs, and the version keeps its blobs
    assert not after.writers
    assert result.record.label == "v0"
    _check_whole(uri, tmp_path, "ds:v0")


@pytest.mark.parametrize("kind", ["local", "s3"])
def test_a_gc_loop_in_another_thread_racing_slowed_logs(kind, tmp_path, request):
    """gc --grace 0 in a loop while three logs (each of new content, slowed by their progress
    callback) run; between logs it deletes what a deleted version left; every version stays whole."""
    uri = _uri(kind, tmp_path, request)
    store = _open(uri)
    stop, rounds, errors = threading.Event(), [], []

    def loop() -> None:
        collector = _open(uri)
        while not stop.is_set():
            try:
                rounds.append(gc(collector, grace_seconds=0))
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append(e)
                return

    thread = threading.Thread(target=loop)
    thread.start()
    try:
        for n in range(3):
            folder = _folder(tmp_path / f"ds{n}", 60, tag=str(n))
            store.log_folder(folder, name="ds", progress=lambda done, total: time.sleep(0.01))
            if n == 1:
                store.delete_version("ds", 0)  # its blobs are now gc's to take
        deadline = time.time() + 120
        while not any(r.deleted_objects for r in rounds) and time.time() < deadline and not errors:
            time.sleep(0.05)  # the loop goes on until a round with no writer has taken them
    finally:
        stop.set()
        thread.join()
    assert not errors, errors
    assert any(r.writers for r in rounds) and any(r.deleted_objects for r in rounds)
    for ref in ("ds:v1", "ds:v2"):
        _check_whole(uri, tmp_path, ref)


@pytest.mark.parametrize("kind", ["local", "s3"])
def test_a_writer_a_gc_judged_gone_commits_nothing(kind, tmp_path, request, monkeypatch):
    """A log paused past its lock's expiry (here: its lock made to look expired, as a paused process's
    would be) is marked broken by gc, whose deletions it then must not reference: it commits nothing."""
    monkeypatch.setenv("ARTIFACTKIT_LEASE_SECONDS", "3600")  # no heartbeat during the test
    uri = _uri(kind, tmp_path, request)
    folder = _folder(tmp_path / "ds")
    store, collector = _open(uri), _open(uri)
    calls, reports = [0], []

    def paused(done, total) -> None:
        calls[0] += 1
        if calls[0] == 1030:
            (token,) = [t for kind, t in collector.locks.lock_names() if kind == "log"]
            data, _ = collector.locks.read_lock("log", token)
            expired = LockRecord.model_validate_json(data).model_copy(update={"expires": time.time() - 1})
            collector.locks.write_lock("log", token, to_json(expired))
            reports.append(gc(collector, grace_seconds=0))

    with pytest.raises(StoreBusy, match="judged this process gone.*nothing was committed"):
        store.log_folder(folder, name="ds", progress=paused)
    assert reports[0].deleted_objects >= 1024 and not reports[0].writers
    assert "ds" not in store.artifact_names()
    assert store.locks.lock_names() == []  # its lock and the broken mark went with it
    assert artifactkit.verify(store).ok
    again = store.log_folder(folder, name="ds")  # run again: whole
    assert again.record.label == "v0"
    _check_whole(uri, tmp_path, "ds:v0")


def _exited_pid() -> int:
    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(child.stdout)


def _plant(store, kind: str, token: str, **holder) -> None:
    now = now_iso()
    record = LockRecord(
        kind=kind,
        owner=token,
        since=now,
        renewed=now,
        expires=time.time() + 600,
        **{**leases._this_process(), **holder},
    )
    store.locks.write_lock(kind, token, to_json(record))


def test_locks_of_exited_processes_hold_nothing_and_live_writers_hold_gc(tmp_path, cli):
    store = artifactkit.open_store(str(tmp_path / "s"))
    store.log_files({"a.txt": b"a"}, name="x")
    store.delete_version("x", 0)
    _plant(store, "log", "1" * 32, pid=_exited_pid(), started=None)
    _plant(store, "gc", "2" * 32, pid=_exited_pid(), started=None)
    report = gc(store, grace_seconds=0)  # the dead writer's lock is removed; the blob goes
    assert (report.writers, report.deleted_objects) == ([], 1)
    store.log_files({"b.txt": b"b"}, name="y")  # the dead gc's lock does not stop a writer
    assert store.locks.lock_names() == []

    store.delete_version("y", 0)
    _plant(store, "log", "3" * 32)  # a live writer (this process): gc deletes nothing, and says whose
    proc = cli("gc", "--grace", "0", "--store", str(tmp_path / "s"), "--json")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["deleted_objects"] == 0 and "pid" in out["writers"][0]
    assert (
        "deleted nothing: 1 writers may still run" in cli("gc", "--grace", "0", "--store", str(tmp_path / "s")).stdout
    )


def test_a_gc_lock_is_never_judged_by_time(tmp_path, cli):
    """A gc of another machine that stopped renewing may only be paused: a writer refuses, naming
    the lock to delete if that gc is gone (deleting objects is not something to guess about)."""
    store = artifactkit.open_store(str(tmp_path / "s"))
    token = "4" * 32
    now = now_iso()
    record = LockRecord(
        kind="gc",
        owner=token,
        since=now,
        renewed=now,
        expires=time.time() - 5,
        host="gpu-7",
        pid=4242,
        machine="another-machine",
        started=None,
    )
    store.locks.write_lock("gc", token, to_json(record))
    with pytest.raises(StoreBusy, match=f"host gpu-7.*delete locks/gc-{token}.json"):
        store.log_files({"a.txt": b"a"}, name="x")
    assert store.artifact_names() == [] and store.locks.lock_names() == [("gc", token)]
    store.locks.delete_locks([("gc", token)])
    assert store.log_files({"a.txt": b"a"}, name="x").created


PAUSED_LOG = """
import os, signal, sys
import artifactkit

calls = [0]

def pause_after_first_batch(done, total):
    calls[0] += 1
    if calls[0] == 1030:  # the first 1,024 blobs are written: pause, as a long log would sit here
        os.kill(os.getpid(), signal.SIGSTOP)

store = artifactkit.open_store(sys.argv[1], {"pack": "false"} if sys.argv[1].startswith("s3://") else None)
print(store.log_folder(sys.argv[2], name="ds", progress=pause_after_first_batch).record.label)
"""


@pytest.mark.parametrize("kind", ["local", "s3"])
def test_gc_from_another_process_defers_to_a_paused_log(kind, tmp_path, request, cli):
    """The issue's case with real processes: a log paused after its first batch of blobs, then
    `gc --grace 0` (the CLI, another process): it deletes nothing and says why; the log, continued,
    commits a whole version."""
    uri = _uri(kind, tmp_path, request)
    folder = _folder(tmp_path / "ds")
    log = start_paused(tmp_path / "log.py", PAUSED_LOG, [uri, str(folder)], "its pause after the first batch", 120)
    try:
        for _ in range(2):
            proc = cli("gc", "--grace", "0", "--store", uri, "--json")
            report = json.loads(proc.stdout.strip().splitlines()[-1])
            assert report["deleted_objects"] == 0 and len(report["writers"]) == 1, report
    finally:
        os.kill(log.pid, signal.SIGCONT)
    out, err = log.communicate(timeout=120)
    assert log.returncode == 0 and out.strip() == "v0", err
    _check_whole(uri, tmp_path, "ds:v0")
