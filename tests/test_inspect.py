"""diff, pull --include and cat, on a local and an S3 (moto server) store, as a user runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from clirunner import run_cli_modules

import artifactkit
from artifactkit.layout import object_key

BIG = 17 << 20  # above the 16 MB past which blobs are streamed, never held whole


def last_json(proc) -> dict:
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(params=["local", "s3"])
def store_uri(request, tmp_path):
    return str(tmp_path / "store") if request.param == "local" else request.getfixturevalue("s3_bucket") + "/ak"


def write(root: Path, files: dict[str, bytes | str]) -> Path:
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data.encode() if isinstance(data, str) else data)
    return root


def box(cls: int) -> str:
    return f"{cls} 0.5 0.5 0.2 0.2\n"


@pytest.fixture
def pets(tmp_path, store_uri, cli):
    """pets:v0 and v1: v1 adds a val image (2 dogs), removes b (1 cat), relabels a (1 cat -> 2
    birds) and re-encodes c with another size; d and its label stay."""
    root = write(
        tmp_path / "pets",
        {
            "data.yaml": "path: .\ntrain: images/train\nval: images/val\nnames: [cat, dog, bird]\n",
            "images/train/a.jpg": b"\xff\xd8a" * 10,
            "labels/train/a.txt": box(0),
            "images/train/b.jpg": b"\xff\xd8b" * 11,
            "labels/train/b.txt": box(0),
            "images/train/c.jpg": b"\xff\xd8c" * 12,
            "labels/train/c.txt": box(1),
            "images/val/d.jpg": b"\xff\xd8d" * 13,
            "labels/val/d.txt": box(1) + box(1),
        },
    )
    cli("log-dataset", str(root), "--store", store_uri)
    for rel in ("images/train/b.jpg", "labels/train/b.txt"):
        (root / rel).unlink()
    write(
        root,
        {
            "images/val/e.jpg": b"\xff\xd8e" * 14,
            "labels/val/e.txt": box(1) + box(1),
            "labels/train/a.txt": box(2) + box(2),
            "images/train/c.jpg": b"\xff\xd8C" * 20,
        },
    )
    cli("log-dataset", str(root), "--store", store_uri)
    return root


def test_diff_lists_files_with_sizes_and_label_counts_per_class(pets, store_uri, cli):
    out = last_json(cli("diff", "pets:v0", "pets:v1", "--store", store_uri, "--json"))
    assert (out["a"], out["b"]) == ("pets:v0", "pets:v1")
    assert out["added"] == [{"path": "images/val/e.jpg", "size": 42}, {"path": "labels/val/e.txt", "size": 36}]
    assert out["removed"] == [{"path": "images/train/b.jpg", "size": 33}, {"path": "labels/train/b.txt", "size": 18}]
    assert out["changed"] == [
        {"path": "images/train/c.jpg", "size_a": 36, "size_b": 60},
        {"path": "labels/train/a.txt", "size_a": 18, "size_b": 36},
    ]
    assert out["unchanged"] == 5  # data.yaml, a.jpg, c.txt, d.jpg, d.txt
    # cat: a lost 1, b removed 1 -> -2; dog: e adds 2; bird: a gained 2. d's 2 dogs are unchanged: not read.
    assert out["labels"] == {
        "files_read": 4,
        "classes": [
            {"class": 0, "name": "cat", "before": 2, "after": 0, "change": -2},
            {"class": 1, "name": "dog", "before": 0, "after": 2, "change": 2},
            {"class": 2, "name": "bird", "before": 0, "after": 2, "change": 2},
        ],
    }
    human = cli("diff", "pets:v0", "pets:latest", "--store", store_uri).stdout.splitlines()
    assert human[0].startswith("pets:v0 -> pets:v1: 2 added, 2 removed, 2 changed, 5 unchanged")
    assert "  + images/val/e.jpg  (42 B)" in human and "  - labels/train/b.txt  (18 B)" in human
    assert "  ~ images/train/c.jpg  (36 B -> 60 B)" in human
    assert human[-1] == "boxes per class (4 differing label files read): cat -2, dog +2, bird +2"


def test_diff_of_versions_that_are_not_datasets_has_no_label_counts(tmp_path, store_uri):
    store = artifactkit.open_store(store_uri)
    store.log_files({"labels/x.txt": box(0).encode(), "w.bin": b"1"}, name="m", type="model")
    store.log_files({"labels/x.txt": box(1).encode(), "w.bin": b"1"}, name="m", type="model")
    from artifactkit.diff import diff_versions

    d = diff_versions(store, "m:v0", "m:v1")
    assert d.labels is None and "labels" not in d.summary()
    assert [p for p, *_ in d.changed] == ["labels/x.txt"] and d.unchanged == 1


def test_diff_shows_what_changed_and_flags_a_malformed_label_line(tmp_path, store_uri, cli):
    """Whoever broke a label is who needs the diff: it shows every change, names the bad line,
    and counts that file on neither side (here only b's change is counted)."""
    store = artifactkit.open_store(store_uri)
    files = {
        "data.yaml": b"names: [cat, dog]\n",
        "images/a.jpg": b"a",
        "labels/a.txt": box(0).encode(),
        "images/b.jpg": b"b",
        "labels/b.txt": box(0).encode(),
    }
    store.log_files(files, name="d")
    store.log_files({**files, "labels/a.txt": b"7 0.5 0.5 0.1 0.1\n", "labels/b.txt": box(1).encode()}, name="d")
    out = last_json(cli("diff", "d:v0", "d:v1", "--store", store_uri, "--json"))
    assert [c["path"] for c in out["changed"]] == ["labels/a.txt", "labels/b.txt"]
    assert [(c["name"], c["change"]) for c in out["labels"]["classes"]] == [("cat", -1), ("dog", 1)]
    [why] = out["labels"]["malformed"]
    assert "d:v1/labels/a.txt:1: class id 7 not in 0..1" in why
    proc = cli("diff", "d:v0", "d:v1", "--store", store_uri)
    assert "  ~ labels/a.txt  (18 B -> 18 B)" in proc.stdout.splitlines() and proc.stderr == ""
    assert proc.stdout.splitlines()[-1].startswith("  ! malformed, not counted: ") and "labels/a.txt:1" in proc.stdout


def test_pull_include_fetches_only_matching_files(pets, store_uri, cli, tmp_path):
    dest = tmp_path / "out"
    write(dest, {"notes.txt": "mine", "images/val/old.jpg": b"stale"})
    out = last_json(
        cli(
            "pull",
            "pets:v1",
            str(dest),
            "--include",
            "images/val/*",
            "--include",
            "data.yaml",
            "--store",
            store_uri,
            "--json",
        )
    )
    got = sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file())
    assert got == ["data.yaml", "images/val/d.jpg", "images/val/e.jpg", "images/val/old.jpg", "notes.txt"]
    assert (out["files"], out["written_files"]) == (3, 3)
    assert out["extra_files"] == ["images/val/old.jpg"]  # notes.txt matches no --include: not ours to judge
    assert (dest / "images/val/e.jpg").read_bytes() == (pets / "images/val/e.jpg").read_bytes()
    # '*' matches across '/': every label file of every split
    out = last_json(
        cli(
            "pull",
            "pets:v1",
            str(dest),
            "--include",
            "labels/*",
            "--include",
            "images/val/*",
            "--delete",
            "--store",
            store_uri,
            "--json",
        )
    )
    assert (out["written_files"], out["reused_files"], out["deleted_files"]) == (4, 2, 1)
    got = sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file())
    assert got == [
        "data.yaml",
        "images/val/d.jpg",
        "images/val/e.jpg",
        "labels/train/a.txt",
        "labels/train/c.txt",
        "labels/val/d.txt",
        "labels/val/e.txt",
        "notes.txt",
    ]


