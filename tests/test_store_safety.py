"""Issue 14: no silent way to lose or corrupt data. gc racing a log (real processes), the stat
cache fooled by a restored mtime, blobs lost between versions, pull over local edits, names that
cannot round-trip, large files streamed."""

from __future__ import annotations

import json
import os
import random
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_store import make_folder

import artifactkit
from artifactkit.errors import IntegrityError, InvalidInput
from artifactkit.layout import object_key, tree_key

PAST = 1_600_000_000


def pulled(store, ref, dest: Path) -> dict[str, bytes]:
    artifactkit.pull(store, ref, dest)
    return {p.relative_to(dest).as_posix(): p.read_bytes() for p in dest.rglob("*") if p.is_file()}


def folder_bytes(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def orphan_everything(store_dir: Path) -> None:
    """Leave only blobs, trees and manifests behind, old: what an interrupted log of long ago leaves."""
    for p in (store_dir / "artifacts").rglob("*"):
        if p.is_file():
            p.unlink()
    for part in ("objects", "trees", "manifests"):
        for p in (store_dir / part).rglob("*"):
            if p.is_file():
                os.utime(p, (PAST, PAST))


def settle(root: Path) -> Path:
    """Files as users have them: changed long ago (not racily clean), so a log remembers each
    folder's fingerprint and the next log trusts the tree of an unchanged folder."""
    for p in root.rglob("*"):
        if p.is_file():
            os.utime(p, (PAST, PAST))
    time.sleep(0.15)  # nor racy by ctime, which utime just set
    return root


# -- 1. gc racing a log ------------------------------------------------------------------------
def test_gc_racing_a_log_never_loses_a_blob(tmp_path):
    """A log re-using old unreferenced blobs and a gc run at the same time, as real processes,
    again and again: every committed version stays whole."""
    data = make_folder(tmp_path / "d", n=150, size=300)
    store_dir = tmp_path / "s"
    artifactkit.open_store(str(store_dir)).log_folder(data)
    rng = random.Random(14)
    env = {**os.environ, "ARTIFACTKIT_CACHE_DIR": "off"}  # every run hashes and checks every blob
    for round_ in range(12):
        orphan_everything(store_dir)
        log = subprocess.Popen(
            [sys.executable, "-m", "artifactkit", "log-dataset", str(data), "--store", str(store_dir)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
        )
        time.sleep(rng.uniform(0.0, 0.5))
        gc = subprocess.run(
            [sys.executable, "-m", "artifactkit", "gc", "--grace", "60", "--store", str(store_dir)],
            capture_output=True,
            text=True,
            env=env,
        )
        out = log.communicate()[0].decode()
        assert log.returncode == 0 and gc.returncode == 0, (out, gc.stderr)
        store = artifactkit.open_store(str(store_dir))
        report = artifactkit.verify(store)
        assert report.ok, (round_, report.problems[:3])
        assert not list(store_dir.rglob(".ak-gc-*"))  # nothing left aside
        assert pulled(store, "d", tmp_path / f"out{round_}") == folder_bytes(data)


def test_gc_racing_a_log_that_trusts_unchanged_trees_never_loses_a_blob(tmp_path):
    """The same race where the log re-uses unchanged folders (stat cache on): it touches one tree
    per folder and trusts the blobs the tree lists, so gc must keep everything a tree it keeps
    lists, and a log whose tree gc took must log that folder again."""
    data = settle(make_folder(tmp_path / "d", n=150, size=300))
    store_dir = tmp_path / "s"
    env = {**os.environ, "ARTIFACTKIT_CACHE_DIR": str(tmp_path / "cache")}
    log_cmd = [sys.executable, "-m", "artifactkit", "log-dataset", str(data), "--store", str(store_dir), "--json"]
    subprocess.run(log_cmd, check=True, capture_output=True, env=env)
    rng = random.Random(18)
    uploads = []
    for round_ in range(12):
        orphan_everything(store_dir)
        gc_cmd = [sys.executable, "-m", "artifactkit", "gc", "--grace", "60", "--store", str(store_dir)]
        first, second = (log_cmd, gc_cmd) if round_ % 2 else (gc_cmd, log_cmd)  # either may start first
        procs = [subprocess.Popen(first, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)]
        # gc first: it lists and sets aside before the log starts (the log re-logs what gc took);
        # log first: it touches its trees while gc starts (gc keeps what they list).
        time.sleep(rng.uniform(0.1, 0.3) if first is log_cmd else rng.uniform(0.0, 0.15))
        procs.append(subprocess.Popen(second, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env))
        (out, err), (gc_out, gc_err) = [p.communicate() for p in (procs if first is log_cmd else procs[::-1])]
        assert all(p.returncode == 0 for p in procs), (err, gc_err)
        uploads.append(json.loads(out.strip().splitlines()[-1])["uploaded_files"])
        store = artifactkit.open_store(str(store_dir))
        report = artifactkit.verify(store)
        assert report.ok, (round_, report.problems[:3])
        assert not list(store_dir.rglob(".ak-gc-*"))
        assert pulled(store, "d", tmp_path / f"out{round_}") == folder_bytes(data)
    # Both ways were taken: rounds that re-used every tree, rounds where gc took them first.
    assert 0 in uploads and max(uploads) > 0, uploads


def test_a_tree_gc_keeps_keeps_what_it_lists(tmp_path):
    """A tree touched recently (a log re-using that folder is in flight) keeps its subtrees and
    blobs, however old they are; once it is old too, all of it goes, trees first."""
    data = make_folder(tmp_path / "d", n=2)
    store_dir = tmp_path / "s"
    store = artifactkit.open_store(str(store_dir))
    root = store.log_folder(data).record.manifest
    orphan_everything(store_dir)
    os.utime(store_dir / tree_key(root))  # as a log re-using the whole folder does
    kept = artifactkit.gc(store, grace_seconds=60)
    assert (kept.deleted_objects, kept.deleted_trees, kept.kept_recent) == (0, 0, 1)
    orphan_everything(store_dir)
    gone = artifactkit.gc(store, grace_seconds=60)
    assert (gone.deleted_objects, gone.deleted_trees) == (4, 3)
    assert not [p for part in ("objects", "trees") for p in (store_dir / part).rglob("*") if p.is_file()]


def test_a_tree_touched_after_gc_listed_it_keeps_what_it_lists(tmp_path):
    """gc's set-aside step on its own (no timing to win): a log touched the root tree after gc
    listed everything as old and unreferenced. The tree is put back with its subtrees (already
    set aside by then) and every blob they list is spared."""
    from artifactkit.maintenance import _delete_aside, _Kept, _Live

    data = make_folder(tmp_path / "d", n=2)
    store_dir = tmp_path / "s"
    store = artifactkit.open_store(str(store_dir))
    root = store.log_folder(data).record.manifest
    orphan_everything(store_dir)
    trees, blobs = (list(store.backend.list(part + "/")) for part in ("trees", "objects"))
    os.utime(store_dir / tree_key(root))  # the log re-uses the whole folder now
    kept = _Kept(store)
    assert _delete_aside(store_dir, trees, _Live(store).read(), kept) == []
    assert all(kept.holds(b.key) for b in blobs) and len(blobs) == 4
    assert not list(store_dir.rglob(".ak-gc-*"))
    assert all((store_dir / t.key).is_file() for t in trees)


def test_gc_puts_back_what_a_killed_gc_left_aside(tmp_path):
    store = artifactkit.open_store(str(tmp_path / "s"))
    digest = store.manifest(store.log_files({"a": b"keep"}, name="t").record).entries[0].digest
    blob = tmp_path / "s" / object_key(digest)
    blob.rename(blob.with_name(".ak-gc-" + blob.name))  # as if gc died between set-aside and restore
    artifactkit.gc(store, grace_seconds=0)
    assert blob.read_bytes() == b"keep" and artifactkit.verify(store).ok


# -- 2. the stat cache and hashing while copying ---------------------------------------------
def same_size_edit_mtime_restored(path: Path, data: bytes) -> None:
    st = path.stat()
    path.write_bytes(data)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))  # as touch -r, cp -p and sync tools do


