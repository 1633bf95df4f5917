"""Weights & Biases, through the real wandb SDK in offline mode. What was recorded is read back
from the offline run's own files (the .wandb transaction log, the staged artifact files and the
run's media), never from a mock. The online paths run only when WANDB_API_KEY is set."""

from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("wandb")

import artifactkit  # noqa: E402
from artifactkit import checkpoint, open_store  # noqa: E402
from artifactkit.errors import IntegrityError, InvalidInput  # noqa: E402
from artifactkit.wandb import mirror  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RUN_ID = "wbkill1"
TINY = ("--epochs", "2", "--imgsz", "128", "--batch", "8", "--workers", "0")
FAKE_KEY = "0123456789abcdef" * 2 + "fakefake"  # 40 characters, never a real key; must never be echoed
ONLINE = pytest.mark.skipif(not os.environ.get("WANDB_API_KEY"), reason="online W&B paths need WANDB_API_KEY")


# -- reading an offline run -----------------------------------------------------------------
def wandb_records(path: Path):
    """The protobuf records of a .wandb file (LevelDB log format: 32 KiB blocks of chunks with a
    7-byte header; the file starts with its own 7-byte header). A torn tail is ignored."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    pos, buf = 7, b""
    while pos + 7 <= len(data):
        left = 32768 - pos % 32768
        if left < 7:
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if kind == 0 and length == 0:
            pos += left
            continue
        chunk, pos = data[pos + 7 : pos + 7 + length], pos + 7 + length
        buf = chunk if kind in (1, 2) else buf + chunk
        if kind in (1, 4) and pos <= len(data):
            record = pb.Record()
            record.ParseFromString(buf)
            yield record


def finished_records(folder: Path, timeout: float = 60) -> list:
    """wandb's own process may still be writing after the run (or its process) ended: wait for
    the exit record."""
    deadline = time.monotonic() + timeout
    while True:
        records = list(wandb_records(next(folder.glob("run-*.wandb"))))
        if any(r.WhichOneof("record_type") == "exit" for r in records) or time.monotonic() > deadline:
            return records
        time.sleep(0.2)


class OfflineRun:
    def __init__(self, folder: Path, finished: bool = True):
        self.folder = folder
        self.run_id = self.project = None
        self.history: dict[int, dict] = {}
        self.steps: list[int] = []
        self.artifacts: list[dict] = []
        records = finished_records(folder) if finished else wandb_records(next(folder.glob("run-*.wandb")))
        for r in records:
            kind = r.WhichOneof("record_type")
            if kind == "run":
                self.run_id, self.project = r.run.run_id, r.run.project
            elif kind == "history":
                self.steps.append(r.history.step.num)
                self.history[r.history.step.num] = {
                    i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in r.history.item
                }
            elif kind == "artifact":
                a = r.artifact
                self.artifacts.append(
                    {
                        "name": a.name,
                        "type": a.type,
                        "aliases": set(a.aliases),
                        "metadata": json.loads(a.metadata or "{}"),
                        "files": {e.path: e.local_path for e in a.manifest.contents},
                    }
                )

    def artifact(self, name: str, alias: str) -> dict:
        found = [a for a in self.artifacts if a["name"] == name and alias in a["aliases"]]
        assert found, f"no {name}:{alias} in {[(a['name'], sorted(a['aliases'])) for a in self.artifacts]}"
        return found[-1]

    def table(self, artifact: dict, name: str) -> dict:
        return json.loads(Path(artifact["files"][f"{name}.table.json"]).read_text())


def offline_runs(wandb_dir: Path, run_id: str, killed: int = 0) -> list[OfflineRun]:
    """The run's offline folders, oldest first; the first `killed` of them never finished."""
    folders = sorted((wandb_dir / "wandb").glob(f"offline-run-*-{run_id}"))
    return [OfflineRun(d, finished=i >= killed) for i, d in enumerate(folders)]


