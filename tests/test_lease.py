"""The lease that lets one process at a time hold a run: create-only claims on a local folder
and on S3, expiry, and a holder that stalled past its expiry finding the run taken over.
(Real processes holding and losing runs: tests/test_run_status.py.)"""

from __future__ import annotations

import json
import threading
import time

import pytest

import artifactkit
from artifactkit import lease as leases
from artifactkit.errors import InvalidInput, RunHeld
from artifactkit.lease import Lease

ELSEWHERE = {"host": "gpu-7", "pid": 4242, "machine": "another-machine", "started": None}


def _store(kind: str, tmp_path, request):
    if kind == "local":
        return artifactkit.open_store(str(tmp_path / "s"))
    return artifactkit.open_store(f"{request.getfixturevalue('s3_bucket')}/ak")


@pytest.mark.parametrize("kind", ["local", "s3"])
def test_of_many_simultaneous_claims_exactly_one_wins(kind, tmp_path, request):
    store = _store(kind, tmp_path, request)
    won, refused, go = [], [], threading.Barrier(6)

    def claim() -> None:
        go.wait()
        try:
            won.append(Lease.claim(store, "r1", "run r1", ttl=30))
        except RunHeld as e:
            refused.append(str(e))

    threads = [threading.Thread(target=claim) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(won) == 1 and len(refused) == 5, refused
    assert leases.current(store, "r1").owner == won[0].record.owner
    won[0].release()
    assert not leases.current(store, "r1").live()
    Lease.claim(store, "r1", "run r1", ttl=30)  # released: free at once
    assert store.runs.lease_generations("r1") == [1]  # older generations are not kept


def test_a_lease_elsewhere_blocks_until_it_expires_and_names_its_holder(tmp_path, monkeypatch):
    store = artifactkit.open_store(str(tmp_path / "s"))
    monkeypatch.setenv(leases.TTL_ENV, "1.5")
    Lease.claim(store, "r1", "run r1", holder=ELSEWHERE)
    with pytest.raises(RunHeld, match=r"run r1 is held by host gpu-7, pid 4242, since 20"):
        Lease.claim(store, "r1", "run r1")
    time.sleep(1.6)
    Lease.claim(store, "r1", "run r1")  # the holder never renewed: free


def test_a_process_of_this_machine_that_exited_holds_nothing(tmp_path):
    import subprocess
    import sys

    store = artifactkit.open_store(str(tmp_path / "s"))
    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    gone = {**leases._this_process(), "pid": int(child.stdout), "started": None}
    Lease.claim(store, "r1", "run r1", ttl=600, holder=gone)
    assert not leases.current(store, "r1").live()
    Lease.claim(store, "r1", "run r1", ttl=600)


def test_a_holder_that_stalled_past_its_expiry_finds_the_run_taken_over(tmp_path):
    store = artifactkit.open_store(str(tmp_path / "s"))
    stalled = Lease.claim(store, "r1", "run r1", ttl=0.5)
    time.sleep(0.6)  # no heartbeat: it expired
    newer = Lease.claim(store, "r1", "run r1", ttl=30, holder=ELSEWHERE)
    stalled.renew()
    with pytest.raises(RunHeld, match="taken over by host gpu-7, pid 4242"):
        stalled.check("run r1")
    stalled.release()  # writes nothing: the run is the new holder's
    assert leases.current(store, "r1") == newer.record and newer.record.live()


def test_the_heartbeat_keeps_a_lease_alive(tmp_path):
    store = artifactkit.open_store(str(tmp_path / "s"))
    held = Lease.claim(store, "r1", "run r1", ttl=0.8)
    beat = leases.Heartbeat(held).start()
    try:
        time.sleep(1.5)  # longer than the ttl
        assert leases.current(store, "r1").live()
        with pytest.raises(RunHeld):
            Lease.claim(store, "r1", "run r1", holder=ELSEWHERE)
    finally:
        beat.stop()
    held.release()


def test_a_bad_ttl_and_a_forged_lease_are_one_line_errors(tmp_path, monkeypatch):
    monkeypatch.setenv(leases.TTL_ENV, "soon")
    with pytest.raises(InvalidInput, match="ARTIFACTKIT_LEASE_SECONDS='soon'"):
        leases.lease_ttl()
    store = artifactkit.open_store(str(tmp_path / "s"))
    store.runs.write_lease("r1", 0, b'{"owner": "x", "host": "../../etc", "pid": -1}')
    with pytest.raises(InvalidInput, match="runs/r1/lease/0.json"):
        leases.current(store, "r1")


# -- fencing on S3: a holder paused between its check and its PUT (compare-and-swap, fencing.py) --
def _run_record(run_id: str):
    from artifactkit.records import now_iso
    from artifactkit.runs import RunRecord

    now = now_iso()
    return RunRecord(
        run_id=run_id, created=now, updated=now, config={}, model_artifact=f"{run_id}-model", total_epochs=3
    )


def _two_processes(s3_bucket):
    """Two independent openings of one S3 store (as two processes have): the first holds run r1
    with a short lease and has written its record, a metric and an alias."""
    from artifactkit import runs

    uri = f"{s3_bucket}/ak"
    mine, theirs = artifactkit.open_store(uri), artifactkit.open_store(uri)
    runs.create_run(mine, _run_record("r1"))
    old = Lease.claim(mine, "r1", "run r1", ttl=0.3)
    held = mine.fenced_by(old)
    runs.save_run(held, runs.load_run(mine, "r1").with_(epochs_completed=1))
    runs.write_epoch_metrics(held, "r1", 1, {"epoch": 1, "metrics": {}})
    held.log_files({"w.bin": b"epoch 1"}, name="r1-model", type="model", run_id="r1", aliases=("best",))
    return held, old, theirs


def _take_over(theirs):
    """What a resume elsewhere does once the lease expired: claim, fence (stamp), write."""
    from artifactkit import runs

    time.sleep(0.35)  # the paused holder's lease expired
    new = Lease.claim(theirs, "r1", "run r1", ttl=30, holder=ELSEWHERE)
    store = theirs.fenced_by(new)
    store.runs.take_over("r1", new.generation, ["r1-model", "r1-state", "r1-evaluation"])
    runs.save_run(store, runs.load_run(store, "r1").with_(status="finished", epochs_completed=3))
    runs.write_epoch_metrics(store, "r1", 2, {"epoch": 2, "metrics": {}})
    return store


def _pause_before_put(held, monkeypatch, key_end: str, then) -> list[str]:
    """Run then() once, the first time `held` is about to PUT (or DELETE) a key ending in key_end
    (after its fence check): exactly where a SIGSTOP would leave a holder."""
    backend, paused = held.backend, []
    for method in ("replace", "write", "delete"):
        original = getattr(backend, method)

        def put(key, *args, _original=original, **kw):
            if any(k.endswith(key_end) for k in ([key] if isinstance(key, str) else key)) and not paused:
                paused.append(key)
                then()
            return _original(key, *args, **kw)

        monkeypatch.setattr(backend, method, put, raising=False)
    return paused


@pytest.mark.parametrize("key_end", ["runs/r1/run.json", "metrics/000001.json", "metrics/000002.json", "aliases/best"])
def test_on_s3_a_holder_paused_between_check_and_put_writes_nothing_after_a_takeover(key_end, s3_bucket, monkeypatch):
    from artifactkit import runs

    held, _old, theirs = _two_processes(s3_bucket)
    state: dict = {}

    def takeover():
        state["store"] = _take_over(theirs)
        keys = [i.key for top in ("artifacts/", "runs/") for i in theirs.backend.list(top)]
        state["before"] = dict(theirs.backend.read_many(keys))

    paused = _pause_before_put(held, monkeypatch, key_end, takeover)
    with pytest.raises(RunHeld, match="taken over by host gpu-7, pid 4242"):
        if key_end.endswith("run.json"):
            runs.save_run(held, runs.load_run(held, "r1").with_(epochs_completed=2))
        elif key_end.startswith("metrics"):
            epoch = int(key_end[-11:-5])
            runs.write_epoch_metrics(held, "r1", epoch, {"epoch": epoch, "metrics": {"stale": 1.0}})
        else:
            held.set_alias("r1-model", "best", 0)
    assert paused, "the write never reached its PUT"
    keys = [i.key for top in ("artifacts/", "runs/") for i in theirs.backend.list(top)]
    assert dict(theirs.backend.read_many(keys)) == state["before"]  # not one key changed
    assert runs.load_run(theirs, "r1").status == "finished"


def test_on_s3_a_version_claimed_after_the_takeover_never_becomes_latest(s3_bucket, monkeypatch):
    held, _old, theirs = _two_processes(s3_bucket)
    taken = {}
    _pause_before_put(
        held, monkeypatch, "r1-model/versions/1.json", lambda: taken.setdefault("store", _take_over(theirs))
    )
    # The stale create lands (nothing else held that number), then the next write is refused.
    with pytest.raises(RunHeld, match="taken over"):
        held.log_files({"w.bin": b"stale epoch 2"}, name="r1-model", type="model", run_id="r1", aliases=("best",))
    assert theirs.version_numbers("r1-model") == [0, 1]
    assert theirs.record("r1-model", 1).generation == 0
    assert theirs.resolve("r1-model:latest").version == 0  # claimed by a holder that had lost the run
    assert [i.aliases for i in theirs.versions("r1-model")] == [("latest", "best"), ()]
    # the new holder's own claims are `latest` as usual
    record = taken["store"].log_files({"w.bin": b"epoch 3"}, name="r1-model", type="model", run_id="r1").record
    assert (record.version, record.generation) == (2, 1)
    assert theirs.resolve("r1-model:latest").version == 2


def test_a_forged_generation_stamp_is_a_one_line_error(s3_bucket):
    from artifactkit import runs

    held, _old, theirs = _two_processes(s3_bucket)
    theirs.backend.write("runs/r1/metrics/000001.json", b'{"epoch": 1, "generation": "../x"}')
    with pytest.raises(InvalidInput, match=r"runs/r1/metrics/000001.json: invalid generation"):
        runs.write_epoch_metrics(held, "r1", 1, {"epoch": 1})
    with pytest.raises(InvalidInput, match=r"runs/r1/metrics/000001.json: not a metrics object \(generation"):
        runs.read_metrics(theirs, "r1")
    theirs.backend.write("artifacts/r1-model/aliases/best", b"0 g-1\n")
    with pytest.raises(InvalidInput, match="aliases/best: not an alias"):
        theirs.aliases("r1-model")


def test_on_s3_a_metric_or_alias_a_holder_created_after_the_takeover_is_not_the_runs(s3_bucket, monkeypatch):
    from artifactkit import runs

    held, _old, theirs = _two_processes(s3_bucket)
    _pause_before_put(held, monkeypatch, "metrics/000005.json", lambda: _take_over(theirs))
    # Nothing held these keys, so each create lands (If-None-Match: * has nothing to refuse) ...
    runs.write_epoch_metrics(held, "r1", 5, {"epoch": 5, "metrics": {"stale": 1.0}})
    held.backend.write("artifacts/r1-model/aliases/epoch-5", b"0 g0\n")  # as its next write would land
    assert theirs.backend.exists(["runs/r1/metrics/000005.json", "artifacts/r1-model/aliases/epoch-5"])
    # ... but carries the generation the takeover fenced out: not the run's
    assert [m["epoch"] for m in runs.read_metrics(theirs, "r1")] == [1, 2]
    assert theirs.aliases("r1-model") == {"best": 0}


def test_on_s3_keep_last_keeps_the_latest_not_a_version_claimed_after_the_takeover(s3_bucket, monkeypatch):
    from artifactkit.lifecycle import prune

    held, _old, theirs = _two_processes(s3_bucket)
    _pause_before_put(held, monkeypatch, "r1-model/versions/1.json", lambda: _take_over(theirs))
    held.log_files({"w.bin": b"stale epoch 2"}, name="r1-model", type="model", run_id="r1")  # lands
    theirs.remove_alias("r1-model", "best")
    assert prune(theirs, "r1-model", keep_last=1).kept == ["v0", "v1"]  # v0 is latest; v1 the newest number
    assert theirs.resolve("r1-model:latest").version == 0


def test_a_forged_takeover_record_is_a_one_line_error(s3_bucket, monkeypatch):
    held, _old, theirs = _two_processes(s3_bucket)
    _pause_before_put(held, monkeypatch, "r1-model/versions/1.json", lambda: _take_over(theirs))
    held.log_files({"w.bin": b"stale epoch 2"}, name="r1-model", type="model", run_id="r1")
    data = theirs.backend.read("runs/r1/run.json").replace(b'"r1-model": 0', b'"../x": 0')
    theirs.backend.write("runs/r1/run.json", data)
    with pytest.raises(InvalidInput, match=r"runs/r1/run.json: invalid versions_at_takeover"):
        theirs.resolve("r1-model:latest")


def _snapshot(store) -> dict:
    keys = [i.key for top in ("artifacts/", "runs/") for i in store.backend.list(top)]
    return dict(store.backend.read_many(keys))


@pytest.mark.parametrize("key_end", ["runs/r1/run.json", "r1-model/versions/0.json"])
def test_on_s3_a_holder_paused_inside_a_prune_deletes_nothing_after_a_takeover(key_end, s3_bucket, monkeypatch):
    """Paused before announcing its delete: the announcement is refused, v0 stays. Paused after
    announcing, before its DELETE: the takeover finished the delete before it read anything, and
    the late DELETE changes nothing."""
    from artifactkit.lifecycle import prune

    held, _old, theirs = _two_processes(s3_bucket)
    for epoch in (2, 3):
        held.log_files({"w.bin": b"epoch %d" % epoch}, name="r1-model", type="model", run_id="r1")
    held.remove_alias("r1-model", "best")  # which would keep v0
    state: dict = {}

    def takeover():
        _take_over(theirs)
        state["versions"] = theirs.version_numbers("r1-model")
        state["pending"] = json.loads(theirs.backend.read("runs/r1/run.json")).get("pending_deletes", [])
        state["before"] = _snapshot(theirs)

    paused = _pause_before_put(held, monkeypatch, key_end, takeover)
    with pytest.raises(RunHeld, match="taken over by host gpu-7, pid 4242"):
        prune(held, "r1-model", keep_last=2)
    assert paused, "the prune never reached that request"
    if key_end.endswith("run.json"):  # the announcement came after the stamp: refused, nothing deleted
        assert state["versions"] == [0, 1, 2] and theirs.deleted_versions("r1-model") == []
    else:  # announced before the takeover, which deleted v0 (with its tombstone) before it read state
        assert state["versions"] == [1, 2] and theirs.deleted_versions("r1-model") == [0]
    assert state["pending"] == []
    assert _snapshot(theirs) == state["before"]  # not one key changed after the takeover


def test_on_s3_a_holder_paused_inside_an_alias_removal_removes_nothing_after_a_takeover(s3_bucket, monkeypatch):
    held, _old, theirs = _two_processes(s3_bucket)
    state: dict = {}

    def takeover():
        state["store"] = _take_over(theirs)
        state["before"] = _snapshot(theirs)

    paused = _pause_before_put(held, monkeypatch, "aliases/best", takeover)
    with pytest.raises(RunHeld, match="taken over by host gpu-7, pid 4242"):
        held.remove_alias("r1-model", "best")
    assert paused, "the removal never reached its request"
    assert _snapshot(theirs) == state["before"]
    assert theirs.aliases("r1-model") == {"best": 0}
    state["store"].remove_alias("r1-model", "best")  # by the run's holder: a stamped "deleted" body
    assert theirs.aliases("r1-model") == {} and theirs.backend.read("artifacts/r1-model/aliases/best") == b"- g1\n"


def test_a_forged_pending_delete_is_a_one_line_error(s3_bucket):
    from artifactkit import runs

    _held, _old, theirs = _two_processes(s3_bucket)
    record = json.loads(theirs.backend.read("runs/r1/run.json"))
    theirs.backend.write("runs/r1/run.json", json.dumps({**record, "pending_deletes": ["../x:v0"]}).encode())
    with pytest.raises(InvalidInput, match=r"runs/r1/run.json.*pending_deletes"):
        runs.load_run(theirs, "r1")
    time.sleep(0.35)  # the holder's lease expired
    store = theirs.fenced_by(Lease.claim(theirs, "r1", "run r1", ttl=30, holder=ELSEWHERE))
    artifacts = ["r1-model", "r1-state", "r1-evaluation"]
    with pytest.raises(InvalidInput, match=r"runs/r1/run.json: invalid pending_deletes"):
        store.runs.take_over("r1", 1, artifacts)
    # well formed, but a version of another run's artifact: a takeover deletes nothing of it
    theirs.log_files({"w.bin": b"theirs"}, name="other-model", type="model")
    theirs.backend.write("runs/r1/run.json", json.dumps({**record, "pending_deletes": ["other-model:v0"]}).encode())
    with pytest.raises(InvalidInput, match=r"runs/r1/run.json: pending_deletes names other-model:v0, not an artifact"):
        store.runs.take_over("r1", 1, artifacts)
    assert theirs.version_numbers("other-model") == [0]


@pytest.mark.parametrize("method", ["renew", "release"])
def test_on_s3_a_lease_write_paused_before_its_put_never_brings_back_a_lost_generation(method, s3_bucket, monkeypatch):
    """The heartbeat's renewal (or the release) checks for a newer generation, then PUTs its own: a
    takeover in between deletes that generation, and the PUT must not bring it back."""
    _held, old, theirs = _two_processes(s3_bucket)
    _pause_before_put(old.store, monkeypatch, "lease/0.json", lambda: _take_over(theirs))
    getattr(old, method)()
    assert theirs.runs.lease_generations("r1") == [1]
    with pytest.raises(RunHeld, match="taken over"):
        old.check("run r1")