def test_same_size_edit_with_restored_mtime_is_seen(tmp_path):
    data = tmp_path / "d"
    data.mkdir()
    (data / "a.bin").write_bytes(b"A" * 100)
    os.utime(data / "a.bin", (PAST, PAST))
    time.sleep(0.15)  # not racily clean
    first = artifactkit.open_store(str(tmp_path / "s1"))
    first.log_folder(data)
    same_size_edit_mtime_restored(data / "a.bin", b"B" * 100)
    time.sleep(0.15)
    v1 = first.log_folder(data)
    assert (v1.record.label, v1.created) == ("v1", True)
    other = artifactkit.open_store(str(tmp_path / "s2"))
    other.log_folder(data)
    assert artifactkit.verify(other).ok  # no blob whose content differs from its name
    assert pulled(other, "d", tmp_path / "out")["a.bin"] == b"B" * 100


def test_a_stale_cache_entry_never_names_a_blob(tmp_path):
    """Even where the cache is wrong (a file system whose ctime lies), the bytes copied into a
    store are hashed on the way: the log is refused, nothing corrupt is written, a re-run works."""
    data = tmp_path / "d"
    data.mkdir()
    (data / "a.bin").write_bytes(b"old!")
    first = artifactkit.open_store(str(tmp_path / "s1"))
    old_digest = first.manifest(first.log_folder(data).record).entries[0].digest
    (data / "a.bin").write_bytes(b"new!")
    st = (data / "a.bin").stat()
    db = sqlite3.connect(tmp_path / ".ak-cache" / "stat.sqlite")
    with db:
        db.execute(
            "INSERT OR REPLACE INTO stat_v2 VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                str((data / "a.bin").absolute()),
                st.st_size,
                st.st_mtime_ns,
                st.st_ctime_ns,
                st.st_ino,
                old_digest,
                time.time_ns() + 10**10,
            ),
        )
    db.close()
    other = artifactkit.open_store(str(tmp_path / "s2"))
    with pytest.raises(InvalidInput, match="a.bin changed while it was being logged"):
        other.log_folder(data)
    assert artifactkit.verify(other).ok and not other.artifact_names()
    other.log_folder(data)
    assert pulled(other, "d", tmp_path / "out") == {"a.bin": b"new!"} and artifactkit.verify(other).ok


