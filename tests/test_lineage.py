"""Lineage of a real fine-tuned run: dataset version -> run -> checkpoints and evaluation tables,
and the run fine-tuned from a checkpoint, on a local and an S3 (moto server) store; the CLI's
text tree and --json; the report's inputs and outputs."""

from __future__ import annotations

import json
import re
import shutil

import pytest
import torch
from clirunner import run_cli
from tiny_run import tiny_run, train_tiny

import artifactkit
from artifactkit import runs
from artifactkit.lifecycle import users
from artifactkit.lineage_graph import lineage
from artifactkit.store import open_store
from artifactkit.transfer import push


@pytest.fixture(autouse=True)
def _restore_torch_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tuned(tmp_path_factory):
    """A copy of the tiny run's store, with run `ft` fine-tuned from run `tiny` (its run URI)."""
    run = tiny_run(tmp_path_factory)
    store = tmp_path_factory.mktemp("lineage") / "store"
    shutil.copytree(run.store, store)
    train_tiny(store, run.data, weights=f"{store}/runs/tiny", run_id="ft")
    return store


def edges(graph) -> set[tuple[str, str, str]]:
    return {(e.source, e.target, e.relation) for e in graph.edges}


def test_lineage_of_a_fine_tuned_run(tuned):
    store = open_store(str(tuned))
    graph = artifactkit.lineage(store, "ft")
    assert graph.root == "run:ft"
    assert edges(graph) == {
        ("version:chess:v0", "run:ft", "dataset"),
        ("version:tiny-model:v0", "run:ft", "weights"),
        ("run:tiny", "version:tiny-model:v0", "checkpoint"),
        ("version:chess:v0", "run:tiny", "dataset"),
        ("run:ft", "version:ft-model:v0", "checkpoint"),
        ("run:ft", "version:ft-evaluation:v0", "evaluation"),
    }  # tiny's evaluation table is a sibling, not ft's history: left out
    kinds = {n.id: n.kind for n in graph.nodes.values()}
    assert kinds["version:chess:v0"] == "dataset" and kinds["version:ft-model:v0"] == "checkpoint"
    assert kinds["version:ft-evaluation:v0"] == "evaluation" and kinds["run:tiny"] == "run"
    assert graph.nodes["version:ft-model:v0"].info["aliases"] == ["latest", "best", "epoch-1"]
    assert graph.tree().splitlines() == [
        "run ft (finished, 1/1 epochs)",
        "├── inputs",
        "│   ├── dataset chess:v0 (latest)",
        "│   └── weights tiny-model:v0 (latest, best, epoch-1)",
        "│       └── made by run tiny (finished, 1/1 epochs)",
        "│           └── dataset chess:v0 (latest) (shown above)",
        "└── outputs",
        "    ├── checkpoint ft-model:v0 (latest, best, epoch-1)",
        "    └── evaluation ft-evaluation:v0 (latest, epoch-1)",
    ]


def test_lineage_of_a_checkpoint_goes_both_ways(tuned):
    store = open_store(str(tuned))
    graph = lineage(store, "tiny-model:best")
    assert graph.root == "version:tiny-model:v0"
    assert edges(graph) == {
        ("run:tiny", "version:tiny-model:v0", "checkpoint"),
        ("version:chess:v0", "run:tiny", "dataset"),
        ("version:tiny-model:v0", "run:ft", "weights"),
        ("run:ft", "version:ft-model:v0", "checkpoint"),
        ("run:ft", "version:ft-evaluation:v0", "evaluation"),
    }
    assert "fine-tuned into run ft (finished, 1/1 epochs)" in graph.tree()
    dataset = lineage(store, "chess:v0")  # every run on it, and what came of them
    assert {e.target for e in dataset.children("version:chess:v0")} == {"run:tiny", "run:ft"}
    assert "version:tiny-evaluation:v0" in dataset.nodes
    # rm's "a run used this version" check (lifecycle.users) sees the same edges as the graph
    assert sorted(users(store, "chess")[0]) == ["run ft (dataset)", "run tiny (dataset)"]
    assert users(store, "tiny-model") == {0: ["run ft (weights_from)"]} and users(store, "ft-model") == {}


