"""`train`, `val` and progress as a user sees them: the CLI and the Python API train the same
config from the same inputs (TrainConfig holds every default), errors name the flag typed,
progress lines appear when stderr is not a terminal, and val prints Ultralytics' per-class table."""

from __future__ import annotations

import json
import logging

import pytest
from clirunner import run_cli

TINY = ["--epochs", "1", "--imgsz", "64", "--batch", "4", "--workers", "0"]


@pytest.fixture(scope="module")
def chess(tmp_path_factory):
    from artifactkit.detector.chess import generate

    return generate(tmp_path_factory.mktemp("data") / "chess", n_train=8, n_val=4, n_heldout=0, imgsz=64).parent


def test_cli_and_api_train_the_same_config(chess, tmp_path, caplog):
    import artifactkit
    from artifactkit.runs import load_run

    store = str(tmp_path / "store")
    proc = run_cli(
        "train",
        "--data",
        str(chess),
        *TINY,
        "--set",
        "lr0=0.002",
        "--set",
        "patience=5",
        "--run-id",
        "cli",
        "--store",
        store,
        "--json",
    )
    # stderr is a pipe here: plain progress lines, each epoch's last batch among them
    assert "epoch 1/1  batch 2/2  box " in proc.stderr and " img/s  ETA " in proc.stderr
    assert "epoch 1/1  loss box" in proc.stderr
    with caplog.at_level(logging.INFO, logger="artifactkit"):
        artifactkit.train(
            store, data=str(chess), epochs=1, imgsz=64, batch=4, workers=0, lr0=0.002, patience=5, run_id="api"
        )
    logged = [r.getMessage() for r in caplog.records if r.name == "artifactkit"]
    assert any(m.startswith("epoch 1/1  batch 2/2") for m in logged) and any("loss box" in m for m in logged)
    s = artifactkit.open_store(store)
    cli, api = load_run(s, "cli").config, load_run(s, "api").config
    assert cli == api and cli["imgsz"] == 64 and cli["lr0"] == 0.002 and cli["patience"] == 5

    # val: the size the model was trained at, the keys training records, one row per class
    out = json.loads(
        run_cli("val", "--weights", f"{store}/runs/cli", "--data", str(chess), "--json").stdout.splitlines()[-1]
    )
    assert out["imgsz"] == 64 and out["images"] == 4
    assert set(out["metrics"]) == {"metrics/precision", "metrics/recall", "metrics/mAP50", "metrics/mAP50-95"}
    names = [c["class"] for c in out["classes"]]
    assert names[0] == "white-king" and len(names) == 12
    assert set(out["classes"][0]) == {"class", "images", "instances", "precision", "recall", "mAP50", "mAP50-95"}
    table = run_cli(
        "val", "--weights", f"{store}/runs/cli", "--data", str(chess), "--conf", "0.25", "--iou", "0.6"
    ).stdout
    header = next(line for line in table.splitlines() if "instances" in line)
    assert [w for w in header.replace("┃", " ").split()] == [
        "class",
        "images",
        "instances",
        "P",
        "R",
        "mAP50",
        "mAP50-95",
    ]
    first_words = [line.split()[0] for line in table.splitlines() if line.strip()]
    assert "all" in first_words and "white-king" in first_words  # one row each (plain aligned text)
    runs = json.loads(run_cli("runs", "--store", store, "--json").stdout.splitlines()[-1])["runs"]
    assert set(runs[0]["metrics"]) == set(out["metrics"])  # one spelling across train, runs and val


@pytest.mark.parametrize(
    "args, message",
    [
        (["--epochs", "0"], "error: --epochs: Input should be greater than or equal to 1 (got 0)"),
        (["--set", "lr0=fast"], "error: --set lr0: Input should be a valid number"),
        (["--set", "learning_rate=0.1"], "error: --set learning_rate: unknown train config key"),
        (
            ["--device", "0,1"],
            "error: --device: 2 GPUs train as one process each: run  CUDA_VISIBLE_DEVICES=0,1 torchrun "
            "--nproc-per-node 2",
        ),
        (["--epochs", "3", "--set", "epochs=4"], "error: --set epochs: given twice (also as --epochs)"),
    ],
)
def test_bad_options_name_the_flag_and_create_nothing(chess, tmp_path, args, message):
    store = str(tmp_path / "store")
    proc = run_cli("train", "--data", str(chess), "--store", store, *args, check=False)
    assert proc.returncode == 1 and len(proc.stderr.strip().splitlines()) == 1 and proc.stderr.startswith(message)
    assert not (tmp_path / "store" / "runs").exists()


def test_imgsz_off_the_stride_is_rounded_with_a_warning(chess, tmp_path):
    proc = run_cli(
        "train",
        "--data",
        str(chess),
        *TINY[:2],
        "--imgsz",
        "50",
        *TINY[4:],
        "--set",
        "bbox_interval=0",
        "--store",
        str(tmp_path / "store"),
        "--json",
    )
    assert "warning: imgsz 50 is not a multiple of the model's stride 32: training at 64" in proc.stderr
    import artifactkit
    from artifactkit.runs import load_run

    assert (
        load_run(
            artifactkit.open_store(str(tmp_path / "store")), json.loads(proc.stdout.splitlines()[-1])["run_id"]
        ).config["imgsz"]
        == 64
    )


def test_verify_and_push_report_progress(chess, tmp_path):
    import artifactkit
    from artifactkit.maintenance import verify
    from artifactkit.transfer import push

    src = artifactkit.open_store(str(tmp_path / "a"))
    src.log_folder(chess, name="chess")
    seen = []
    push(src, "chess", artifactkit.open_store(str(tmp_path / "b")), progress=lambda n, total: seen.append((n, total)))
    assert sum(n for n, _ in seen) == seen[-1][1] > 0
    seen.clear()
    assert verify(src, progress=lambda n, total: seen.append((n, total))).ok
    assert sum(n for n, _ in seen) == seen[-1][1] > 0 and len(seen) > 1
