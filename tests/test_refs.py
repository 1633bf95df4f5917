"""One answer to "what does this string name?" (refs.py) for every command and API function that
takes a run, a checkpoint or weights, and one model loader (weights.py) behind val, predict,
export and train --weights: a bare run id and exported files work everywhere weights are taken."""

from __future__ import annotations

import ast
import importlib.util
import json
import re
from pathlib import Path

import pytest
from clirunner import run_cli
from tiny_run import IMGSZ, tiny_run

import artifactkit
from artifactkit import refs
from artifactkit.errors import InvalidInput, NotFound

ROOT = Path(__file__).resolve().parents[1]
NO_FORM = "no/such-form"  # no form of any command: each refuses it with the resolver's one line


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return tiny_run(tmp_path_factory)


def last_json(proc) -> dict:
    return json.loads(proc.stdout.strip().splitlines()[-1])


def val_cli(run, weights: str, *more: str) -> dict:
    proc = run_cli(
        "val",
        "--weights",
        weights,
        "--data",
        str(run.data),
        "--imgsz",
        str(IMGSZ),
        "--batch",
        "4",
        "--device",
        "cpu",
        "--json",
        *more,
    )
    return last_json(proc)


TABLE = [  # text -> what each kind of command reads it as (None: refused with the forms it takes)
    (
        "s3://b/ak/runs/r1",
        refs.RunRef("s3://b/ak", "r1"),
        refs.RunRef("s3://b/ak", "r1"),
        refs.RunRef("s3://b/ak", "r1"),
    ),
    ("./s/runs/r1:latest", refs.RunRef("./s", "r1", "latest"), None, None),
    ("r1", refs.WordRef("r1"), refs.RunRef(None, "r1"), refs.WordRef("r1")),
    ("r1-model:best", refs.VersionRef("r1-model", "best"), None, refs.VersionRef("r1-model", "best")),
    (
        "w.safetensors",
        refs.FileRef(Path("w.safetensors")),
        refs.RunRef(None, "w.safetensors"),
        refs.WordRef("w.safetensors"),
    ),
    ("out/w.pt", refs.FileRef(Path("out/w.pt")), None, None),
    ("wandb-artifact://e/p/r1", None, refs.WandbRunRef("wandb-artifact://e/p/r1"), None),
    ("s/runs/", None, None, None),
    ("a b", None, None, None),
    ("x:y:z", None, None, None),
    ("", None, None, None),
    pytest.param("a" * 5000, None, None, None, id="a*5000"),  # too long a file name for the OS: refused, not an OSError
]


@pytest.mark.parametrize("text, as_weights, as_run, as_target", TABLE)
def test_one_table_of_forms_for_every_kind_of_command(text, as_weights, as_run, as_target):
    for accepts, what, expected in [
        (refs.WEIGHTS, "weights", as_weights),
        (refs.RUN, "run URI", as_run),
        (refs.RUN_OR_VERSION, "target", as_target),
    ]:
        if expected is None:
            with pytest.raises(InvalidInput, match=f"^invalid {what} .*: expected {re.escape(refs.forms(accepts))}$"):
                refs.parse(text, accepts, what)
        else:
            assert refs.parse(text, accepts, what) == expected, (text, what)


def test_val_and_export_take_a_bare_run_id_and_val_takes_exported_files(run, tmp_path):
    pytest.importorskip("safetensors")
    from artifactkit.export import export_weights
    from artifactkit.val import evaluate_weights

    expected = evaluate_weights(run.uri, str(run.data), imgsz=IMGSZ, batch=4, device="cpu")["metrics"]
    assert val_cli(run, run.run_id, "--store", str(run.store))["metrics"] == expected  # was "invalid run URI"
    exported = tmp_path / "model.safetensors"
    info = last_json(run_cli("export", run.run_id, str(exported), "--store", str(run.store), "--json"))
    assert info["source"].endswith("tiny-model:v0")  # was "expected a .safetensors or .pt file, a run URI ..."
    plain = tmp_path / "model.pt"
    export_weights(exported, plain)
    assert val_cli(run, str(exported))["metrics"] == expected  # the same EMA weights, whatever the file
    assert val_cli(run, str(plain))["metrics"] == expected  # a plain state_dict: class indices, dataset names


def test_a_checkpoint_of_another_class_count_is_one_line(run, tmp_path):
    from tiny_run import three_class_copy

    from artifactkit.val import evaluate_weights

    three = three_class_copy(run.data, tmp_path / "three")
    with pytest.raises(InvalidInput, match=r"weights of 12 classes cannot score .*three.* \(3 classes\)"):
        evaluate_weights(run.uri, str(three), imgsz=IMGSZ, device="cpu")


