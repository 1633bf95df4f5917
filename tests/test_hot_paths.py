"""The per-file hot paths of a large log (issue 32): the fewest system calls, no slow library call
where a shortcut gives the same answer."""

import os

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