# -- 3. every blob of a new version exists ---------------------------------------------------
@pytest.mark.parametrize("change", [False, True])
def test_lost_blob_is_uploaded_again_by_the_next_log(tmp_path, change):
    data = make_folder(tmp_path / "d", n=3)
    store = artifactkit.open_store(str(tmp_path / "s"))
    v0 = store.log_folder(data)
    lost = store.manifest(v0.record).by_path()["images/0.jpg"].digest
    (tmp_path / "s" / object_key(lost)).unlink()
    if change:
        (data / "labels" / "1.txt").write_text("changed\n")
    again = store.log_folder(data)
    assert again.uploaded_files == 1 + change
    assert artifactkit.verify(store).ok
    assert pulled(store, "d", tmp_path / "out") == folder_bytes(data)


def test_an_unchanged_folder_costs_one_tree_touch_and_full_puts_back_a_lost_blob(tmp_path, cli):
    """Cost proportional to what changed: a re-log checks the tree of an unchanged folder, not
    its blobs (they are trusted, as git and restic trust a tree they hold). So a blob lost from
    under an unchanged folder is found by verify, which says how to put it back: a log with
    full=True (--full) checks every blob."""
    data = settle(make_folder(tmp_path / "d", n=3))
    store_dir = tmp_path / "s"
    store = artifactkit.open_store(str(store_dir))
    v0 = store.log_folder(data)
    by_path = store.manifest(v0.record).by_path()
    lost = by_path["images/0.jpg"].digest
    (store_dir / object_key(lost)).unlink()
    old_blob = store_dir / object_key(by_path["images/1.jpg"].digest)
    os.utime(old_blob, (PAST, PAST))
    (data / "labels" / "1.txt").write_text("changed\n")
    again = store.log_folder(data)
    assert again.uploaded_files == 1  # the changed label; images/ is unchanged: its tree is re-used
    assert old_blob.stat().st_mtime == PAST  # ... and its blobs are not touched one by one
    report = artifactkit.verify(store)
    assert [p for p in report.problems if "images/0.jpg missing blob" in p and "--full" in p], report.problems
    full = cli("log-dataset", str(data), "--full", "--store", str(store_dir), "--json")
    assert json.loads(full.stdout.strip().splitlines()[-1])["uploaded_files"] == 1 and artifactkit.verify(store).ok
    assert pulled(store, "d", tmp_path / "out") == folder_bytes(data)


