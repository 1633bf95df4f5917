"""Crash safety with real SIGKILLs: a log killed at any point leaves a store that verifies and
shows no half version; re-running it finishes and uploads only what is missing. Concurrent
writers get distinct versions."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from test_store import make_folder

import artifactkit

# Runs a log in a child process whose backend kills the process (SIGKILL, no cleanup) at a chosen
# point: after the k-th blob batch, before the manifest (or trees), or after the version record's temp file
# is written but before it is linked into place.
CHILD = textwrap.dedent(
    """
    import os, signal, sys
    import artifactkit.backends.local as local
    import artifactkit.ingest as ingest
    point, store, folder = sys.argv[1], sys.argv[2], sys.argv[3]
    ingest._BATCH_FILES = 4
    die = lambda: os.kill(os.getpid(), signal.SIGKILL)
    calls = {"n": 0}
    real_many, real_write, real_link = local.LocalBackend.write_many, local.LocalBackend.write, os.link
    def write_many(self, items):
        calls["n"] += 1
        if point == "manifest" and any(k.startswith("trees/") for k, _ in items):
            die()  # format 2: a version's metadata is its trees
        if point == "blobs" and calls["n"] == 2:
            real_many(self, items[:1]); die()
        real_many(self, items)
    def write(self, key, data, *, create_only=False):
        if point == "manifest" and key.startswith("manifests/"):
            die()
        if point == "record" and key.startswith("artifacts/"):
            os.link = lambda *a: die()
        return real_write(self, key, data, create_only=create_only)
    local.LocalBackend.write_many, local.LocalBackend.write = write_many, write
    store_obj = artifactkit.open_store(store)
    store_obj.log_folder(folder)
    """
)


@pytest.mark.parametrize("point", ["blobs", "manifest", "record"])
def test_kill_during_log_then_rerun(tmp_path, point):
    import artifactkit  # noqa: F401  (the child imports it too)

    data = make_folder(tmp_path / "d", n=8)
    store_dir = tmp_path / "s"
    script = tmp_path / "child.py"
    script.write_text("import artifactkit\n" + CHILD)
    proc = subprocess.run([sys.executable, str(script), point, str(store_dir), str(data)], capture_output=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()
    store = artifactkit.open_store(str(store_dir))
    assert artifactkit.verify(store).ok
    assert store.version_numbers("d") == []  # no half version is visible
    blobs_before = sum(1 for _ in store.backend.list("objects/") if "/.tmp-" not in _.key)
    result = store.log_folder(data)
    assert result.record.label == "v0"
    assert result.uploaded_files == 16 - blobs_before  # only what was missing
    assert artifactkit.verify(store).ok


def test_random_kills_never_leave_a_half_version(tmp_path):
    data = make_folder(tmp_path / "d", n=300, size=20_000)
    store_dir = tmp_path / "s"
    for delay in (0.15, 0.3, 0.45, 0.6, 0.8):
        proc = subprocess.Popen(
            [sys.executable, "-m", "artifactkit", "log-dataset", str(data), "--store", str(store_dir)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        store = artifactkit.open_store(str(store_dir))
        assert artifactkit.verify(store).ok
        for n in store.version_numbers("d"):
            assert store.manifest(store.record("d", n)).entries  # any visible version is whole
    final = artifactkit.open_store(str(store_dir)).log_folder(data)
    assert final.record.files == 600 and artifactkit.verify(artifactkit.open_store(str(store_dir))).ok


def test_concurrent_writers_get_distinct_versions(tmp_path):
    store_dir = tmp_path / "s"
    folders = [make_folder(tmp_path / f"w{i}" / "d", n=20) for i in range(4)]
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "artifactkit", "log-dataset", str(f), "--store", str(store_dir), "--json"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for f in folders
    ]
    outs = [p.communicate() for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    versions = sorted(json.loads(o.strip().splitlines()[-1])["version"] for o, _ in outs)
    assert versions == ["v0", "v1", "v2", "v3"]
    store = artifactkit.open_store(str(store_dir))
    assert store.version_numbers("d") == [0, 1, 2, 3] and artifactkit.verify(store).ok
