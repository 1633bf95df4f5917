"""Thin checkpoint history (issue 30): only the newest `keep_full` checkpoints keep the full
training state (in <run>-state); older ones keep EMA weights and metadata, sharing their blobs;
resume from a thinned checkpoint is refused naming the newest full one. Also the retention rules
on `train` (a union: --keep-within keeps what --keep-last alone would delete)."""

from __future__ import annotations

import pytest
from tiny_run import train_tiny

import artifactkit
from artifactkit import checkpoint, lifecycle
from artifactkit.errors import InvalidInput
from artifactkit.maintenance import gc
from artifactkit.usage import du


def tensor_blobs(store, ref) -> set[str]:
    return {e.digest for e in store.manifest(store.resolve(ref)).entries if e.path.startswith("tensors/")}


def test_only_the_newest_checkpoints_keep_the_full_state(tmp_path):
    pytest.importorskip("torch")
    from artifactkit.detector.chess import generate

    data = generate(tmp_path / "chess", n_train=8, n_val=4, n_heldout=2, imgsz=64).parent
    where = str(tmp_path / "s")
    train_tiny(
        where,
        data,
        run_id="r",
        epochs=3,
        save_period=1,
        keep_full=2,
        keep_last=1,
        keep_within="1h",
        bbox_interval=0,
        report=lambda e, d: None,
    )
    store = artifactkit.open_store(where)
    assert store.version_numbers("r-model") == [0, 1, 2]  # keep-within 1h keeps what keep-last 1 would not
    assert store.version_numbers("r-state") == [1, 2]  # the two newest checkpoints' full states
    for n in (0, 1, 2):
        thin = checkpoint.load(store, f"r-model:v{n}")
        assert "optimizer" not in thin and "model" not in thin and thin["epoch"] == n + 1 and thin["ema"]["model"]
    assert store.resolve("r-model:v2").metadata["training_state"] == "r-state:v2"
    assert tensor_blobs(store, "r-model:v2") < tensor_blobs(store, "r-state:v2")  # the EMA tensors are the same blobs
    assert artifactkit.load_model("r-model:v0", store=where).names  # a thinned checkpoint still loads for use
    full = checkpoint.load_full(store, "r-model", "r-state")
    assert full["epoch"] == 3 and "optimizer" in full and "rng" in full
    gc(store, grace_seconds=0)
    model, state = (next(a for a in du(store).artifacts if a.name == name) for name in ("r-model", "r-state"))
    assert state.own > 2 * model.own  # what only resume needs (raw weights, AdamW moments) is most of it
    lifecycle.delete_versions(store, "r-state", [2])  # the newest checkpoint loses its full state
    with pytest.raises(
        InvalidInput,
        match=r"r-model:v2 is thinned \(its training state r-state:v2 was deleted\).*"
        r"the newest full checkpoint is r-model:v1",
    ):
        artifactkit.resume(f"{where}/runs/r", epochs=4)
    assert lifecycle.thin_history(store, "r-model", "r-state", 1) == []  # nothing newer than v1's to keep
    lifecycle.delete_versions(store, "r-state", [1])
    with pytest.raises(InvalidInput, match="no checkpoint of the run keeps its full training state"):
        artifactkit.resume(f"{where}/runs/r", epochs=4)


def test_a_forged_training_state_link_is_refused(tmp_path):
    store = artifactkit.open_store(str(tmp_path / "s"))
    checkpoint.save(store, "r-model", {"epoch": 1}, metadata={"training_state": "other-state:v0"})
    with pytest.raises(InvalidInput, match=r"r-model:v0: metadata training_state is 'other-state:v0', not r-state:vN"):
        checkpoint.load_full(store, "r-model", "r-state")
