"""A property of the store, under random sequences of log / edit / pull / gc on small folders:
after every step every version pulls byte-identical to what was logged, and verify is clean.
(Kills are real-process tests in test_crash.py and test_store_safety.py.)"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import artifactkit

NAMES = ["a.txt", "b.bin", "sub/c.txt", "sub/deep/d.bin", "e"]
ops = st.one_of(
    st.tuples(st.just("log")),
    st.tuples(st.just("write"), st.sampled_from(NAMES), st.binary(max_size=64)),
    st.tuples(st.just("same-size-edit"), st.sampled_from(NAMES)),
    st.tuples(st.just("remove"), st.sampled_from(NAMES)),
    st.tuples(st.just("pull"), st.integers(0, 20)),
    st.tuples(st.just("gc")),
)


def snapshot(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def apply(op: tuple, work: Path, store, logged: dict[int, dict[str, bytes]], tmp: Path) -> None:
    kind = op[0]
    if kind == "log":
        if snapshot(work):
            result = store.log_folder(work, name="ds")
            logged[result.record.version] = snapshot(work)
    elif kind == "write":
        (work / op[1]).parent.mkdir(parents=True, exist_ok=True)
        (work / op[1]).write_bytes(op[2])
    elif kind == "same-size-edit" and (work / op[1]).is_file():
        path = work / op[1]
        st_ = path.stat()
        path.write_bytes(bytes((b + 1) % 256 for b in path.read_bytes()))
        os.utime(path, ns=(st_.st_atime_ns, st_.st_mtime_ns))  # mtime restored, as touch -r does
    elif kind == "remove" and (work / op[1]).is_file():
        (work / op[1]).unlink()
    elif kind == "pull" and logged:
        version = sorted(logged)[op[1] % len(logged)]
        artifactkit.pull(store, f"ds:v{version}", work, force=True, delete=True)
        assert snapshot(work) == logged[version]
    elif kind == "gc":
        artifactkit.gc(store, grace_seconds=0)


def check(store, logged: dict[int, dict[str, bytes]], tmp: Path, step: int) -> None:
    assert artifactkit.verify(store).ok
    for version, files in logged.items():
        dest = tmp / f"check-{step}-{version}"
        artifactkit.pull(store, f"ds:v{version}", dest)
        assert snapshot(dest) == files


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(ops, min_size=1, max_size=8))
def test_every_version_pulls_as_logged_after_every_step(steps):
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        work = tmp / "ds"
        work.mkdir()
        (work / "a.txt").write_bytes(b"start")
        store = artifactkit.open_store(str(tmp / "store"))
        logged: dict[int, dict[str, bytes]] = {}
        for step, op in enumerate([("log",), *steps]):
            apply(op, work, store, logged, tmp)
            check(store, logged, tmp, step)
