"""`resume` continues the trackers a run had: a run trained with --wandb keeps mirroring to the
same W&B run without the flag being repeated (real wandb SDK, offline; read back from its files),
and --no-wandb turns that off."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("wandb")

from test_wandb import ak, demo_data, offline_runs, wandb_env  # noqa: E402

TINY = ("--imgsz", "64", "--batch", "8", "--workers", "0", "--save-period", "1", "--bbox-interval", "0")


def test_resume_keeps_mirroring_to_the_runs_wandb_run_unless_told_not_to(tmp_path):
    env = wandb_env(tmp_path)
    data, store = demo_data(tmp_path / "chess", env), tmp_path / "store"
    ak(
        "train",
        "--data",
        str(data),
        "--store",
        str(store),
        "--run-id",
        "wbcont",
        "--epochs",
        "2",
        *TINY,
        "--wandb",
        "--project",
        "ak-cont",
        env=env,
    )
    uri = str(store / "runs" / "wbcont")
    resumed = ak("resume", uri, "--epochs", "3", "--json", env=env)  # no --wandb
    assert json.loads(resumed.stdout.strip().splitlines()[-1])["epochs_completed"] == 3
    first, second = offline_runs(Path(env["WANDB_DIR"]), "wbcont")
    assert (first.run_id, second.run_id) == ("wbcont", "wbcont") and second.project == "ak-cont"
    assert first.steps == [1, 2] and second.steps == [3]  # epoch 3 reached the same W&B run
    local = json.loads((store / "runs" / "wbcont" / "metrics" / "000003.json").read_text())
    assert second.history[3]["metrics/mAP50-95"] == pytest.approx(local["metrics"]["metrics/mAP50-95"])
    record = json.loads((store / "runs" / "wbcont" / "run.json").read_text())
    assert record["trackers"]["wandb"] == {"id": "wbcont", "project": "ak-cont", "entity": None, "mode": "offline"}

    ak("resume", uri, "--epochs", "4", "--no-wandb", env=env)
    assert len(offline_runs(Path(env["WANDB_DIR"]), "wbcont")) == 2  # no W&B run started
    assert json.loads((store / "runs" / "wbcont" / "run.json").read_text())["epochs_completed"] == 4
