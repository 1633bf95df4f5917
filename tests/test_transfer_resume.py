"""Transfers survive a SIGKILL in the middle, on S3 (a real S3 API server): a pull run again keeps
the complete files (checked against their digests) and fetches only the rest; a push or a log run
again sends only what the store still lacks. The kill is a real SIGKILL of a child process at a
chosen point (after k files), so the test does not depend on timing. On S3 small blobs travel in
packs (packs.py): what a killed upload keeps is its packs sent so far, so the child sends small ones."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap

from test_store import make_folder

import artifactkit
from artifactkit import transfer

N_FILES = 24  # make_folder(n=12): 12 images + 12 labels

CHILD = textwrap.dedent(
    """
    import os, signal, sys
    import artifactkit
    import artifactkit.ingest as ingest
    import artifactkit.objects as objects
    import artifactkit.packs as packs
    import artifactkit.transfer as transfer
    packs.PACK_TARGET = 5000  # small blobs go up in packs: send one every ~2 images, not at 8 MiB
    what, store_uri, arg = sys.argv[1], sys.argv[2], sys.argv[3]
    die = lambda: os.kill(os.getpid(), signal.SIGKILL)
    done = {"n": 0}
    if what == "pull":  # killed after 10 complete files
        real_write_one = transfer._write_one
        def write_one(target, written, fill):
            real_write_one(target, written, fill)
            done["n"] += 1
            if done["n"] == 10:
                die()
        transfer._write_one = write_one
        transfer.pull(artifactkit.open_store(store_uri), "d:v0", arg, cache=False)
    elif what == "push":  # killed after sending half the blobs
        real_copy = objects.ObjectStore.copy_blobs
        def copy_blobs(self, src, digests, *rest):
            digests = list(digests)
            real_copy(self, src, digests[: len(digests) // 2], *rest)
            die()
        objects.ObjectStore.copy_blobs = copy_blobs
        transfer.push(artifactkit.open_store(arg), "d", artifactkit.open_store(store_uri))
    else:  # log: killed at its 4th batch of blobs (some packs sent by then)
        ingest._BATCH_FILES = 4
        real_many = packs.PackedBackend.write_many
        def write_many(self, items):
            if any(key.startswith("objects/") for key, _ in items):
                done["n"] += 1
                if done["n"] == 4:
                    die()
            real_many(self, items)
        packs.PackedBackend.write_many = write_many
        artifactkit.open_store(store_uri).log_folder(arg)
    """
)


def killed(tmp_path, *args: str) -> None:
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    proc = subprocess.run([sys.executable, str(script), *args], capture_output=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()


def blobs_in(store, sizes: dict[str, int]) -> int:
    """How many of the blobs (digest: size) a fresh handle on the store finds there (loose or packed)."""
    return len(sizes) - len(artifactkit.open_store(store.uri).missing_blobs(sizes))


def test_a_killed_pull_keeps_its_complete_files(tmp_path, s3_bucket):
    data = make_folder(tmp_path / "d", n=12)
    store = artifactkit.open_store(f"{s3_bucket}/s")
    store.log_folder(data)
    dest = tmp_path / "out"
    killed(tmp_path, "pull", store.uri, str(dest))
    complete = sorted(p for p in dest.rglob("*") if p.is_file() and not p.name.startswith(".ak-"))
    assert len(complete) == 10
    complete[0].unlink()  # one complete file gone again: fetched again
    result = transfer.pull(store, "d:v0", dest, cache=False)
    assert (result.reused_files, result.downloaded_files) == (9, N_FILES - 9)
    assert all((dest / p.relative_to(data)).read_bytes() == p.read_bytes() for p in data.rglob("*") if p.is_file())


def test_a_killed_push_and_a_killed_log_send_only_what_is_missing(tmp_path, s3_bucket):
    data = make_folder(tmp_path / "d", n=12)
    local = artifactkit.open_store(str(tmp_path / "local"))
    local.log_folder(data)
    sizes = {e.digest: e.size for e in local.entries(local.resolve("d:v0"))}
    pushed = artifactkit.open_store(f"{s3_bucket}/pushed")
    killed(tmp_path, "push", pushed.uri, local.uri)
    there = blobs_in(pushed, sizes)
    assert 0 < there < N_FILES and pushed.version_numbers("d") == []  # no half version
    result = transfer.push(local, "d", pushed)
    assert (result.uploaded_files, result.sent_versions) == (N_FILES - there, ["v0"])
    assert artifactkit.verify(pushed).ok

    logged = artifactkit.open_store(f"{s3_bucket}/logged")
    killed(tmp_path, "log", logged.uri, str(data))
    there = blobs_in(logged, sizes)
    assert 0 < there < N_FILES and logged.version_numbers("d") == []
    again = artifactkit.open_store(logged.uri).log_folder(data)
    assert again.uploaded_files == N_FILES - there
    assert artifactkit.verify(artifactkit.open_store(logged.uri)).ok