def test_a_tree_missing_from_the_store_makes_its_folder_be_logged_again(tmp_path):
    """The stat cache knows the folder, the store lost its tree (and blobs): the log finds the
    tree missing and logs that folder blob by blob, so the version is whole."""
    data = settle(make_folder(tmp_path / "d", n=2))
    store_dir = tmp_path / "s"
    store = artifactkit.open_store(str(store_dir))
    store.log_folder(data, name="a")
    orphan_everything(store_dir)
    assert artifactkit.gc(store, grace_seconds=0).deleted_trees == 3
    again = store.log_folder(data, name="b")
    assert again.uploaded_files == 4 and artifactkit.verify(store).ok
    assert pulled(store, "b", tmp_path / "out") == folder_bytes(data)


# -- 4. pull never loses local edits, reports extras, one-line errors -----------------------
def test_pull_reports_and_deletes_extra_files_only_when_asked(tmp_path, cli):
    data = make_folder(tmp_path / "d", n=2)
    store_dir = str(tmp_path / "s")
    artifactkit.open_store(store_dir).log_folder(data)
    dest = tmp_path / "out"
    cli("pull", "d", str(dest), "--store", store_dir)
    (dest / "mine.txt").write_text("mine")
    (dest / "images" / "0.jpg").write_bytes(b"edited")
    refused = cli("pull", "d", str(dest), "--store", store_dir, check=False)
    assert refused.returncode == 1 and refused.stderr.count("\n") == 1
    assert "images/0.jpg" in refused.stderr and "--force" in refused.stderr
    assert (dest / "images" / "0.jpg").read_bytes() == b"edited"
    forced = cli("pull", "d", str(dest), "--store", store_dir, "--force")
    assert "mine.txt" in forced.stdout and (dest / "mine.txt").exists()
    assert (dest / "images" / "0.jpg").read_bytes() == (data / "images" / "0.jpg").read_bytes()
    cli("pull", "d", str(dest), "--store", store_dir, "--delete")
    assert folder_bytes(dest) == folder_bytes(data)


def test_pull_finds_extras_in_folders_the_version_has_and_in_those_it_lacks(tmp_path):
    """pull compares dest folder by folder (never holding the version's whole file list): an
    extra file next to the version's files, one in a folder the version has no file in, and one in
    a folder it lacks are all reported, and only they are deleted."""
    data = make_folder(tmp_path / "d", n=2)
    store = artifactkit.open_store(str(tmp_path / "s"))
    store.log_folder(data)
    dest = tmp_path / "out"
    artifactkit.pull(store, "d", dest)
    (dest / "images" / "extra.jpg").write_bytes(b"x")
    (dest / "other" / "deep").mkdir(parents=True)
    (dest / "other" / "deep" / "x.txt").write_text("x")
    (dest / "top.txt").write_text("x")
    (dest / "images" / ".ak-tmp-0123456789ab").write_bytes(b"")
    result = artifactkit.pull(store, "d", dest, delete=True)
    assert result.extra_files == ("images/extra.jpg", "other/deep/x.txt", "top.txt")
    assert result.reused_files == 4 and result.written_files == 0
    assert folder_bytes(dest) == folder_bytes(data) | {"images/.ak-tmp-0123456789ab": b""}