def test_pull_include_matching_nothing_is_one_line(pets, store_uri, cli, tmp_path):
    proc = cli("pull", "pets:v1", str(tmp_path / "out"), "--include", "videos/*", "--store", store_uri, check=False)
    assert proc.returncode == 1
    assert proc.stderr.strip() == "error: no file of pets:v1 matches --include 'videos/*'"
    assert not (tmp_path / "out").exists()


def test_cat_writes_one_file_byte_for_byte(pets, store_uri, cli, tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "artifactkit", "cat", "pets:v1", "images/train/c.jpg", "--store", store_uri],
        capture_output=True,
    )
    assert proc.returncode == 0 and proc.stdout == b"\xff\xd8C" * 20  # binary, untouched
    assert cli("cat", "pets:v0", "labels/train/a.txt", "--store", store_uri).stdout == box(0)


def test_cat_streams_a_large_file(store_uri, tmp_path):
    big = write(tmp_path / "big", {"blob.bin": os.urandom(BIG), "small.txt": "s"})
    artifactkit.open_store(store_uri).log_folder(big, name="big")
    out = tmp_path / "copy.bin"
    with out.open("wb") as f:
        proc = subprocess.run(
            [sys.executable, "-m", "artifactkit", "cat", "big:v0", "blob.bin", "--store", store_uri],
            stdout=f,
            stderr=subprocess.PIPE,
        )
    assert proc.returncode == 0, proc.stderr
    assert out.read_bytes() == (big / "blob.bin").read_bytes()


