"""The store commands as a user runs them: exit codes, one-line errors, --json last lines."""

from __future__ import annotations

import json
import os
from pathlib import Path

from clirunner import run_cli_modules
from test_store import make_folder

import artifactkit


def last_json(proc) -> dict:
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_issue_scenario(tmp_path, cli):
    data = make_folder(tmp_path / "chess", n=5)
    store = ["--store", str(tmp_path / ".artifactkit")]
    v0 = last_json(cli("log-dataset", str(data), *store, "--json"))
    assert (v0["name"], v0["version"], v0["files"], v0["uploaded_files"]) == ("chess", "v0", 10, 10)
    again = last_json(cli("log-dataset", str(data), *store, "--json"))
    assert (again["version"], again["uploaded_files"], again["uploaded_bytes"]) == ("v0", 0, 0)
    for i in (0, 3):
        (data / "images" / f"{i}.jpg").write_bytes(os.urandom(2000))
    v1 = last_json(cli("log-dataset", str(data), *store, "--json"))
    assert (v1["version"], v1["uploaded_files"], v1["uploaded_bytes"]) == ("v1", 2, 4000)
    listed = last_json(cli("versions", "chess", *store, "--json"))
    assert [v["version"] for v in listed["versions"]] == ["v0", "v1"]
    assert listed["versions"][1]["aliases"] == ["latest"]
    assert set(listed["versions"][0]) >= {"version", "aliases", "files", "bytes", "created", "metadata"}
    # `pull NAME:<version>` accepts exactly what `versions` prints
    cli("pull", f"chess:{listed['versions'][0]['version']}", str(tmp_path / "restored"), *store)
    assert last_json(cli("verify", *store, "--json"))["ok"] is True
    assert "deleted 0 blobs" in cli("gc", *store).stdout
    human = cli("versions", "chess", *store).stdout
    assert "v1" in human and "latest" in human


def test_default_store_from_env_and_cwd(tmp_path, cli):
    data = make_folder(tmp_path / "d", n=1)
    cli("log-dataset", str(data), cwd=tmp_path)
    assert (tmp_path / ".artifactkit" / "artifacts" / "d" / "versions" / "0.json").exists()
    cli("log-dataset", str(data), env={"ARTIFACTKIT_STORE": str(tmp_path / "envstore")})
    assert (tmp_path / "envstore" / "artifacts" / "d").exists()


def test_alias_and_metadata(tmp_path, cli):
    data = make_folder(tmp_path / "d", n=1)
    store = ["--store", str(tmp_path / "s")]
    cli("log-dataset", str(data), *store, "--alias", "golden", "--metadata", '{"source": "camera-3"}')
    v = last_json(cli("versions", "d", *store, "--json"))["versions"][0]
    assert v["aliases"] == ["latest", "golden"] and v["metadata"] == {"source": "camera-3"}
    cli("pull", "d:golden", str(tmp_path / "out"), *store)


def check_error(proc, *fragments):
    assert proc.returncode != 0
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), proc.stderr
    for fragment in fragments:
        assert fragment in err[0], (fragment, err[0])


def test_bad_input_one_line_errors_nothing_written(tmp_path, cli):
    store_dir = tmp_path / "s"
    store = ["--store", str(store_dir)]
    check_error(cli("log-dataset", str(tmp_path / "nope"), *store, check=False), "nope", "no such file")
    (tmp_path / "empty").mkdir()
    check_error(cli("log-dataset", str(tmp_path / "empty"), *store, check=False), "empty")
    data = make_folder(tmp_path / "d", n=1)
    check_error(cli("log-dataset", str(data), "--name", "a b", *store, check=False), "invalid artifact name", "a b")
    check_error(cli("log-dataset", str(data), "--metadata", "[1]", *store, check=False), "--metadata")
    check_error(cli("log-dataset", str(data), "--alias", "v2", *store, check=False), "v2")
    assert not (store_dir / "artifacts").exists()
    cli("log-dataset", str(data), *store)
    check_error(cli("pull", "d:v5", str(tmp_path / "o"), *store, check=False), "d:v5")
    check_error(cli("pull", "d:best", str(tmp_path / "o"), *store, check=False), "'best'")
    check_error(cli("versions", "nothing", *store, check=False), "nothing")
    check_error(cli("versions", "d", "--store", "bogus://x", check=False), "unknown URI scheme", "bogus")
    assert not (tmp_path / "o").exists()


