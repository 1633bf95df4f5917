"""The store commands as a user runs them: exit codes, one-line errors, --json last lines."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from test_store import make_folder


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
    code = (
        "import sys; sys.argv=['artifactkit','versions','--help']\n"
        "from cli.main import app\n"
        "try:\n    app()\nexcept SystemExit:\n    pass\n"
        "bad=[m for m in ('torch','wandb','fsspec','s3fs') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=Path(__file__).parents[1])
    assert proc.returncode == 0, proc.stderr