def test_pull_through_a_folder_linked_out_of_dest_is_refused(tmp_path):
    data = make_folder(tmp_path / "d", n=1)
    store = artifactkit.open_store(str(tmp_path / "s"))
    store.log_folder(data)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    dest = tmp_path / "out"
    dest.mkdir()
    (dest / "images").symlink_to(outside, target_is_directory=True)
    with pytest.raises(InvalidInput, match="would land outside"):
        artifactkit.pull(store, "d", dest)
    assert list(outside.iterdir()) == [] and not (dest / "labels").exists()


def test_pull_onto_a_file_or_a_folder_in_the_way_is_one_line(tmp_path, cli):
    data = make_folder(tmp_path / "d", n=1)
    store_dir = str(tmp_path / "s")
    artifactkit.open_store(store_dir).log_folder(data)
    (tmp_path / "afile").write_text("x")
    (tmp_path / "o1" / "images" / "0.jpg").mkdir(parents=True)
    (tmp_path / "o2").mkdir()
    (tmp_path / "o2" / "images").write_text("a file where a folder goes")
    for dest, what in (
        (tmp_path / "afile", "it is a file"),
        (tmp_path / "o1", "is a folder"),
        (tmp_path / "o2", "is a file"),
    ):
        proc = cli("pull", "d", str(dest), "--store", store_dir, check=False)
        assert proc.returncode == 1 and what in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
        assert proc.stderr.count("\n") == 1
    assert (tmp_path / "afile").read_text() == "x"


def test_pull_out_of_space_leaves_no_partial_file(tmp_path):
    """A write that fails mid-pull (here: a file-size limit, as a full disk would) is one line,
    and no temp or partial file stays."""
    store = artifactkit.open_store(str(tmp_path / "s"))
    store.log_files({"a/small.bin": b"s" * 100, "b/big.bin": os.urandom(300_000)}, name="t")
    dest = tmp_path / "out"
    script = (
        "import resource, signal, sys; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
        "resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000)); "
        "from cli.main import main; sys.argv = ['artifactkit'] + sys.argv[1:]; main()"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script, "pull", "t", str(dest), "--store", str(tmp_path / "s")],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1, proc.stderr
    assert "big.bin" in proc.stderr and "1 files completed" in proc.stderr and "File too large" in proc.stderr
    assert sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file()) == ["a/small.bin"]


def test_pull_makes_each_folder_once_and_flushes_once_not_per_file(tmp_path, monkeypatch):
    """The fewest system calls a file: a folder is made once (not once per file), no file is
    fsynced on its own, and one syncfs of dest at the end makes every file durable."""
    from artifactkit import transfer

    files = {f"d{i}/f{j}.bin": os.urandom(50) for i in range(3) for j in range(4)}
    store = artifactkit.open_store(str(tmp_path / "s"))
    store.log_files(files, name="t")
    calls = {"mkdir": 0, "fsync": 0, "syncfs": []}
    real_mkdir, real_fsync, real_syncfs = os.mkdir, os.fsync, transfer.syncfs

    def mkdir(*args, **kwargs):
        calls["mkdir"] += 1
        return real_mkdir(*args, **kwargs)

    def fsync(fd):
        calls["fsync"] += 1
        return real_fsync(fd)

    def syncfs(path):
        calls["syncfs"].append(Path(path))
        return real_syncfs(path)

    monkeypatch.setattr(os, "mkdir", mkdir)
    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(transfer, "syncfs", syncfs)
    assert pulled(store, "t", tmp_path / "out") == files
    assert calls == {"mkdir": 4, "fsync": 0, "syncfs": [tmp_path / "out"]}  # dest and its 3 folders
    assert artifactkit.pull(store, "t", tmp_path / "out").written_files == 0
    assert len(calls["syncfs"]) == 1  # nothing written: nothing to flush