def test_verify_exit_code_on_damage(tmp_path, cli):
    store_dir = tmp_path / "s"
    cli("log-dataset", str(make_folder(tmp_path / "d", n=1)), "--store", str(store_dir))
    blob = next(p for p in (store_dir / "objects").rglob("*") if p.is_file())
    blob.write_bytes(b"rot")
    proc = cli("verify", "--store", str(store_dir), check=False)
    assert proc.returncode == 1 and "corrupt" in proc.stdout


def test_store_commands_do_not_import_torch_or_wandb(tmp_path):
    """A store command on a local store, through `python -m artifactkit` as a user runs it: it loads
    neither torch, wandb nor fsspec, nor the modules of other commands (start-up time)."""
    artifactkit.open_store(str(tmp_path / "s")).log_files({"a.txt": b"a"}, name="y")
    proc, loaded = run_cli_modules("versions", "x", "--store", str(tmp_path / "s"), cwd=tmp_path)
    assert proc.returncode == 1 and "no artifact named 'x'" in proc.stderr
    assert (
        not {
            "torch",
            "wandb",
            "fsspec",
            "s3fs",
            "rich",
            "artifactkit.detector.config",
            "artifactkit.transfer",
            "artifactkit.maintenance",
            "artifactkit_cli.train_commands",
        }
        & loaded
    )
    assert "artifactkit_cli.main" in loaded and "cli" not in loaded


def test_errors_are_one_json_object_with_json(tmp_path, cli):
    artifactkit.open_store(str(tmp_path / "s")).log_files({"a.txt": b"a"}, name="y")
    proc = cli("versions", "nothing", "--store", str(tmp_path / "s"), "--json", check=False)
    assert proc.returncode == 1
    assert last_json(proc) == {"error": f"{tmp_path / 's'}: no artifact named 'nothing'", "kind": "NotFound"}
    check_error(proc, "nothing")  # the line on stderr stays
    bad = last_json(cli("log-dataset", str(tmp_path / "nope"), "--store", str(tmp_path / "s"), "--json", check=False))
    assert bad["kind"] == "InvalidInput" and "nope" in bad["error"]
    assert cli("versions", "nothing", "--store", str(tmp_path / "s"), check=False).stdout == ""  # no --json: no JSON


def test_credentials_in_urls_are_never_shown(tmp_path, cli):
    for url in ("http://user:hunter2pw@127.0.0.1:9/ak?sig=s3cr3tsig", "ftp://user:hunter2pw@127.0.0.1:9/ak"):
        proc = cli("versions", "x", "--store", url, "--json", check=False)
        assert proc.returncode == 1
        shown = proc.stdout + proc.stderr
        assert "hunter2pw" not in shown and "s3cr3tsig" not in shown and "user:" not in shown, shown
        assert "://127.0.0.1:9/ak" in shown, shown
        check_error(proc)
    proc = cli("resume", "http://user:hunter2pw@127.0.0.1:9/ak/runs/abc", "--json", check=False)
    assert last_json(proc)["kind"] == "BackendError" and "hunter2pw" not in proc.stdout + proc.stderr


def test_misspelt_urls_are_refused_and_dot_slash_is_a_folder(tmp_path, cli):
    for store, hint in (
        ("s3:/bucket/x", "did you mean s3://bucket/x?"),
        ("wandb:/me/p", "did you mean wandb://me/p?"),
        ("s3:bucket", "./s3:bucket"),
    ):
        check_error(cli("versions", "d", "--store", store, check=False, cwd=tmp_path), repr(store), hint)
    artifactkit.open_store(str(tmp_path / "s")).log_files({"a.txt": b"a"}, name="d")
    check_error(cli("push", "d", "--to", "wandb:/me/p", "--store", "s", check=False, cwd=tmp_path), "'wandb:/me/p'")
    check_error(cli("versions", "d", "--store", "nosuch://x", check=False), "unknown URI scheme 'nosuch'")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s"]  # no folder named s3: or wandb:
    data = make_folder(tmp_path / "d", n=1)
    cli("log-dataset", str(data), "--store", "./s3:", cwd=tmp_path)
    assert (tmp_path / "s3:" / "artifacts" / "d").is_dir()


def test_version(cli):
    import artifactkit

    assert cli("--version").stdout.strip() == f"artifactkit {artifactkit.__version__}"


