"""The store's format marker (artifactkit-store.json): written on the first write, a store without
it is format 1, a store of a newer format is refused in one line before anything is read or written."""

from __future__ import annotations

import json
import os

import pytest
from test_cli_store import check_error
from test_store import make_folder

import artifactkit
from artifactkit.errors import InvalidInput, NotFound
from artifactkit.layout import FORMAT_KEY, object_key, tree_key
from artifactkit.objects import WRITTEN_FORMAT


def files_in(root):
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def test_first_write_marks_the_format_and_unmarked_stores_are_format_1(tmp_path):
    root = tmp_path / "s"
    store = artifactkit.open_store(str(root))
    assert store.format() == 1 and not (root / FORMAT_KEY).exists()  # opening writes nothing
    store.log_folder(make_folder(tmp_path / "d"))
    assert json.loads((root / FORMAT_KEY).read_text()) == {"format": WRITTEN_FORMAT}
    (root / FORMAT_KEY).unlink()  # a store written before the marker existed
    old = artifactkit.open_store(str(root))
    assert old.format() == 1
    assert old.versions("d")[0].record.files == 12
    old.log_folder(tmp_path / "d")  # unchanged: the same version, and the marker is back
    assert json.loads((root / FORMAT_KEY).read_text()) == {"format": WRITTEN_FORMAT}


def test_a_newer_format_is_refused_in_one_line_and_nothing_written(tmp_path, cli):
    root = tmp_path / "s"
    data = make_folder(tmp_path / "d")
    artifactkit.open_store(str(root)).log_folder(data)
    (root / FORMAT_KEY).write_text('{"format": 99}\n')
    before = files_in(root)
    with pytest.raises(InvalidInput, match="store format 99 is newer"):
        artifactkit.open_store(str(root))
    (data / "new.txt").write_text("new")
    for args in (
        ["versions", "d"],
        ["log-dataset", str(data)],
        ["verify"],
        ["gc", "--grace", "0"],
        ["pull", "d", str(tmp_path / "out")],
    ):
        check_error(cli(*args, "--store", str(root), check=False), "store format 99 is newer", "upgrade artifactkit")
    assert files_in(root) == before and not (tmp_path / "out").exists()


def test_a_damaged_marker_is_named(tmp_path, cli):
    root = tmp_path / "s"
    artifactkit.open_store(str(root)).log_folder(make_folder(tmp_path / "d"))
    (root / FORMAT_KEY).write_bytes(b"\x00garbage")
    check_error(cli("versions", "d", "--store", str(root), check=False), FORMAT_KEY, "not a store format marker")


# -- format 2: trees ----------------------------------------------------------------------------
def flat_version(store, name: str, files: dict[str, bytes]):
    """A version as format-1 code wrote it: one flat manifest, and no marker in the store."""
    from artifactkit.hashing import digest_bytes
    from artifactkit.records import Entry, Manifest, VersionRecord, now_iso

    store.write_blobs([(digest_bytes(b), b) for b in files.values()])
    manifest = Manifest.of([Entry(path=p, digest=digest_bytes(b), size=len(b)) for p, b in files.items()])
    canonical = manifest.canonical_json()
    store.put_manifest(digest_bytes(canonical), canonical)
    record = VersionRecord(
        name=name,
        version=0,
        type="dataset",
        manifest=digest_bytes(canonical),
        files=len(files),
        bytes=manifest.total_bytes,
        created=now_iso(),
    )
    store.put_version(record)
    return record


def test_format_1_versions_keep_reading_and_an_unchanged_relog_is_the_same_version(tmp_path):
    root = tmp_path / "s"
    files = {"a.txt": b"a", "sub/b.txt": b"b", "sub/deeper/c.txt": b"c"}
    flat_version(artifactkit.open_store(str(root)), "d", files)
    (root / FORMAT_KEY).unlink()
    store = artifactkit.open_store(str(root))
    assert store.format() == 1 and store.resolve("d").layout == "flat"
    assert artifactkit.pull(store, "d", tmp_path / "out").written_files == 3
    assert [e.path for e in store.entries(store.resolve("d"), "sub")] == ["sub/b.txt", "sub/deeper/c.txt"]
    again = store.log_folder(tmp_path / "out", name="d")  # the same content, logged by format-2 code
    assert (again.record.label, again.created) == ("v0", False)
    (tmp_path / "out" / "a.txt").write_bytes(b"new")
    v1 = store.log_folder(tmp_path / "out", name="d")
    assert (v1.record.label, v1.record.layout, store.format()) == ("v1", "tree", WRITTEN_FORMAT)
    assert artifactkit.gc(store, grace_seconds=0).deleted_objects == 0 and artifactkit.verify(store).ok
    assert artifactkit.pull(store, "d:v0", tmp_path / "v0").written_files == 3