def test_temp_files_of_a_killed_pull_are_never_logged(tmp_path):
    data = make_folder(tmp_path / "d", n=1)
    (data / "images" / ".ak-tmp-0123456789ab").write_bytes(b"half a file")
    (data / (".tmp-" + "0" * 32)).write_bytes(b"half a blob of the old local backend")
    (data / ".keep").write_text("a dot file of the user is data")
    result = artifactkit.open_store(str(tmp_path / "s")).log_folder(data)
    assert result.record.files == 3


# -- 6. names ------------------------------------------------------------------------------
def test_a_255_byte_name_round_trips(tmp_path):
    data = tmp_path / "d"
    (data / "sub").mkdir(parents=True)
    name = "é" * 100 + "x" * 55  # 255 bytes in UTF-8
    assert len(name.encode()) == 255
    (data / "sub" / name).write_bytes(b"long")
    store = artifactkit.open_store(str(tmp_path / "s"))
    store.log_folder(data)
    assert pulled(store, "d", tmp_path / "out") == {f"sub/{name}": b"long"}


def test_a_non_utf8_name_is_refused_before_anything_is_written(tmp_path, cli):
    data = tmp_path / "d"
    data.mkdir()
    (data / "ok.txt").write_text("fine")
    with open(os.path.join(os.fsencode(data), b"bad\xff.txt"), "wb") as f:
        f.write(b"x")
    store_dir = tmp_path / "s"
    for cache in ("on", "off"):
        env = {"ARTIFACTKIT_CACHE_DIR": "off"} if cache == "off" else None
        proc = cli("log-dataset", str(data), "--store", str(store_dir), check=False, env=env)
        assert proc.returncode == 1 and "bad\\xff.txt" in proc.stderr and "not valid UTF-8" in proc.stderr
        assert proc.stderr.count("\n") == 1
        assert not store_dir.exists() or not [p for p in store_dir.rglob("*") if p.is_file()]


# -- 5. large files are streamed (the memory figure is bench/big_file.py) -------------------
def test_a_file_above_the_streaming_threshold_round_trips(tmp_path):
    data = tmp_path / "d"
    data.mkdir()
    with open(data / "big.bin", "wb") as f:
        f.truncate(20 << 20)  # sparse, above ingest._STREAM_BYTES
        f.seek(5 << 20)
        f.write(b"middle")
    store = artifactkit.open_store(str(tmp_path / "s"))
    store.log_folder(data)
    (data / "small.txt").write_text("s")
    store.log_folder(data)
    assert artifactkit.verify(store).ok
    dest = tmp_path / "out"
    artifactkit.pull(store, "d:v0", dest)
    assert (dest / "big.bin").read_bytes() == (data / "big.bin").read_bytes()
    blob = next(p for p in (tmp_path / "s" / "objects").rglob("*") if p.stat().st_size == 20 << 20)
    with open(blob, "r+b") as f:
        f.seek(1 << 20)
        f.write(b"rot")
    assert not artifactkit.verify(store).ok
    with pytest.raises(artifactkit.errors.IntegrityError):
        artifactkit.pull(store, "d:v0", tmp_path / "out2")
    assert not (tmp_path / "out2" / "big.bin").exists()


