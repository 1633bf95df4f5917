"""The lease that lets one process at a time hold a run: create-only claims on a local folder
and on S3, expiry, and a holder that stalled past its expiry finding the run taken over.
(Real processes holding and losing runs: tests/test_run_status.py.)"""

from __future__ import annotations

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
    assert store.lease_generations("r1") == [1]  # older generations are not kept


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
    store.write_lease("r1", 0, b'{"owner": "x", "host": "../../etc", "pid": -1}')
    with pytest.raises(InvalidInput, match="runs/r1/lease/0.json"):
        leases.current(store, "r1")
