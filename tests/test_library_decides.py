"""Issue 28 item 4: what the CLI used to decide for val, demo-data, ls, rm and train's trackers is
artifactkit's, so `import artifactkit` decides the same as the CLI (which only parses and prints)."""

from __future__ import annotations

import inspect

import pytest
from test_store import make_folder

from artifactkit import lifecycle
from artifactkit.errors import InvalidInput, NotFound
from artifactkit.layout import versions_prefix
from artifactkit.store import open_store


def test_val_takes_exactly_one_of_weights_or_preds_and_no_model_options_with_preds(tmp_path):
    from artifactkit.val import val

    with pytest.raises(InvalidInput, match="exactly one of --weights"):
        val("data.yaml")
    with pytest.raises(InvalidInput, match="exactly one of --weights"):
        val("data.yaml", weights="w.pt", preds="p.json")
    with pytest.raises(InvalidInput, match="--iou applies to --weights only"):
        val("data.yaml", preds="p.json", iou=0.5)
    with pytest.raises(InvalidInput, match="--imgsz applies to --weights only"):
        val("data.yaml", preds="p.json", imgsz=64)


def test_demo_data_defaults_are_generates_and_the_help_states_them(cli):
    from artifactkit.detector.chess import DEFAULTS, generate

    params = inspect.signature(generate).parameters
    assert {k: params[k].default for k in DEFAULTS} == DEFAULTS
    from cli.train_commands import demo_data

    options = inspect.signature(demo_data).parameters
    assert all(options[k].default is None for k in DEFAULTS)  # the CLI passes only what was given
    shown = " ".join(cli("demo-data", "--help").stdout.split())
    for k, v in DEFAULTS.items():
        assert f"(default: {v})" in shown, k


def test_listing_skips_an_artifact_left_with_no_version(tmp_path):
    from artifactkit.listing import artifact_rows

    s = open_store(str(tmp_path / "store"))
    s.log_folder(make_folder(tmp_path / "a", n=2), name="a")
    s.log_folder(make_folder(tmp_path / "b", n=2), name="b")
    lifecycle.delete_versions(s, "b", None, force=True)
    s.backend.write(versions_prefix("b") + "/1.json.tmp", b"{")  # a write in progress: no version yet
    assert "b" in s.artifact_names()
    assert [(r["name"], r["versions"], r["latest"]) for r in artifact_rows(s)] == [("a", 1, "v0")]


def test_rm_plan_refuses_an_alias_and_counts_the_versions(tmp_path):
    from artifactkit.removal import Removal, planned_removal

    s = open_store(str(tmp_path / "store"))
    folder = make_folder(tmp_path / "a", n=2)
    s.log_folder(folder, name="a")
    (folder / "extra.txt").write_text("x")
    s.log_folder(folder, name="a")
    with pytest.raises(InvalidInput, match=r"rm a:latest: give NAME:vN"):
        planned_removal(s, "a:latest")
    assert planned_removal(s, "a") == Removal("a", None, 2)
    assert planned_removal(s, "a:v1") == Removal("a", 1, 1)
    with pytest.raises(NotFound, match="no artifact named 'nope'"):
        planned_removal(s, "nope")


def test_tracker_choice_is_the_librarys(monkeypatch):
    from artifactkit.tracking import choose
    from artifactkit.wandb import WandbTracker

    assert choose(None) is None  # a resume continues the run's own trackers
    assert choose(False) == []
    (tracker,) = choose(True, project="p", upload_dataset=True)
    assert isinstance(tracker, WandbTracker)
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert choose(True) == []  # only rank 0 tracks
