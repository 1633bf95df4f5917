"""Running the real CLI in a subprocess, as a user would. (A module of its own, not conftest:
tests/detector has a conftest too, and `from conftest import` would find either.)"""

from __future__ import annotations

import os
import sys


def run_cli(*args: str, env: dict | None = None, cwd: str | os.PathLike | None = None, check: bool = True):
    """Run the real CLI in a subprocess (as a user would), returning the CompletedProcess."""
    import subprocess

    full_env = {**os.environ, **(env or {})}
    proc = subprocess.run(
        [sys.executable, "-m", "artifactkit", *args], capture_output=True, text=True, env=full_env, cwd=cwd,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"artifactkit {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def assert_bit_identical_twins(store_dir, straight: str, resumed: str, epochs: int) -> None:
    """The resumed run's final checkpoint equals the uninterrupted one's bit for bit, and its
    metrics hold each epoch once."""
    import torch

    import artifactkit
    from artifactkit import checkpoint, runs

    store = artifactkit.open_store(str(store_dir))
    a, b = (checkpoint.load(store, f"{run}-model:latest") for run in (straight, resumed))
    assert a["epoch"] == b["epoch"] == epochs
    for part in ("model", "ema"):
        x, y = (a[part], b[part]) if part == "model" else (a["ema"]["model"], b["ema"]["model"])
        assert x.keys() == y.keys()
        for key in x:
            assert torch.equal(x[key], y[key]), (part, key)
    assert [m["epoch"] for m in runs.read_metrics(store, resumed)] == list(range(1, epochs + 1))
