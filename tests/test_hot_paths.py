"""The per-file hot paths of a large log (issue 32): the fewest system calls, no slow library call
where a shortcut gives the same answer."""

import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from artifactkit import hashing
from artifactkit.ingest import _absolute


def test_read_file_reads_a_small_file_in_one_call_and_a_grown_one_to_its_end(tmp_path, monkeypatch):
    path = tmp_path / "f"
    path.write_bytes(b"x" * 1000)
    calls = []
    real = os.read
    monkeypatch.setattr(hashing.os, "read", lambda fd, n: calls.append(n) or real(fd, n))
    assert hashing.read_file(str(path), 1000) == b"x" * 1000
    assert calls == [1001]  # a short read of size + 1 is the end: no second call to find it
    calls.clear()
    assert hashing.read_file(str(path), 10) == b"x" * 1000  # grew since its stat: read on to the end
    assert hashing.read_file(str(path)) == b"x" * 1000


@given(st.text(alphabet="/.ab", max_size=10))
def test_the_stat_cache_key_shortcut_is_abspath(path):
    assert _absolute(path) == os.path.abspath(path)


@pytest.mark.parametrize("kept_max", [2_000_000, 5])
def test_pull_reads_each_tree_once_unless_the_version_is_too_large_to_keep(tmp_path, monkeypatch, kept_max):
    """The plan's entries are kept (compactly) for the write pass: each tree is read and
    validated once, not twice; above _KEPT_MAX files the write pass reads the trees again."""
    import artifactkit
    from artifactkit import transfer
    from artifactkit.store import Store

    files = {f"d{i}/f{j}.bin": os.urandom(50 + j) for i in range(3) for j in range(4)}
    files["top.txt"] = b"top"
    store = artifactkit.open_store(str(tmp_path / "s"))
    store.log_files(files, name="t", entry_meta={"d1/f2.bin": {"dtype": "float32"}})
    reads = []
    real = Store.read_tree
    monkeypatch.setattr(Store, "read_tree", lambda self, digest: reads.append(digest) or real(self, digest))
    monkeypatch.setattr(transfer, "_KEPT_MAX", kept_max)
    artifactkit.pull(store, "t", tmp_path / "out")
    assert {
        p.relative_to(tmp_path / "out").as_posix(): p.read_bytes() for p in (tmp_path / "out").rglob("*") if p.is_file()
    } == files
    assert len(reads) == len(set(reads)) * (1 if kept_max > len(files) else 2)
    reads.clear()
    assert artifactkit.pull(store, "t", tmp_path / "out").written_files == 0
    kept = transfer._Kept()
    entries = list(store.entries(store.resolve("t")))
    assert kept.add("d1", [e for e in entries if e.path.startswith("d1/")])
    assert [e.model_dump() for e in next(iter(kept))[1]] == [
        e.model_dump() for e in entries if e.path.startswith("d1/")
    ]