def _library_calls(run, tmp_path) -> dict[str, tuple]:
    """Every API function that takes weights or a run -> (call, the forms it accepts, its word for them)."""
    from artifactkit.export import export_weights
    from artifactkit.val import evaluate_weights
    from artifactkit.weights import read_weights

    image = min(run.val_images.iterdir())
    store = str(run.store)
    weights = (refs.WEIGHTS, "weights")
    return {
        "read_weights": (lambda t: read_weights(t, store), *weights),
        "load_model": (lambda t: artifactkit.load_model(t, store=store, device="cpu"), *weights),
        "predict": (lambda t: artifactkit.predict(t, [image], store=store, device="cpu"), *weights),
        "export_weights": (lambda t: export_weights(t, tmp_path / "x.pt", store=store), *weights),
        "evaluate_weights": (lambda t: evaluate_weights(t, str(run.data), store=store, device="cpu"), *weights),
        "train(weights=)": (
            lambda t: artifactkit.train(
                str(tmp_path / "new"), data=str(run.data), weights=t, epochs=1, imgsz=IMGSZ, workers=0
            ),
            *weights,
        ),
        "resume": (lambda t: artifactkit.resume(t, store=store), refs.RUN, "run URI"),
    }


def test_every_api_function_resolves_through_the_one_resolver(run, tmp_path):
    for name, (call, accepts, what) in _library_calls(run, tmp_path).items():
        with pytest.raises(InvalidInput) as caught:
            call(NO_FORM)
        assert str(caught.value) == str(refs.refused(NO_FORM, accepts, what)), name
    assert not (tmp_path / "new").exists() and not (tmp_path / "x.pt").exists()  # refused before anything is written
    for name, (call, accepts, what) in _library_calls(run, tmp_path).items():  # a bare word that names nothing
        with pytest.raises(NotFound, match="ghost"):
            call("ghost")


@pytest.mark.parametrize(
    "command, what",
    [
        (["val", "--data", "chess", "--weights"], "weights"),
        (["predict", "x.jpg", "--weights"], "weights"),
        (["export", "x.pt"], "weights"),
        (["train", "--data", "chess", "--weights"], "weights"),
        (["resume"], "run URI"),
        (["view"], "view target"),
        (["lineage"], "lineage target"),
        (["runs", "rm"], "run"),
    ],
)
def test_every_command_refuses_what_the_resolver_refuses(command, what, tmp_path):
    from PIL import Image

    Image.new("RGB", (8, 8)).save(tmp_path / "x.jpg")
    args = [*command, NO_FORM] if command[0] != "export" else ["export", NO_FORM, "x.pt"]
    proc = run_cli(*args, "--store", str(tmp_path / "s"), check=False, cwd=tmp_path)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"error: invalid {what} '{NO_FORM}': expected "), proc.stderr
    assert "a run URI (<store>/runs/<run-id>), a run id in --store" in lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.jpg"]  # nothing written, no store made


def test_a_bare_run_id_is_its_run_and_a_run_uri_selector_picks_weights_only(run, tmp_path):
    from artifactkit.weights import read_weights

    assert read_weights(run.run_id, str(run.store)).origin == read_weights(run.uri).origin
    assert read_weights(f"{run.uri}:latest").origin["version"] == "tiny-model:v0"
    with pytest.raises(InvalidInput, match=":latest picks a checkpoint, which run URI is not"):
        artifactkit.resume(f"{run.uri}:latest")
    proc = run_cli("lineage", run.run_id, "--store", str(run.store), "--json")
    assert "tiny" in proc.stdout


def test_the_old_resolvers_are_gone():
    """runref.find_run, scoring.checkpoint_source and their private copies: one resolver is left, so
    only refs.py (and uri.py, which defines the grammar's pieces) split run URIs."""
    assert importlib.util.find_spec("artifactkit.runref") is None
    assert importlib.util.find_spec("artifactkit.scoring") is None
    callers = set()
    for path in [*ROOT.glob("artifactkit/**/*.py"), *ROOT.glob("cli/*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and getattr(node.func, "id", getattr(node.func, "attr", None)) == "split_run_uri"
            ):
                callers.add(path.relative_to(ROOT).as_posix())
    # the viewer's build_report takes run URIs only, as the CLI hands them over once refs.py has read them
    assert callers == {"artifactkit/refs.py", "artifactkit/viewer/__init__.py"}
