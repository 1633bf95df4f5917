"""The store from Python: dedup, integrity, aliases, pull, verify, gc, bad input."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

import artifactkit
from artifactkit.errors import IntegrityError, InvalidInput, NotFound
from artifactkit.layout import object_key


def make_folder(root: Path, n: int = 6, size: int = 2000) -> Path:
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    for i in range(n):
        (root / "images" / f"{i}.jpg").write_bytes(os.urandom(size))
        (root / "labels" / f"{i}.txt").write_text(f"0 0.5 0.5 0.{i + 1} 0.1\n")
    return root


@pytest.fixture
def store(tmp_path):
    return artifactkit.open_store(str(tmp_path / "store"))


def test_log_dedup_and_pull_roundtrip(tmp_path, store):
    data = make_folder(tmp_path / "chess")
    v0 = store.log_folder(data)
    assert (v0.record.name, v0.record.label, v0.created) == ("chess", "v0", True)
    assert v0.uploaded_files == 12
    original = {p: p.read_bytes() for p in data.rglob("*") if p.is_file()}

    again = store.log_folder(data)
    assert (again.record.label, again.created, again.uploaded_files) == ("v0", False, 0)

    for i in (1, 4):  # change two images in place, same names
        (data / "images" / f"{i}.jpg").write_bytes(os.urandom(2000))
    v1 = store.log_folder(data)
    assert (v1.record.label, v1.uploaded_files, v1.uploaded_bytes) == ("v1", 2, 4000)

    artifactkit.pull(store, "chess:v0", tmp_path / "restored")
    restored = {p: p.read_bytes() for p in (tmp_path / "restored").rglob("*") if p.is_file()}
    assert {p.relative_to(tmp_path / "restored"): b for p, b in restored.items()} == {
        p.relative_to(data): b for p, b in original.items()
    }
    assert artifactkit.verify(store).ok


def test_identical_blobs_stored_once(tmp_path, store):
    result = store.log_files({"a.bin": b"same", "b/c.bin": b"same", "d.bin": b"other"}, name="blobs")
    assert result.uploaded_files == 2
    assert result.record.files == 3


def test_aliases_and_latest(tmp_path, store):
    store.log_files({"x": b"1"}, name="m", aliases=("best",))
    store.log_files({"x": b"2"}, name="m")
    assert store.resolve("m").label == "v1"
    assert store.resolve("m:latest").label == "v1"
    assert store.resolve("m:best").label == "v0"
    store.set_alias("m", "best", 1)
    infos = store.versions("m")
    assert [(i.record.label, i.aliases) for i in infos] == [("v0", ()), ("v1", ("latest", "best"))]
    for bad in ("latest", "v3"):
        with pytest.raises(InvalidInput, match=bad):
            store.set_alias("m", bad, 0)


@pytest.mark.parametrize(
    "ref, message",
    [
        ("m:v7", "m:v7 does not exist"),
        ("m:nope", "no version or alias 'nope'"),
        ("zz", "no artifact named 'zz'"),
        ("bad name", "invalid artifact reference"),
    ],
)
def test_unknown_refs(store, ref, message):
    store.log_files({"x": b"1"}, name="m")
    with pytest.raises((NotFound, InvalidInput), match=message):
        store.resolve(ref)


def test_corrupt_blob_detected_on_read_verify_and_pull(tmp_path, store):
    result = store.log_files({"a.txt": b"hello", "b.txt": b"world"}, name="t")
    digest = store.manifest(result.record).entries[0].digest
    blob = Path(store.backend.root) / object_key(digest)
    blob.write_bytes(b"HELLO")
    with pytest.raises(IntegrityError, match=object_key(digest)):
        store.read_blob(digest)
    report = artifactkit.verify(store)
    assert not report.ok and "corrupt" in report.problems[0]
    dest = tmp_path / "out"
    with pytest.raises(IntegrityError):
        artifactkit.pull(store, "t:v0", dest)
    assert not (dest / "a.txt").exists()  # never a corrupt file at the destination
    assert not [p for p in dest.rglob("*") if p.is_file() and p.name != "b.txt"]


def test_pull_reuses_matching_files_and_replaces_changed(tmp_path, store):
    data = make_folder(tmp_path / "d", n=3)
    store.log_folder(data)
    dest = tmp_path / "out"
    first = artifactkit.pull(store, "d", dest)
    assert first.written_files == 6
    (dest / "images" / "0.jpg").write_bytes(b"tampered")
    with pytest.raises(InvalidInput, match=r"1 files there differ .*images/0.jpg.*--force"):
        artifactkit.pull(store, "d", dest)
    assert (dest / "images" / "0.jpg").read_bytes() == b"tampered"  # a local edit is never lost silently
    second = artifactkit.pull(store, "d", dest, force=True)
    assert (second.written_files, second.reused_files) == (1, 5)
    assert (dest / "images" / "0.jpg").read_bytes() == (data / "images" / "0.jpg").read_bytes()


def test_missing_blob_fails_verify(store):
    result = store.log_files({"a.txt": b"hello"}, name="t")
    digest = store.manifest(result.record).entries[0].digest
    (Path(store.backend.root) / object_key(digest)).unlink()
    report = artifactkit.verify(store)
    assert not report.ok and "missing blob" in report.problems[0]


def test_gc_keeps_referenced_and_recent(tmp_path, store):
    store.log_files({"a": b"keep"}, name="t")
    orphan = store.backend
    orphan.write_many([(object_key("ab" * 16), b"orphan")])
    assert artifactkit.gc(store).kept_recent == 1  # inside the grace period
    report = artifactkit.gc(store, grace_seconds=0)
    assert report.deleted_objects == 1
    assert artifactkit.verify(store).ok
    assert store.read_blob(store.manifest(store.resolve("t")).entries[0].digest) == b"keep"


@pytest.mark.parametrize("path", ["/etc/passwd", "../x", "a/../../x", "a//b", ""])
def test_unsafe_paths_refused_on_log(store, path):
    with pytest.raises(InvalidInput, match="unsafe manifest path"):
        store.log_files({path: b"x"}, name="t")
    assert not list(store.backend.list("artifacts/"))


@pytest.mark.parametrize("layout, name", [("flat", "../escape.txt"), ("tree", ".."), ("tree", "a/../../escape.txt")])
def test_unsafe_manifest_refused_on_pull(tmp_path, store, layout, name):
    """A manifest (format 1) or a tree (format 2) written by a hostile or buggy writer is refused
    before any file lands."""
    import json

    from artifactkit.hashing import digest_bytes
    from artifactkit.layout import manifest_key, tree_key, version_key
    from artifactkit.trees import compress_tree

    store.log_files({"ok.txt": b"fine"}, name="t")
    good = store.resolve("t")
    blob = store.manifest(good).entries[0].digest
    if layout == "flat":
        entries = [{"digest": blob, "path": name, "size": 4}]
        canonical = json.dumps(
            {"entries": entries, "schema_version": 1}, sort_keys=True, separators=(",", ":")
        ).encode()
        key = manifest_key
    else:
        canonical = json.dumps(
            {"dirs": [], "files": [{"digest": blob, "name": name, "size": 4}]}, sort_keys=True, separators=(",", ":")
        ).encode()
        key = tree_key
    digest = digest_bytes(canonical)
    store.backend.write(key(digest), canonical if layout == "flat" else compress_tree(canonical))
    record = json.loads(store.backend.read(version_key("t", 0)))
    record.update(version=1, manifest=digest, layout=layout)
    store.backend.write(version_key("t", 1), json.dumps(record).encode())
    with pytest.raises(InvalidInput, match="escape.txt" if "escape" in name else "unsafe"):
        artifactkit.pull(store, "t:v1", tmp_path / "dest" / "inner")
    assert not (tmp_path / "dest").exists() or not list((tmp_path / "dest").rglob("*.txt"))


def test_bad_folders(tmp_path, store):
    with pytest.raises(InvalidInput, match="no such file"):
        store.log_folder(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InvalidInput, match="empty"):
        store.log_folder(tmp_path / "empty")
    outside = tmp_path / "secret.txt"
    outside.write_text("s")
    data = make_folder(tmp_path / "d", n=1)
    (data / "link.txt").symlink_to(outside)
    with pytest.raises(InvalidInput, match="symlink points outside"):
        store.log_folder(data)
    with pytest.raises(InvalidInput, match="invalid artifact name"):
        store.log_folder(make_folder(tmp_path / "e", n=1), name="no spaces")
    assert not list(store.backend.list("artifacts/"))


@pytest.mark.skipif(os.geteuid() == 0, reason="root can read a chmod 000 file")
def test_unreadable_file(tmp_path, store):
    data = make_folder(tmp_path / "d", n=1)
    (data / "images" / "0.jpg").chmod(0)
    with pytest.raises(InvalidInput, match="0.jpg"):
        store.log_folder(data)


def test_symlink_inside_folder_is_followed(tmp_path, store):
    data = make_folder(tmp_path / "d", n=1)
    (data / "alias.jpg").symlink_to(data / "images" / "0.jpg")
    result = store.log_folder(data)
    assert result.record.files == 3


def test_stat_cache_skips_rehash_but_sees_changes(tmp_path, store, monkeypatch):
    import artifactkit.ingest as ingest

    data = make_folder(tmp_path / "d", n=4)
    past = 1_600_000_000
    for p in data.rglob("*"):
        if p.is_file():
            os.utime(p, (past, past))  # old files: not racily clean
    time.sleep(0.15)  # nor racy by ctime (which utime just set)
    store.log_folder(data)
    reads = []
    real = ingest.read_file
    monkeypatch.setattr(ingest, "read_file", lambda p, *size: reads.append(p) or real(p, *size))
    store.log_folder(data)
    assert reads == []
    (data / "images" / "2.jpg").write_bytes(os.urandom(2000))
    result = store.log_folder(data)
    assert [Path(p).name for p in reads] == ["2.jpg"] and result.uploaded_files == 1


def test_memory_store_roundtrip(tmp_path):
    import uuid

    store = artifactkit.open_store(f"memory://ak-{uuid.uuid4().hex}")
    store.log_files({"a.txt": b"hi", "b/c.txt": b"there"}, name="m")
    artifactkit.pull(store, "m:v0", tmp_path / "out")
    assert (tmp_path / "out" / "b" / "c.txt").read_bytes() == b"there"
    assert artifactkit.verify(store).ok


def test_unknown_scheme():
    with pytest.raises(InvalidInput, match="unknown URI scheme 'nope'"):
        artifactkit.open_store("nope://x")


def test_a_large_tree_is_listed_in_worker_processes_with_the_same_result(tmp_path, monkeypatch):
    """Pass 1 of a folder log lists a large tree in a process pool (folderscan.py); here every
    level of more than one folder is "large". The pool's listing equals this process's, the
    version is the same tree, unchanged folders are still found, and an error in a worker (a
    name that is not UTF-8, four folders down) is the same one line naming the file."""
    from artifactkit import folderscan

    data = tmp_path / "d"
    for i in range(6):
        make_folder(data / f"part{i}", n=3)
    past = 1_600_000_000
    for p in data.rglob("*"):
        if p.is_file():
            os.utime(p, (past, past))
    time.sleep(0.15)
    folders = sorted(str(p) for p in data.iterdir())
    here = [folderscan.list_folder(f) for f in folders]
    first = artifactkit.open_store(str(tmp_path / "s1")).log_folder(data)

    monkeypatch.setattr(folderscan, "_POOL_MIN_FILES", 0)
    monkeypatch.setattr(folderscan, "_POOL_PROBE", 1)
    lister = folderscan.LevelLister()
    try:
        assert lister.list(folders) == here
        assert lister._pool is not None or (os.cpu_count() or 1) < 2
    finally:
        lister.close()
    store = artifactkit.open_store(str(tmp_path / "s2"))
    pooled = store.log_folder(data)
    assert pooled.record.manifest == first.record.manifest and pooled.uploaded_files == first.uploaded_files
    again = store.log_folder(data)  # every folder unchanged: found through the pool's listing
    assert not again.created and again.uploaded_files == 0
    deep = data / "part3" / "images" / "a" / "b"
    deep.mkdir(parents=True)
    with open(os.path.join(os.fsencode(deep), b"bad\xff.jpg"), "wb") as f:
        f.write(b"x")
    with pytest.raises(InvalidInput, match=r"bad\\xff.jpg: file name is not valid UTF-8"):
        store.log_folder(data)