def test_cli_lineage_text_json_and_errors(tuned):
    proc = run_cli("lineage", "ft", "--store", str(tuned), "--json")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["root"] == "run:ft"
    assert {"from": "version:tiny-model:v0", "to": "run:ft", "relation": "weights"} in out["edges"]
    nodes = {n["id"]: n for n in out["nodes"]}
    assert nodes["run:ft"]["weights_from"] == {"store": str(tuned), "version": "tiny-model:v0"}
    assert nodes["version:ft-model:v0"]["run_id"] == "ft"
    by_uri = run_cli("lineage", f"{tuned}/runs/ft").stdout  # a run URI names its store
    assert by_uri.splitlines()[0] == "run ft (finished, 1/1 epochs)" and "weights tiny-model:v0" in by_uri
    assert run_cli("lineage", "ft-model:v0", "--store", str(tuned)).stdout.startswith("checkpoint ft-model:v0")
    bad = run_cli("lineage", "ghost", "--store", str(tuned), check=False)
    assert bad.returncode == 1 and bad.stderr.strip() == f"error: {tuned}: no run or artifact named 'ghost'"
    bad = run_cli("lineage", "chess:v9", "--store", str(tuned), check=False)
    assert bad.returncode == 1 and bad.stderr.strip() == f"error: {tuned}: chess:v9 does not exist"


def test_a_deleted_input_shows_as_missing_and_another_stores_weights_as_such(tuned, tmp_path):
    copy = tmp_path / "store"
    shutil.copytree(tuned, copy)
    (copy / "artifacts" / "chess" / "versions" / "0.json").unlink()
    graph = lineage(open_store(str(copy)), "ft")
    assert graph.nodes["version:chess:v0"].info == {"missing": "deleted"}
    external = f"external:{tuned}/tiny-model:v0"  # ft's weights_from names the store it was trained in
    assert graph.nodes[external].info == {"store": str(tuned)}
    assert graph.tree().splitlines()[1:4] == [
        "├── inputs",
        "│   ├── dataset chess:v0 (missing: deleted)",
        f"│   └── weights tiny-model:v0 in {tuned}",
    ]


def test_lineage_on_s3_of_a_run_fine_tuned_there(tuned, s3_bucket):
    """The tiny run's records and versions copied to S3, then a real fine-tune in S3 from its run URI."""
    local, s3 = open_store(str(tuned)), open_store(s3_bucket)
    for name in ("chess", "tiny-model", "tiny-evaluation"):
        push(local, name, s3)
    s3.runs.write_run("tiny", local.runs.read_run("tiny")[0], create_only=True)
    train_tiny(s3_bucket, "chess:v0", weights=f"{s3_bucket}/runs/tiny", run_id="ft")
    assert runs.load_run(s3, "ft").weights_from == {"store": s3.uri, "version": "tiny-model:v0"}
    graph = lineage(s3, "ft")
    assert edges(graph) == edges(lineage(local, "ft"))
    out = json.loads(
        run_cli("lineage", "tiny-model:v0", "--store", s3_bucket, "--json").stdout.strip().splitlines()[-1]
    )
    assert {"from": "version:tiny-model:v0", "to": "run:ft", "relation": "weights"} in out["edges"]