def tree_files(root):
    return {p for p in (root / "trees").rglob("*") if p.is_file()}


def test_v1_writes_only_the_trees_on_the_path_to_what_changed(tmp_path):
    data = tmp_path / "d"
    for top in ("x", "y", "z"):
        for sub in ("p", "q"):
            (data / top / sub).mkdir(parents=True)
            for i in range(5):
                (data / top / sub / f"{i}.txt").write_text(f"{top}{sub}{i}")
    store = artifactkit.open_store(str(tmp_path / "s"))
    v0 = store.log_folder(data)
    assert len(tree_files(tmp_path / "s")) == 1 + 3 + 6  # root, x y z, and their p q
    before = tree_files(tmp_path / "s")
    (data / "y" / "q" / "3.txt").write_text("changed")
    v1 = store.log_folder(data)
    assert v1.uploaded_files == 1 and len(tree_files(tmp_path / "s") - before) == 3  # y/q, y, root
    old, new = (store.read_tree(r.record.manifest) for r in (v0, v1))
    assert [d.tree for d in old.dirs if d.name != "y"] == [d.tree for d in new.dirs if d.name != "y"]  # shared
    assert store.manifest(v1.record).by_path()["y/q/3.txt"].size == 7 and v1.record.files == 30


def test_reading_a_prefix_reads_only_the_trees_on_its_path(tmp_path):
    data = tmp_path / "d"
    for top in ("x", "y"):
        (data / top).mkdir(parents=True)
        (data / top / "f.txt").write_text(top)
    store = artifactkit.open_store(str(tmp_path / "s"))
    record = store.log_folder(data).record
    other = store.read_tree(record.manifest).dirs[0]  # x's tree: removed, y must still read
    os.unlink(tmp_path / "s" / tree_key(other.tree))
    assert [e.path for e in store.entries(record, "y")] == ["y/f.txt"]
    assert [e.path for e in store.entries(record, "y/f.txt")] == ["y/f.txt"]
    pulled = artifactkit.pull(store, "d", tmp_path / "out", include=["y/*", "y/f.txt"])  # pull --include too
    assert pulled.written_files == 1 and (tmp_path / "out" / "y" / "f.txt").read_text() == "y"
    with pytest.raises(NotFound):
        list(store.entries(record))
    with pytest.raises(NotFound):
        artifactkit.pull(store, "d", tmp_path / "all", include=["*/f.txt"])  # a glob from the root reads x too
    report = artifactkit.verify(store)
    assert not report.ok and "trees/" in report.problems[0]


def test_gc_marks_through_trees_and_a_damaged_tree_is_named(tmp_path):
    data = tmp_path / "d"
    (data / "sub").mkdir(parents=True)
    (data / "sub" / "a.txt").write_text("a")
    store = artifactkit.open_store(str(tmp_path / "s"))
    v0 = store.log_folder(data).record
    (data / "sub" / "a.txt").write_text("b")
    store.log_folder(data)
    report = artifactkit.gc(store, grace_seconds=0)
    assert (report.deleted_objects, report.deleted_trees) == (0, 0)  # both versions live
    orphan = tree_files(tmp_path / "s")
    (tmp_path / "s" / "artifacts" / "d" / "versions" / "0.json").unlink()
    report = artifactkit.gc(store, grace_seconds=0)
    assert (report.deleted_objects, report.deleted_trees) == (1, 2)  # v0's blob, its root and sub trees
    assert len(orphan - tree_files(tmp_path / "s")) == 2 and artifactkit.verify(store).ok
    key = tmp_path / "s" / tree_key(store.resolve("d").manifest)
    key.write_bytes(b"not zlib")
    with pytest.raises(InvalidInput, match="not a tree"):
        list(store.entries(store.resolve("d")))
    assert v0.layout == "tree"