def test_gc_keeps_what_a_kept_tree_lists_even_from_a_killed_gc_trash(tmp_path):
    """A gc killed after setting a folder's subtrees aside (the root tree, touched by a log, was
    put back): the next gc keeps the recent root, so it puts back the subtrees it lists from
    their trash names and keeps their blobs; a log trusting the root then commits a whole version."""
    data = make_folder(tmp_path / "d", n=2)
    store_dir = tmp_path / "s"
    store = artifactkit.open_store(str(store_dir))
    root = store.log_folder(data).record.manifest
    orphan_everything(store_dir)
    for sub in store.read_tree(root).dirs:
        key = store_dir / tree_key(sub.tree)
        key.rename(key.with_name(".ak-gc-" + key.name))
    os.utime(store_dir / tree_key(root))
    report = artifactkit.gc(store, grace_seconds=60)
    assert report.deleted_objects == 0 and not list(store_dir.rglob(".ak-gc-*"))
    assert store.log_folder(data).uploaded_files == 0
    assert artifactkit.verify(store).ok and pulled(store, "d", tmp_path / "out") == folder_bytes(data)


def test_gc_deletes_no_blob_when_a_kept_tree_cannot_be_read(tmp_path):
    """What a recent tree lists is unknown if one of its subtrees is gone: gc keeps every blob."""
    data = make_folder(tmp_path / "d", n=2)
    store_dir = tmp_path / "s"
    store = artifactkit.open_store(str(store_dir))
    root = store.log_folder(data).record.manifest
    orphan_everything(store_dir)
    (store_dir / tree_key(store.read_tree(root).dirs[0].tree)).unlink()
    os.utime(store_dir / tree_key(root))
    assert artifactkit.gc(store, grace_seconds=60).deleted_objects == 0
    assert len([p for p in (store_dir / "objects").rglob("*") if p.is_file()]) == 4


def test_a_drive_letter_name_is_refused_wherever_the_folder_logged_begins(tmp_path):
    """A tree refuses a name like "C:x" anywhere (trees.check_component), so logging refuses it
    in a subfolder too, not only at the top; unchanged folders skip no such check."""
    parent = tmp_path / "p"
    data = parent / "d"
    data.mkdir(parents=True)
    (data / "ok.txt").write_text("fine")
    (data / "C:x").write_text("x")
    store = artifactkit.open_store(str(tmp_path / "s"))
    for folder in (parent, data, parent):
        with pytest.raises(InvalidInput, match="C:x"):
            store.log_folder(folder)
    assert not store.artifact_names()


def test_a_log_whose_trusted_tree_is_taken_while_it_runs_commits_nothing(tmp_path):
    """gc's grace period is shorter than this log: the tree of an unchanged folder, trusted at the
    start, is gone by the commit. The log checks its trusted trees again and refuses to commit."""
    data = settle(make_folder(tmp_path / "d", n=2))
    store_dir = tmp_path / "s"
    store = artifactkit.open_store(str(store_dir))
    first = store.log_folder(data)
    labels_tree = {d.name: d.tree for d in store.read_tree(first.record.manifest).dirs}["labels"]
    (data / "images" / "1.jpg").write_bytes(b"changed")  # images/ changed, labels/ unchanged
    taken = []

    def gc_meanwhile(done, total):
        if not taken:
            taken.append((store_dir / tree_key(labels_tree)).unlink())

    with pytest.raises(IntegrityError, match="removed while it ran"):
        store.log_folder(data, progress=gc_meanwhile)
    assert store.version_numbers("d") == [0]
    again = store.log_folder(data)  # labels/ is logged blob by blob now: whole again
    assert again.record.version == 1 and artifactkit.verify(store).ok


def test_a_lost_tree_is_reported_with_its_repair_and_full_puts_it_back(tmp_path):
    data = settle(make_folder(tmp_path / "d", n=2))
    store_dir = tmp_path / "s"
    store = artifactkit.open_store(str(store_dir))
    root = store.log_folder(data).record.manifest
    (store_dir / tree_key(store.read_tree(root).dirs[0].tree)).unlink()
    problems = artifactkit.verify(store).problems
    assert len(problems) == 1 and "not found" in problems[0] and "--full" in problems[0]
    assert not store.log_folder(data, full=True).created  # the same content, the same version
    assert artifactkit.verify(store).ok and pulled(store, "d", tmp_path / "out") == folder_bytes(data)