# -- environment: offline because there are no credentials, every wandb folder under tmp ------
def wandb_env(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("WANDB_API_KEY", "WANDB_MODE", "WANDB_IDENTITY_TOKEN_FILE")}
    for var, sub in (
        ("WANDB_DIR", "wandb-dir"),
        ("WANDB_DATA_DIR", "wandb-data"),
        ("WANDB_CACHE_DIR", "wandb-cache"),
        ("WANDB_CONFIG_DIR", "wandb-config"),
        ("WANDB_ARTIFACT_DIR", "wandb-artifacts"),
    ):
        (tmp / sub).mkdir(parents=True, exist_ok=True)
        env[var] = str(tmp / sub)
    env.update(
        NETRC=str(tmp / "no-netrc"),
        WANDB_SILENT="true",
        WANDB_BASE_URL="http://127.0.0.1:9",
        ARTIFACTKIT_CACHE_DIR=str(tmp / "ak-cache"),
        PYTHONPATH=str(ROOT),
    )
    return env


@pytest.fixture
def offline(tmp_path, monkeypatch):
    env = wandb_env(tmp_path)
    for key in ("WANDB_API_KEY", "WANDB_MODE", "WANDB_IDENTITY_TOKEN_FILE"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


def ak(*args: str, env: dict, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, "-m", "artifactkit", *args], capture_output=True, text=True, env=env, cwd=ROOT
    )
    if check and proc.returncode:
        raise AssertionError(f"artifactkit {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def demo_data(folder: Path, env: dict) -> Path:
    ak("demo-data", str(folder), "--n-train", "16", "--n-val", "8", "--n-heldout", "4", "--imgsz", "128", env=env)
    return folder / "data.yaml"


# -- one real run: trained with --wandb, SIGKILLed after its first checkpoint, resumed ---------
@pytest.fixture(scope="module")
def killed_and_resumed(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("wandb-run")
    env = wandb_env(tmp)
    data, store = demo_data(tmp / "chess", env), tmp / "store"
    cmd = [
        sys.executable,
        "-m",
        "artifactkit",
        "train",
        "--data",
        str(data),
        "--store",
        str(store),
        "--run-id",
        RUN_ID,
        *TINY,
        "--save-period",
        "1",
        "--bbox-interval",
        "1",
        "--wandb",
        "--project",
        "ak-test",
        "--upload-dataset",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    marker = store / "artifacts" / f"{RUN_ID}-model" / "versions" / "0.json"  # checkpoint v0 is committed
    deadline = time.monotonic() + 240
    while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)  # most likely before the tracker even saw the checkpoint
    train_err = proc.communicate(timeout=60)[1]
    assert proc.returncode == -signal.SIGKILL and marker.exists(), train_err
    resumed = ak("resume", str(store / "runs" / RUN_ID), "--wandb", "--json", env=env)
    return {
        "env": env,
        "store": store,
        "train_err": train_err,
        "resume": resumed,
        "runs": offline_runs(Path(env["WANDB_DIR"]), RUN_ID, killed=1),
    }


@pytest.mark.slow
def test_killed_run_resumes_the_same_wandb_run(killed_and_resumed):
    first, second = killed_and_resumed["runs"]
    assert (first.run_id, second.run_id) == (RUN_ID, RUN_ID)
    assert first.project == second.project == "ak-test"  # the project comes from the run record on resume
    summary = json.loads(killed_and_resumed["resume"].stdout.strip().splitlines()[-1])
    assert (summary["status"], summary["epochs_completed"]) == ("finished", 2)
    record = json.loads((killed_and_resumed["store"] / "runs" / RUN_ID / "run.json").read_text())
    assert record["trackers"]["wandb"] == {"id": RUN_ID, "project": "ak-test", "entity": None, "mode": "offline"}


@pytest.mark.slow
def test_resumed_run_logs_each_epoch_once_at_its_step(killed_and_resumed):
    first, second = killed_and_resumed["runs"]
    # What the killed process had written is timing-dependent (wandb buffers its log, and epoch 2
    # may have ended before the checkpoint of epoch 1 was committed); the resumed run, started from
    # that checkpoint, logs epoch 2 once, at step 2.
    assert set(first.steps) <= {1, 2} and second.steps == [2]
    local = json.loads((killed_and_resumed["store"] / "runs" / RUN_ID / "metrics" / "000002.json").read_text())
    row = second.history[2]
    assert set(local["metrics"]) <= set(row)  # the local run's names
    assert row["metrics/mAP50-95"] == pytest.approx(local["metrics"]["metrics/mAP50-95"])
    assert not any(k.startswith("system/") for k in row)  # system metrics are wandb's own
    assert row["bbox_debugger/count"] == 8 and len(row["bbox_debugger/all_boxes"]) == 8  # min(16, val images)


@pytest.mark.slow
def test_resumed_run_mirrors_both_checkpoints_and_its_evaluation(killed_and_resumed):
    second = killed_and_resumed["runs"][1]
    store = killed_and_resumed["store"]
    for epoch, version in ((1, "v0"), (2, "v1")):  # v0 again: the kill may have eaten it; W&B dedups a copy
        model = second.artifact(f"{RUN_ID}-model", f"epoch-{epoch}")
        assert model["type"] == "model" and {"latest", "best"} <= model["aliases"]
        assert model["metadata"]["artifactkit"]["version"] == version and model["metadata"]["epochs_trained"] == epoch
        assert model["files"]["state.json"].startswith(str(store))  # the store's own blob, not a copy
    evaluation = second.artifact(f"{RUN_ID}-evaluation", "epoch-2")
    table = second.table(evaluation, "evaluation")
    assert evaluation["type"] == "evaluation" and len(table["data"]) == 8


@pytest.mark.slow
def test_offline_run_says_once_how_to_sync(killed_and_resumed):
    first, second = killed_and_resumed["runs"]
    assert killed_and_resumed["train_err"].count("wandb sync") == 1
    hint = [line for line in killed_and_resumed["resume"].stderr.splitlines() if "wandb sync" in line]
    command = hint[0].split("to upload it later: ")[1]
    assert len(hint) == 1 and command == f"wandb sync {first.folder} {second.folder}"  # both, oldest first


@pytest.mark.slow
def test_model_artifact_rebuilds_the_checkpoint_exactly(killed_and_resumed, tmp_path):
    """The core of `resume wandb-artifact://`: a W&B model artifact's files rebuild the version."""
    model = killed_and_resumed["runs"][1].artifact(f"{RUN_ID}-model", "epoch-2")
    folder = tmp_path / "download"  # what W&B's download writes: each file at its artifact path
    for path, local in model["files"].items():
        (folder / path).parent.mkdir(parents=True, exist_ok=True)
        (folder / path).write_bytes(Path(local).read_bytes())
    dst = open_store(str(tmp_path / "fresh"))
    record = mirror.import_version(folder, dst, aliases=sorted(model["aliases"]))
    src = open_store(str(killed_and_resumed["store"]))
    assert record == src.resolve(f"{RUN_ID}-model:v1") == dst.resolve(f"{RUN_ID}-model:epoch-2")
    assert checkpoint.load(dst, f"{RUN_ID}-model:latest")["epoch"] == 2
    state = killed_and_resumed["runs"][1].artifact(f"{RUN_ID}-state", "epoch-2")  # thin history: its full state
    for path, local in state["files"].items():
        (tmp_path / "state" / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "state" / path).write_bytes(Path(local).read_bytes())
    mirror.import_version(tmp_path / "state", dst, expected_name=f"{RUN_ID}-state")
    assert "optimizer" in checkpoint.load_full(dst, f"{RUN_ID}-model", f"{RUN_ID}-state")
    run = json.loads((folder / mirror.RUN_FILE).read_text())
    assert run["dataset"] == "chess:v0" and run["trackers"]["wandb"]["id"] == RUN_ID


def _mirror_folder(tmp_path: Path, record_changes: dict) -> tuple[Path, object]:
    """A downloaded W&B artifact folder as mirror.py writes it, its version record forged."""
    from artifactkit.records import to_json

    src = open_store(str(tmp_path / "src"))
    record = src.log_files({"a.txt": b"a", "b/c.txt": b"c"}, name="r1-model", type="model").record
    folder = tmp_path / "download"
    for path, data in {
        "a.txt": b"a",
        "b/c.txt": b"c",
        mirror.MANIFEST_FILE: src.manifest(record).canonical_json(),
        mirror.VERSION_FILE: to_json(record.model_copy(update=record_changes)),
    }.items():
        (folder / path).parent.mkdir(parents=True, exist_ok=True)
        (folder / path).write_bytes(data)
    return folder, record


@pytest.mark.parametrize(
    "changes, expected, says",
    [
        ({"name": "../../../escape"}, None, "invalid artifact name"),
        ({"name": "r1-model\n"}, None, "invalid artifact name"),
        ({}, "r2-model", "the record is of r1-model:v0, not of r2-model"),
    ],
)
def test_a_forged_version_record_from_wandb_is_refused_before_anything_is_written(tmp_path, changes, expected, says):
    """The W&B rebuild path validates records as a store read does (no wandb run needed)."""
    folder, _ = _mirror_folder(tmp_path, changes)
    dst = open_store(str(tmp_path / "dst"))
    with pytest.raises(InvalidInput, match=says):
        mirror.import_version(folder, dst, expected_name=expected)
    assert not dst.exists() and not list(tmp_path.rglob("*escape*"))


def test_a_mirror_folder_rebuilds_its_version_in_commit_order(tmp_path):
    folder, record = _mirror_folder(tmp_path, {})
    dst = open_store(str(tmp_path / "dst"))
    assert mirror.import_version(folder, dst, aliases=["best", "latest", "v0"], expected_name="r1-model") == record
    assert dst.resolve("r1-model:best") == record and artifactkit.verify(dst).ok
    assert mirror.import_version(folder, dst) == record  # again: create-or-same, nothing new
    (folder / "b" / "c.txt").write_bytes(b"tampered")
    with pytest.raises(IntegrityError, match="does not match r1-model:v0"):
        mirror.import_version(folder, open_store(str(tmp_path / "dst2")))


# -- the tracker on its own: dataset tables, evaluation with predictions, the debugger ---------
def _evaluation_table(root: Path, digests: dict, names: list[str]) -> dict:
    """An evaluation table in evaluation.py's format: each val image's labels as predictions
    (conf 0.9) plus one wrong guess (conf 0.3)."""
    from artifactkit.evaluation import debugger_ids

    rows = []
    for label in sorted((root / "labels" / "val").glob("*.txt")):
        gt = [
            [int(c), (x - w / 2) * 128, (y - h / 2) * 128, (x + w / 2) * 128, (y + h / 2) * 128]
            for c, x, y, w, h in (map(float, line.split()) for line in label.read_text().splitlines())
        ]
        path = f"images/val/{label.stem}.jpg"
        rows.append(
            {
                "im_id": label.stem,
                "path": path,
                "image": digests[path],
                "shape": [128, 128],
                "gt": gt,
                "pred": [[*g, 0.9] for g in gt] + [[3, 1.0, 1.0, 9.0, 9.0, 0.3]],
                "avg_conf": 0.8,
                "class_conf": {"3": 0.3},
                "tp": len(gt),
                "fp": 1,
                "fn": 0,
            }
        )
    debug = debugger_ids([r["im_id"] for r in rows], seed=0)
    rows.sort(key=lambda r: (r["im_id"] not in debug, r["im_id"]))
    return {"epoch": 1, "split": "val", "names": names, "metrics": {}, "debugger": debug, "min_conf": 0.1, "rows": rows}


def test_tracker_logs_dataset_tables_evaluation_and_debugger(offline, tmp_path):
    from artifactkit import datasets
    from artifactkit.runs import RunRecord
    from artifactkit.wandb import WandbTracker

    ak(
        "demo-data",
        str(tmp_path / "chess"),
        "--n-train",
        "4",
        "--n-val",
        "20",
        "--n-heldout",
        "2",
        "--imgsz",
        "128",
        env=offline,
    )
    store = open_store(str(tmp_path / "store"))
    dataset = datasets.resolve(store, str(tmp_path / "chess"))
    run = RunRecord(
        run_id="tracked1",
        created="t",
        updated="t",
        config={"epochs": 1},
        dataset=dataset.ref,
        model_artifact="tracked1-model",
        total_epochs=1,
    )
    tracker = WandbTracker(project="ak-test", upload_dataset=True)
    assert tracker.start(run, False) == {"id": "tracked1", "project": "ak-test", "entity": None, "mode": "offline"}
    tracker.log_dataset(dataset, store)
    names = [f"c{i}" for i in range(12)]
    tracker.log_evaluation(1, _evaluation_table(tmp_path / "chess", dataset.digests, names), store.read_blob)
    tracker.log_epoch(1, {"metrics/mAP50": 0.5, "fitness": 0.5}, {"system/cpu_percent": 1.0})
    tracker.finish("finished")
    (wb,) = offline_runs(Path(offline["WANDB_DIR"]), "tracked1")

    data = wb.artifact("chess", "latest")
    assert data["type"] == "dataset" and data["metadata"]["artifactkit"]["version"] == "v0"
    val = wb.table(data, "val")
    image = val["data"][0][val["columns"].index("image")]
    assert len(val["data"]) == 20 and image["path"] == "images/val/val-00000.jpg"  # the dataset's own file, once
    assert image["boxes"]["ground_truth"] and val["data"][0][val["columns"].index("classes")]

    table = wb.table(wb.artifact("tracked1-evaluation", "epoch-1"), "evaluation")
    cols, rows = table["columns"], table["data"]
    images = [r[cols.index("image")] for r in rows]
    assert len(rows) == 20 and sum(i is not None for i in images) == 16  # offline: the debugger rows only
    assert images[0]["boxes"]["predictions"][0]["scores"] == {"conf": 0.9} and "conf/c3" in cols

    assert wb.steps == [1] and wb.history[1]["metrics/mAP50"] == 0.5 and "system/cpu_percent" not in wb.history[1]
    boxes = wb.history[1]["bbox_debugger/all_boxes"]
    assert wb.history[1]["bbox_debugger/count"] == 16 and len(boxes) == 16
    pred = json.loads((wb.folder / "files" / boxes[0]["predictions"]["path"]).read_text())
    assert pred["class_labels"]["3"] == "c3" and {"conf": 0.3} in [b["scores"] for b in pred["box_data"]]


# -- failures ---------------------------------------------------------------------------------
@pytest.mark.slow
def test_unreachable_wandb_never_stops_training_nor_prints_the_key(tmp_path):
    env = {**wandb_env(tmp_path), "WANDB_MODE": "online", "WANDB_API_KEY": FAKE_KEY, "WANDB_INIT_TIMEOUT": "5"}
    data, store = demo_data(tmp_path / "chess", env), tmp_path / "store"
    proc = ak(
        "train",
        "--data",
        str(data),
        "--store",
        str(store),
        *TINY[:1],
        "1",
        *TINY[2:],
        "--save-period",
        "1",
        "--wandb",
        "--json",
        env=env,
    )
    run_id = json.loads(proc.stdout.strip().splitlines()[-1])["run_id"]
    assert (
        f"could not start W&B run {run_id}" in proc.stderr and "nothing of this run is mirrored to W&B" in proc.stderr
    )
    assert checkpoint.load(open_store(str(store)), f"{run_id}-model:latest")["epoch"] == 1
    assert FAKE_KEY not in proc.stdout + proc.stderr
    assert not [p for p in store.rglob("*") if p.is_file() and FAKE_KEY.encode() in p.read_bytes()]


def test_a_failing_wandb_run_says_which_checkpoint_was_not_mirrored(offline, tmp_path):
    """The real SDK, broken mid-run (its run finished under the tracker): the checkpoint stays in
    the store, FanOut drops the tracker with a warning naming what was not mirrored."""
    from artifactkit import datasets
    from artifactkit.runs import RunRecord, create_run
    from artifactkit.tracking import FanOut
    from artifactkit.wandb import WandbTracker

    store = open_store(str(tmp_path / "store"))
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "images").mkdir()  # a dataset whose yaml resolves (no images needed here)
    (tmp_path / "d" / "data.yaml").write_text("train: images\nval: images\nnames: [a]\n")
    dataset = datasets.resolve(store, str(tmp_path / "d"))
    run = RunRecord(
        run_id="broken1",
        created="t",
        updated="t",
        config={},
        dataset=dataset.ref,
        model_artifact="broken1-model",
        total_epochs=1,
    )
    create_run(store, run)
    warnings: list[str] = []
    fan = FanOut([WandbTracker(project="ak-test")], warnings.append)
    assert fan.call("start", run, False)["wandb"]["mode"] == "offline"
    fan.call("log_dataset", dataset, store)
    saved = checkpoint.save(store, "broken1-model", {"w": __import__("torch").ones(3)}, aliases=("epoch-1",))
    fan.trackers[0].wb.finish()  # the SDK's run goes away under the tracker
    fan.call("log_checkpoint", saved.record, ["epoch-1"], {})
    assert warnings and "checkpoint broken1-model:v0 not mirrored to W&B" in warnings[0] and "safe in" in warnings[0]
    assert not fan.trackers  # dropped: training goes on without W&B
    assert checkpoint.load(store, "broken1-model:latest")["w"].tolist() == [1.0, 1.0, 1.0]


def test_missing_wandb_names_the_extra(monkeypatch):
    from artifactkit.errors import MissingExtra
    from artifactkit.wandb import WandbTracker

    monkeypatch.setitem(sys.modules, "wandb", None)
    with pytest.raises(MissingExtra, match=r"artifactkit\[wandb\]"):
        WandbTracker()


def test_wandb_uris_without_credentials_or_well_formed_parts_are_one_line_errors(offline, tmp_path):
    proc = ak("resume", "wandb-artifact://me/chess-demo/r1", env=offline, check=False)
    assert proc.returncode == 1 and "needs the W&B server" in proc.stderr and "wandb login" in proc.stderr
    proc = ak("resume", "wandb-artifact://me/r1", env=offline, check=False)
    assert proc.returncode == 1 and "expected wandb-artifact://<entity>/<project>/<run-id>" in proc.stderr
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a.txt").write_text("a")
    ak("log-dataset", str(tmp_path / "d"), "--store", str(tmp_path / "s"), env=offline)
    proc = ak("push", "d", "--store", str(tmp_path / "s"), "--to", "wandb://a/b/c", env=offline, check=False)
    assert (
        proc.returncode == 1 and proc.stderr.count("\n") == 1 and "expected wandb://<entity>/<project>" in proc.stderr
    )
    unreachable = {**offline, "WANDB_MODE": "online", "WANDB_API_KEY": FAKE_KEY, "WANDB_INIT_TIMEOUT": "3"}
    proc = ak("push", "d", "--store", str(tmp_path / "s"), "--to", "wandb://a/b", env=unreachable, check=False)
    assert proc.returncode == 1 and proc.stderr.startswith("error: push d to wandb://a/b failed (")
    assert FAKE_KEY not in proc.stdout + proc.stderr


# -- push --to wandb:// --------------------------------------------------------------------------
def test_push_mirrors_every_version_as_a_dataset_artifact(offline, tmp_path):
    data = demo_data(tmp_path / "chess", offline)
    store = str(tmp_path / "store")
    ak("log-dataset", str(data.parent), "--store", store, env=offline)
    label = data.parent / "labels" / "val" / "val-00000.txt"
    label.write_text(label.read_text().splitlines()[0] + "\n")
    ak("log-dataset", str(data.parent), "--store", store, "--alias", "golden", env=offline)
    proc = ak("push", "chess", "--store", store, "--to", "wandb://me/ak-push", "--json", env=offline)
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert (
        result["versions"] == ["v0", "v1"] and result["mode"] == "offline" and result["sync"].startswith("wandb sync ")
    )
    run = OfflineRun(Path(result["sync"].split()[-1]))
    assert run.project == "ak-push"
    pushed = [(a["name"], a["type"], a["metadata"]["artifactkit"]["version"], a["aliases"]) for a in run.artifacts]
    # W&B puts `latest` on each version as it is logged (the server moves it on to v1).
    assert pushed == [("chess", "dataset", "v0", {"latest"}), ("chess", "dataset", "v1", {"golden", "latest"})]
    v1 = run.artifacts[1]
    rows = run.table(v1, "val")["data"]
    assert rows[0][1] == "images/val/val-00000.jpg" and rows[0][-1] == 1  # the edited label: one box
    assert mirror.MANIFEST_FILE in v1["files"] and "labels/val/val-00000.txt" in v1["files"]


# -- online (only with WANDB_API_KEY) --------------------------------------------------------------
def _online_env(tmp: Path) -> dict[str, str]:
    env = {**os.environ, "ARTIFACTKIT_CACHE_DIR": str(tmp / "ak-cache"), "WANDB_DIR": str(tmp), "PYTHONPATH": str(ROOT)}
    env.pop("WANDB_MODE", None)
    return env


@ONLINE
@pytest.mark.slow
def test_online_resume_from_wandb_alone(tmp_path):
    import wandb

    env = _online_env(tmp_path)
    project = os.environ.get("WANDB_PROJECT", "artifactkit-tests")
    data = demo_data(tmp_path / "chess", env)
    first = ak(
        "train",
        "--data",
        str(data),
        "--store",
        str(tmp_path / "a"),
        *TINY[:1],
        "1",
        *TINY[2:],
        "--save-period",
        "1",
        "--wandb",
        "--project",
        project,
        "--upload-dataset",
        "--json",
        env=env,
    )
    assert "warning" not in first.stderr, first.stderr
    run_id = json.loads(first.stdout.strip().splitlines()[-1])["run_id"]
    entity = json.loads((tmp_path / "a" / "runs" / run_id / "run.json").read_text())["trackers"]["wandb"]["entity"]
    # Another machine: an empty cache, no store; only W&B.
    resumed = ak(
        "resume",
        f"wandb-artifact://{entity}/{project}/{run_id}",
        "--epochs",
        "2",
        "--json",
        env={**env, "ARTIFACTKIT_CACHE_DIR": str(tmp_path / "other-cache")},
    )
    assert json.loads(resumed.stdout.strip().splitlines()[-1])["epochs_completed"] == 2
    assert wandb.Api().run(f"{entity}/{project}/{run_id}").summary.get("epoch") == 2


@ONLINE
def test_online_push(tmp_path):
    env = _online_env(tmp_path)
    project = os.environ.get("WANDB_PROJECT", "artifactkit-tests")
    data = demo_data(tmp_path / "chess", env)
    ak("log-dataset", str(data.parent), "--store", str(tmp_path / "s"), env=env)
    entity = os.environ.get("WANDB_ENTITY")
    target = f"wandb://{entity}/{project}" if entity else f"wandb://{project}"
    result = json.loads(
        ak("push", "chess", "--store", str(tmp_path / "s"), "--to", target, "--json", env=env).stdout.splitlines()[-1]
    )
    assert result["mode"] == "online" and result["versions"] == ["v0"]