def test_cat_refuses_a_corrupt_blob_before_writing_anything(tmp_path, cli):
    big = write(tmp_path / "big", {"blob.bin": os.urandom(BIG), "small.txt": "s"})
    store = artifactkit.open_store(str(tmp_path / "store"))
    record = store.log_folder(big, name="big").record
    for entry in store.entries(record):
        path = tmp_path / "store" / object_key(entry.digest)
        path.chmod(0o644)
        path.write_bytes(b"X" + path.read_bytes()[1:])
    for name in ("blob.bin", "small.txt"):
        proc = subprocess.run(
            [sys.executable, "-m", "artifactkit", "cat", "big:v0", name, "--store", str(tmp_path / "store")],
            capture_output=True,
            text=False,
        )
        assert proc.returncode == 1 and proc.stdout == b""
        assert b"blob is corrupt" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_cat_of_a_missing_path_or_a_folder_is_one_line(pets, store_uri, cli):
    proc = cli("cat", "pets:v1", "images/train/b.jpg", "--store", store_uri, check=False)
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.strip().endswith("pets:v1: no file 'images/train/b.jpg'")
    proc = cli("cat", "pets:v1", "labels", "--store", store_uri, check=False)
    assert proc.returncode == 1
    assert proc.stderr.strip().endswith(
        "pets:v1: 'labels' is a folder of 4 files (pull --include 'labels/*' fetches them)"
    )


def test_store_entries_filters_by_prefix(pets, store_uri):
    store = artifactkit.open_store(store_uri)
    record = store.resolve("pets:v1")
    assert [e.path for e in store.entries(record, prefix="labels/val/")] == ["labels/val/d.txt", "labels/val/e.txt"]
    assert [e.path for e in store.entries(record)] == [e.path for e in store.manifest(record).entries]


@pytest.mark.parametrize(
    "args", [["lineage", "pets:v1"], ["diff", "pets:v0", "pets:v1"], ["cat", "pets:v1", "data.yaml"]]
)
def test_inspect_commands_do_not_import_torch_or_wandb(tmp_path, args, cli):
    root = write(
        tmp_path / "pets",
        {"data.yaml": "names: [cat]\ntrain: images\nval: images\n", "images/a.jpg": b"a", "labels/a.txt": box(0)},
    )
    store = str(tmp_path / "s")
    cli("log-dataset", str(root), "--store", store)
    write(root, {"labels/a.txt": box(0) + box(0)})
    cli("log-dataset", str(root), "--store", store)
    proc, loaded = run_cli_modules(*args, "--store", store, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "artifactkit_cli.inspect_commands" in loaded and not {"torch", "wandb", "fsspec", "s3fs"} & loaded