def test_diff_reads_only_the_trees_that_differ(tmp_path):
    """diff of two tree versions skips every subtree they share unread: with the trees of the
    unchanged folders deleted it still answers, and counts their files as unchanged."""
    from artifactkit.diff import diff_versions

    data = tmp_path / "d"
    for top in ("images", "labels"):
        for split in ("train", "val"):
            (data / top / split).mkdir(parents=True)
    for i in range(3):
        (data / "images" / "train" / f"{i}.jpg").write_bytes(b"img%d" % i)
        (data / "labels" / "train" / f"{i}.txt").write_text(f"{i} 0.5 0.5 0.1 0.1\n")
        (data / "images" / "val" / f"{i}.jpg").write_bytes(b"val%d" % i)
    (data / "data.yaml").write_text("names: [a, b, c, d]\n")
    store = artifactkit.open_store(str(tmp_path / "s"))
    v0 = store.log_folder(data).record
    (data / "labels" / "train" / "1.txt").write_text("3 0.5 0.5 0.1 0.1\n")
    (data / "images" / "train" / "3.jpg").write_bytes(b"new")
    assert store.log_folder(data).record.label == "v1"
    assert diff_versions(store, "d:v1", "d:v1").unchanged == 11
    shared = [d.tree for d in store.read_tree(v0.manifest).dirs if d.name == "images"]
    val = [d.tree for d in store.read_tree(shared[0]).dirs if d.name == "val"]
    os.unlink(tmp_path / "s" / tree_key(val[0]))  # images/val: the same in both, must not be read
    d = diff_versions(store, "d:v0", "d:v1")
    assert d.added == [("images/train/3.jpg", 3)] and d.removed == []
    assert d.changed == [("labels/train/1.txt", 18, 18)] and d.unchanged == 9
    assert [(c.name, c.before, c.after) for c in d.labels] == [("b", 1, 0), ("d", 0, 1)] and d.label_files == 2


def test_diff_of_format_1_versions(tmp_path):
    from artifactkit.diff import diff_versions

    store = artifactkit.open_store(str(tmp_path / "s"))
    flat_version(
        store,
        "d",
        {
            "data.yaml": b"names: [a, b]\n",
            "images/x.jpg": b"x",
            "labels/x.txt": b"0 .5 .5 .1 .1\n",
            "notes/a.txt": b"a",
        },
    )
    v1 = flat_version(
        store,
        "e",
        {
            "data.yaml": b"names: [a, b]\n",
            "images/x.jpg": b"x",
            "labels/x.txt": b"1 .5 .5 .1 .1\n",
            "notes/b.txt": b"b",
        },
    )
    assert v1.layout == "flat"
    d = diff_versions(store, "d:v0", "e:v0")
    assert (d.added, d.removed, d.unchanged) == ([("notes/b.txt", 1)], [("notes/a.txt", 1)], 2)
    assert d.changed == [("labels/x.txt", 14, 14)] and d.label_files == 2
    assert [(c.name, c.after - c.before) for c in d.labels] == [("a", -1), ("b", 1)]


def test_verify_reads_each_tree_once_however_many_versions_share_it(tmp_path):
    data = tmp_path / "d"
    for top in ("x", "y", "z"):
        (data / top).mkdir(parents=True)
        (data / top / "f.txt").write_text(top)
    store = artifactkit.open_store(str(tmp_path / "s"))
    for i in range(3):
        (data / "x" / "f.txt").write_text(f"x{i}")
        store.log_folder(data)
    read = []
    original = store.read_tree
    store.read_tree = lambda digest: read.append(digest) or original(digest)
    assert artifactkit.verify(store).ok
    assert len(read) == len(set(read)) == 3 + 3 + 2  # 3 roots, 3 x trees, y and z once
    os.unlink(
        tmp_path
        / "s"
        / object_key(store.read_tree(store.read_tree(store.resolve("d:v0").manifest).dirs[1].tree).files[0].digest)
    )
    assert any("y/f.txt missing blob" in p for p in artifactkit.verify(store).problems)


def test_an_entry_checked_already_is_what_model_construct_makes():
    """Entry.checked_already (the pull's fast path) builds the same frozen record as pydantic's
    model_construct: equal, same dump, fields set, hash and repr, and it refuses assignment."""
    from pydantic import ValidationError

    from artifactkit.records import Entry

    for meta in (None, {"k": [1, 2]}):
        fast = Entry.checked_already("a/b.bin", "0" * 32, 7, meta)
        slow = Entry.model_construct(path="a/b.bin", digest="0" * 32, size=7, meta=meta)
        assert fast == slow and fast.model_dump() == slow.model_dump() and repr(fast) == repr(slow)
        assert fast.model_fields_set == slow.model_fields_set
        if meta is None:  # a dict in meta makes any Entry unhashable
            assert hash(fast) == hash(slow)
        assert fast.__pydantic_extra__ == slow.__pydantic_extra__
        assert fast.__pydantic_private__ == slow.__pydantic_private__
        with pytest.raises(ValidationError):
            fast.size = 8
