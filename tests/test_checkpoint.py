"""Checkpoint encoding: exact round trips without pickle, dedup of unchanged tensors, errors."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

import artifactkit
from artifactkit import checkpoint
from artifactkit.errors import IntegrityError
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
        "epoch": 3, "best": 0.25, "nan": float("nan"), "name": "x", "none": None,
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
