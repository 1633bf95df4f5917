"""Checkpoint encoding: exact round trips without pickle, dedup of unchanged tensors, errors."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch

import artifactkit
from artifactkit import checkpoint
from artifactkit.errors import IntegrityError, InvalidInput
from artifactkit.layout import object_key


def sample_state():
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(2, 3, 8, 8)).sum().backward()
    opt.step()
    return {
        "model": model.state_dict(),
        "optimizer": opt.state_dict(),
        "bf16": torch.arange(6, dtype=torch.bfloat16).reshape(2, 3),
        "empty": torch.empty(0, 3),
        "epoch": 3,
        "best": 0.25,
        "nan": float("nan"),
        "name": "x",
        "none": None,
        "rng": {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()},
    }


def assert_same(a, b):
    kind = lambda x: dict if isinstance(x, dict) else type(x)  # noqa: E731  (OrderedDict loads as dict)
    assert kind(a) is kind(b), (type(a), type(b))
    if isinstance(a, torch.Tensor):
        raw = lambda t: t.reshape(-1).view(torch.uint8)  # noqa: E731  (bitwise: NaN == NaN here)
        assert a.dtype == b.dtype and a.shape == b.shape and torch.equal(raw(a), raw(b))
    elif isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and np.array_equal(a, b)
    elif isinstance(a, dict):
        assert list(a) == list(b)
        for k in a:
            assert_same(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            assert_same(x, y)
    elif isinstance(a, float) and a != a:
        assert b != b
    else:
        assert a == b


def test_round_trip_is_exact(tmp_path):
    store = artifactkit.open_store(str(tmp_path / "s"))
    state = sample_state()
    checkpoint.save(store, "r1-model", state)
    loaded = checkpoint.load(store, "r1-model:latest")
    assert_same(state, loaded)
    random.setstate(loaded["rng"]["python"])  # restorable as-is
    np.random.set_state(loaded["rng"]["numpy"])
    torch.set_rng_state(loaded["rng"]["torch"])


def test_unchanged_tensors_are_stored_once(tmp_path):
    store = artifactkit.open_store(str(tmp_path / "s"))
    state = {"frozen": torch.randn(1000), "trained": torch.randn(1000), "epoch": 1}
    first = checkpoint.save(store, "m", state)
    state["trained"] = state["trained"] + 1
    state["epoch"] = 2
    second = checkpoint.save(store, "m", state)
    assert first.uploaded_files == 3
    assert second.uploaded_files == 2  # the changed tensor and the skeleton
    assert second.uploaded_bytes < 4000 + 500


def test_background_saver_surfaces_errors(tmp_path):
    store = artifactkit.open_store(str(tmp_path / "s"))
    saver = checkpoint.BackgroundSaver(store, "bad name!")
    saver.save({"w": torch.ones(2)})
    with pytest.raises(artifactkit.InvalidInput, match="bad name"):
        saver.wait()
    saver.close()


def test_background_saver_copies_before_training_mutates(tmp_path):
    store = artifactkit.open_store(str(tmp_path / "s"))
    w = torch.zeros(100_000)
    saver = checkpoint.BackgroundSaver(store, "m")
    saver.save({"w": w})
    w.add_(1)  # training goes on while the save is in flight
    saver.close()
    assert torch.count_nonzero(checkpoint.load(store, "m")["w"]) == 0


def test_corrupt_tensor_blob(tmp_path):
    store = artifactkit.open_store(str(tmp_path / "s"))
    result = checkpoint.save(store, "m", {"w": torch.ones(10)})
    entry = store.manifest(result.record).by_path()["tensors/000000"]
    blob = tmp_path / "s" / object_key(entry.digest)
    blob.write_bytes(b"\0" * entry.size)
    with pytest.raises(IntegrityError, match="corrupt"):
        checkpoint.load(store, "m")


def forge(store, skeleton, tensors=None, metas=None):
    """A version a hostile store could hold: any skeleton bytes, any tensor entries and meta."""
    files = {checkpoint.SKELETON: skeleton if isinstance(skeleton, bytes) else json.dumps(skeleton).encode()}
    files.update(tensors or {})
    store.log_files(files, name="forged", type="model", entry_meta=metas or {})


ONE = {"kind": "tensor", "dtype": "float32", "shape": [2]}


@pytest.mark.parametrize(
    "tensors, metas, error, message",
    [
        (
            {"tensors/0": b"\0" * 16},
            {"tensors/0": {"kind": "ndarray", "dtype": "|O", "shape": [2]}},
            InvalidInput,
            "'|O'",
        ),
        (
            {"tensors/0": b"\0" * 16},
            {"tensors/0": {"kind": "ndarray", "dtype": "f4,i4", "shape": [2]}},
            InvalidInput,
            "dtype",
        ),
        (
            {"tensors/0": b"\0" * 8},
            {"tensors/0": {"kind": "tensor", "dtype": "__class__", "shape": [2]}},
            InvalidInput,
            "dtype",
        ),
        (
            {"tensors/0": b"\0" * 8},
            {"tensors/0": {"kind": "tensor", "dtype": ["float32"], "shape": [2]}},
            InvalidInput,
            "dtype",
        ),
        (
            {"tensors/0": b"\0" * 8},
            {"tensors/0": {"kind": "pickle", "dtype": "float32", "shape": [2]}},
            InvalidInput,
            "pickle",
        ),
        ({"tensors/0": b"\0" * 8}, {}, InvalidInput, "no dtype/shape"),
        ({"tensors/0": b"\0" * 8}, {"tensors/0": {**ONE, "shape": [-2, -1]}}, InvalidInput, "shape"),
        ({"tensors/0": b"\0" * 8}, {"tensors/0": {**ONE, "shape": "2"}}, InvalidInput, "shape"),
        ({"tensors/0": b"\0" * 8}, {"tensors/0": {**ONE, "shape": [2.0]}}, InvalidInput, "shape"),
        ({"tensors/0": b"\0" * 8}, {"tensors/0": {**ONE, "shape": [1] * 100}}, InvalidInput, "shape"),
        ({"tensors/0": b"\0" * 8}, {"tensors/0": {**ONE, "shape": [2**62, 2**62]}}, IntegrityError, "bytes where"),
        (
            {"tensors/0": b"\0" * 7},
            {"tensors/0": {"kind": "ndarray", "dtype": "<f4", "shape": [2]}},
            IntegrityError,
            "bytes where",
        ),
    ],
    ids=[
        "object-array",
        "structured-array",
        "not-a-dtype",
        "dtype-not-a-string",
        "unknown-kind",
        "no-meta",
        "negative-shape",
        "shape-not-a-list",
        "float-shape",
        "too-many-dims",
        "huge-shape",
        "short-array",
    ],
)
def test_forged_tensor_entries_are_refused(tmp_path, tensors, metas, error, message):
    store = artifactkit.open_store(str(tmp_path / "s"))
    forge(store, {"w": {"__tensor__": "tensors/0"}}, tensors, metas)
    with pytest.raises(error, match=message) as caught:
        checkpoint.load(store, "forged:latest")
    assert "forged:v0 tensors/0" in str(caught.value)


@pytest.mark.parametrize(
    "skeleton, message",
    [
        ({"w": {"__tensor__": "tensors/000009"}}, "'tensors/000009' is missing"),
        ({"w": {"__tensor__": ["tensors/0"]}}, "malformed"),
        ({"w": {"__tensor__": "tensors/0", "x": 1}}, "malformed"),
        ({"w": {"__tuple__": 3}}, "malformed"),
        ({"w": {"__dict__": [[1]]}}, "malformed"),
        ({"w": {"__dict__": [[[1], 2]]}}, "dict key"),
        (json.loads("[" * 500 + "]" * 500), "deeper than"),
        (b"[" * 100_000 + b"]" * 100_000, "RecursionError"),
        (b"\xff\xfe not json", "not JSON"),
    ],
    ids=[
        "missing-tensor",
        "tensor-tag-list",
        "tensor-tag-extra-key",
        "tuple-tag-int",
        "dict-tag-short-pair",
        "dict-tag-list-key",
        "nested-500",
        "nested-100000",
        "not-utf8",
    ],
)
def test_forged_skeletons_are_refused(tmp_path, skeleton, message):
    store = artifactkit.open_store(str(tmp_path / "s"))
    forge(store, skeleton, {"tensors/0": b"\0" * 8}, {"tensors/0": ONE})
    with pytest.raises(InvalidInput, match=message) as caught:
        checkpoint.load(store, "forged:latest")
    assert "forged:v0 state.json" in str(caught.value)


@pytest.mark.parametrize(
    "value",
    [np.array([object()]), np.zeros(2, dtype="f4,i4"), torch.zeros(2).to_sparse()],
    ids=["object-array", "structured-array", "sparse-tensor"],
)
def test_unencodable_values_are_refused_on_save(tmp_path, value):
    store = artifactkit.open_store(str(tmp_path / "s"))
    with pytest.raises(InvalidInput, match="no safe encoding"):
        checkpoint.save(store, "m", {"w": value})


def test_nesting_up_to_the_limit_round_trips_and_deeper_is_refused_on_save(tmp_path):
    store = artifactkit.open_store(str(tmp_path / "s"))
    deep = torch.ones(1)
    for i in range(checkpoint.MAX_DEPTH):
        deep = {"x": deep} if i % 3 else ({1: deep} if i % 2 else (deep,))
    checkpoint.save(store, "m", deep)
    assert_same(checkpoint.load(store, "m"), deep)
    with pytest.raises(InvalidInput, match="deeper than"):
        checkpoint.save(store, "m", [deep])