def test_version_loads_no_command_module(tmp_path):
    """`artifactkit --version` prints before any command module (or the trainer's config) loads."""
    proc, loaded = run_cli_modules("--version", cwd=tmp_path)
    assert proc.returncode == 0 and proc.stdout.startswith(f"artifactkit {artifactkit.__version__}\n")
    assert not {m for m in loaded if m.endswith("_commands")} | ({"artifactkit.detector.config", "pydantic"} & loaded)


def test_installs_no_package_named_cli():
    """pyproject.toml maps cli/ to artifactkit_cli and lists every package (a mapped folder needs
    the list spelled out): a package added under artifactkit/ must be added there too."""
    tomllib = __import__("pytest").importorskip("tomllib")
    root = Path(__file__).parents[1]
    config = tomllib.loads((root / "pyproject.toml").read_text())
    setuptools = config["tool"]["setuptools"]
    assert setuptools["package-dir"] == {"artifactkit_cli": "cli"}
    found = {".".join(p.parent.relative_to(root).parts) for p in (root / "artifactkit").rglob("__init__.py")}
    assert set(setuptools["packages"]) == found | {"artifactkit_cli"}
    assert config["project"]["scripts"]["artifactkit"] == "artifactkit_cli.main:main"


def test_the_command_table_names_exactly_the_commands_each_module_defines():
    """cli/main.py's COMMANDS (name -> module, pip's commands_dict) is how a command finds its
    module: each module must define exactly the commands the table gives it, groups included."""
    import importlib

    import typer

    import artifactkit.__main__  # noqa: F401  (names this checkout's cli/ artifactkit_cli, installed or not)
    from artifactkit_cli.main import COMMANDS

    for module in set(COMMANDS.values()):
        app = typer.Typer()
        importlib.import_module(f"artifactkit_cli.{module}").register(app)
        defined = [c.name for c in app.registered_commands] + [g.name for g in app.registered_groups]
        assert sorted(defined) == sorted(n for n, m in COMMANDS.items() if m == module), module


def test_a_command_imports_only_its_own_module(tmp_path):
    """`runs` (a group) loads the module defining it and no other command module."""
    proc, loaded = run_cli_modules("runs", "--store", str(tmp_path / "none"), cwd=tmp_path)
    assert proc.returncode == 1 and "no artifactkit store" in proc.stderr
    assert {m for m in loaded if m.startswith("artifactkit_cli.") and m.endswith("_commands")} == {
        "artifactkit_cli.lifecycle_commands"
    }


def test_push_names_its_destination_by_a_string_from_python(tmp_path):
    """Store or W&B mirror: decided by artifactkit.destinations, as `push --to` has it."""
    from artifactkit.destinations import is_mirror, push_to

    src = artifactkit.open_store(str(tmp_path / "s"))
    src.log_files({"a.txt": b"a"}, name="d")
    pushed = push_to(src, "d", str(tmp_path / "t"))
    assert (pushed.destination, pushed.result.versions) == (str(tmp_path / "t"), ["v0"])
    assert artifactkit.open_store(str(tmp_path / "t")).resolve("d:v0").manifest == src.resolve("d:v0").manifest
    assert is_mirror("wandb://me/p") and not is_mirror("s3://b/wandb://x")


def test_the_cli_leaves_what_an_input_is_to_the_library():
    """What a path or a target is (data.yaml, COCO, plain folder; run id or dataset; store or W&B
    mirror) is decided in artifactkit, which the CLI calls: none of those deciders is named in cli/."""
    import ast

    deciders = {
        "is_yolo_dataset",
        "refuse_coco",
        "read_local",
        "read_dataset",
        "LocalSource",
        "RUN_ID_RE",
        "looks_like_ref",
        "push_to_wandb",
        "MIRROR_SCHEME",
        # issue 28 item 4's leftovers: val's own checks, rm's ref rule, ls's skip, the tracker choice
        "score_predictions",
        "evaluate_weights",
        "parse_ref",
        "version_numbers",
        "artifact_bytes",
        "WandbTracker",
    }
    found = []
    for path in sorted((Path(__file__).resolve().parents[1] / "cli").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            name = node.attr if isinstance(node, ast.Attribute) else node.id if isinstance(node, ast.Name) else None
            names = [a.name for a in node.names] if isinstance(node, ast.ImportFrom) else [name]
            found += [f"{path.name}: {n}" for n in names if n in deciders]
    assert found == []