def test_report_shows_the_runs_inputs_and_outputs(tuned, tmp_path):
    from artifactkit.viewer import build_report

    report = build_report(runs=[f"{tuned}/runs/ft"], out=tmp_path / "r.html", include_dataset=False)
    html = report.path.read_text()
    data = json.loads(re.search(r'<script type="application/json" id="ak-data">(.*?)</script>', html, re.S).group(1))
    io = data["runs"][0]["lineage"]
    assert [(n["relation"], n["label"]) for n in io["inputs"]] == [
        ("dataset", "chess:v0"),
        ("weights", "tiny-model:v0"),
    ]
    assert [(n["relation"], n["label"], n["aliases"]) for n in io["outputs"]] == [
        ("checkpoint", "ft-model:v0", ["latest", "best", "epoch-1"]),
        ("evaluation", "ft-evaluation:v0", ["latest", "epoch-1"]),
    ]
    browser = _chromium()
    if browser is None:
        pytest.skip("no /usr/bin/chromium or playwright: the page itself is not checked")
    with browser as (b, errors):
        page = b.new_page()
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(report.path.as_uri())
        page.wait_for_selector("html[data-ready]", state="attached")
        text = page.inner_text('.lineage-run[data-run="ft"]')
        assert errors == []
    assert "chess:v0" in text and "fine-tuned from" in text and "tiny-model:v0" in text
    assert "ft-model:v0" in text and "best" in text and "ft-evaluation:v0" in text


def _chromium():
    import contextlib
    import os

    if not os.path.exists("/usr/bin/chromium"):
        return None
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return None

    @contextlib.contextmanager
    def launched():
        with sync_playwright() as p:
            b = p.chromium.launch(
                executable_path="/usr/bin/chromium", args=["--headless", "--no-sandbox", "--disable-gpu"]
            )
            try:
                yield b, []
            finally:
                b.close()

    return launched()


def test_a_malformed_weights_from_names_the_run(tmp_path):
    store = open_store(str(tmp_path / "s"))
    store.log_files({"data.yaml": b"names: [a]\n"}, name="d")
    now = "2024-01-01T00:00:00.000+00:00"
    record = runs.RunRecord(
        run_id="r",
        created=now,
        updated=now,
        config={},
        dataset="d:v0",
        model_artifact="r-model",
        total_epochs=1,
        weights_from={"store": store.uri, "version": "../../x"},
    )
    runs.create_run(store, record)
    with pytest.raises(
        artifactkit.InvalidInput, match=r"/runs/r: weights_from: invalid artifact reference '\.\./\.\./x'"
    ):
        lineage(store, "r")
    assert lineage(store, "d:v0").tree().splitlines()[-1] == "    └── used by run r (running, 0/1 epochs)"


def test_a_datasets_lineage_is_one_line_per_run_unless_all(tmp_path):
    from test_lifecycle import make_run

    store = open_store(str(tmp_path / "s"))
    store.log_files({"data.yaml": b"names: [a]\n"}, name="d")
    for run_id in ("a", "b"):
        make_run(store, run_id, dataset="d:v0", checkpoints=3, best=0)
    assert lineage(store, "d:v0").tree().splitlines() == [
        "dataset d:v0 (latest)",
        "└── outputs",
        "    ├── used by run a (finished, 0/3 epochs): 3 checkpoints, 1 evaluation version",
        "    └── used by run b (finished, 0/3 epochs): 3 checkpoints, 1 evaluation version",
    ]
    full = lineage(store, "d:v0").tree(everything=True).splitlines()
    assert len(full) == 2 + 2 * (1 + 3 + 1) and "    │   ├── checkpoint a-model:v0 (best, epoch-1)" in full
    assert run_cli("lineage", "d:v0", "--all", "--store", str(tmp_path / "s")).stdout.splitlines() == full


def test_lineage_is_a_function_and_no_module_shadows_it():
    """`artifactkit.lineage` is the function, also once the graph module is imported (no module of
    that name, and no package hook keeping the function in place)."""
    import importlib.util
    import inspect
    import types

    import artifactkit.lineage_graph

    assert inspect.isfunction(artifactkit.lineage) and artifactkit.lineage is artifactkit.lineage_graph.lineage
    assert importlib.util.find_spec("artifactkit.lineage") is None
    assert type(artifactkit) is types.ModuleType
