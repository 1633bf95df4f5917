"""Deleting and retaining (issue 17) on local and S3 stores: rm, runs rm, prune, numbers never
reused, gc freeing what a delete released, and readers racing a delete."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
from test_store import make_folder

import artifactkit
from artifactkit import checkpoint, lifecycle
from artifactkit.errors import InvalidInput, NotFound
from artifactkit.maintenance import gc, verify
from artifactkit.records import now_iso
from artifactkit.runs import RunRecord, create_run, list_runs
from artifactkit.transfer import pull


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path):
    uri = str(tmp_path / "store") if request.param == "local" else request.getfixturevalue("s3_bucket")
    return artifactkit.open_store(uri)


def blob_bytes(store) -> int:
    return sum(info.size for _, info in store.list_blobs())


def log_versions(store, tmp_path, name="d", n=3):
    data = make_folder(tmp_path / name, n=2)
    for i in range(n):
        (data / "images" / "extra.jpg").write_bytes(os.urandom(3000))  # each version's own file
        store.log_folder(data, name=name)
    return data


def make_run(store, run_id, status="finished", dataset=None, weights_from=None, checkpoints=3, best=1):
    """A run record with `checkpoints` checkpoint versions (epoch-N aliases, `best` on v<best>)
    and one evaluation table, as training writes them."""
    now = now_iso()
    create_run(
        store,
        RunRecord(
            run_id=run_id,
            created=now,
            updated=now,
            status=status,
            config={},
            dataset=dataset,
            model_artifact=f"{run_id}-model",
            total_epochs=checkpoints,
            weights_from=weights_from,
        ),
    )
    for epoch in range(1, checkpoints + 1):
        aliases = (f"epoch-{epoch}",) + (("best",) if epoch - 1 == best else ())
        store.log_files(
            {"state.json": os.urandom(4000)},
            name=f"{run_id}-model",
            type="model",
            aliases=aliases,
            run_id=run_id,
            dedup_latest=False,
        )
    store.log_files(
        {"table.json": b"{}"}, name=f"{run_id}-evaluation", type="evaluation", aliases=("epoch-1",), run_id=run_id
    )


def test_rm_one_version_and_gc_frees_its_blobs(store, tmp_path):
    log_versions(store, tmp_path)
    before = blob_bytes(store)
    result = lifecycle.delete_versions(store, "d", [1])
    assert result.versions == ["v1"] and store.version_numbers("d") == [0, 2]
    with pytest.raises(NotFound, match=r"d:v1 was deleted"):
        store.resolve("d:v1")
    report = gc(store, grace_seconds=0)
    assert report.deleted_objects == 1 and blob_bytes(store) == before - 3000  # only v1's own file
    assert verify(store).ok
    pull(store, "d:v2", tmp_path / "out")  # the others are whole


def test_a_deleted_number_is_never_reused(store, tmp_path):
    data = log_versions(store, tmp_path)
    lifecycle.delete_versions(store, "d", [2])  # the highest
    (data / "new.txt").write_text("new")
    assert store.log_folder(data, name="d").record.version == 3
    lifecycle.delete_versions(store, "d", force=True)  # every version
    assert store.version_numbers("d") == [] and "d" not in store.artifact_names()
    assert store.log_folder(data, name="d").record.version == 4
    # a push of other content under a deleted number is refused, as any number taken by other content
    gone = store.tombstone("d", 2)
    assert gone is not None
    with pytest.raises(InvalidInput, match="never reused"):
        store.put_version(gone.model_copy(update={"manifest": store.latest("d").manifest}))


def test_an_alias_protects_a_version_until_force(store, tmp_path):
    log_versions(store, tmp_path)
    store.set_alias("d", "golden", 1)
    with pytest.raises(InvalidInput, match=r"d:v1 holds the alias golden .*--force"):
        lifecycle.delete_versions(store, "d", [1])
    with pytest.raises(InvalidInput, match="golden"):
        lifecycle.delete_versions(store, "d")
    assert store.version_numbers("d") == [0, 1, 2]  # nothing deleted when anything is refused
    result = lifecycle.delete_versions(store, "d", [1], force=True)
    assert result.aliases == ["golden"] and "golden" not in store.aliases("d")


def test_a_version_a_run_used_is_named_before_it_goes(store, tmp_path):
    log_versions(store, tmp_path)
    make_run(store, "base", dataset="d:v1")
    make_run(store, "tuned", dataset="d:v2", weights_from={"store": store.uri, "version": "base-model:v2"})
    with pytest.raises(InvalidInput, match=r"d:v1 was used by run base \(dataset\)"):
        lifecycle.delete_versions(store, "d", [1])
    with pytest.raises(InvalidInput, match=r"base-model:v2 was used by run tuned \(weights_from\)"):
        lifecycle.delete_versions(store, "base-model", [2])
    with pytest.raises(InvalidInput, match=r"runs/base: its checkpoints were used by run tuned"):
        lifecycle.delete_run(store, "base")
    assert lifecycle.delete_versions(store, "d", [1], force=True).used_by == ["run base (dataset)"]


def test_runs_rm_deletes_record_checkpoints_and_tables(store, tmp_path):
    log_versions(store, tmp_path, n=1)
    make_run(store, "keep", dataset="d:v0")
    make_run(store, "gone", dataset="d:v0")
    make_run(store, "live", dataset="d:v0", status="running")
    before = blob_bytes(store)
    result = lifecycle.delete_run(store, "gone")
    assert result.versions == {"gone-model": ["v0", "v1", "v2"], "gone-evaluation": ["v0"]}
    assert [r.run_id for r in list_runs(store)] == ["keep", "live"]
    assert store.version_numbers("gone-model") == [] and store.version_numbers("keep-model") == [0, 1, 2]
    assert not list(store.backend.list("runs/gone/"))
    with pytest.raises(InvalidInput, match=r"runs/live: the run is running.*--force"):
        lifecycle.delete_run(store, "live")
    with pytest.raises(NotFound, match="runs/nope: no such run"):
        lifecycle.delete_run(store, "nope")
    gc(store, grace_seconds=0)
    assert blob_bytes(store) == before - 3 * 4000  # its three checkpoints (the table's "{}" is shared)
    assert verify(store).ok


def test_prune_keeps_newest_best_and_chosen(store, tmp_path):
    make_run(store, "r", checkpoints=6, best=1)
    store.set_alias("r-model", "paper", 2)
    result = lifecycle.prune(store, "r-model", keep_last=2)
    assert result.versions == ["v0", "v3"] and result.kept == ["v1", "v2", "v4", "v5"]
    assert store.aliases("r-model")["best"] == 1 and "epoch-1" not in store.aliases("r-model")
    assert lifecycle.prune(store, "r-model", keep_last=2).versions == []
    with pytest.raises(InvalidInput, match="keep_last"):
        lifecycle.prune(store, "r-model", keep_last=0)


def test_pull_of_a_version_deleted_midway_is_one_clear_line(store, tmp_path):
    """Deterministic interleaving: pull has read the record and manifest (its progress hears the
    plan) when the version is deleted and gc collects its blobs."""
    log_versions(store, tmp_path, n=2)
    lifecycle.delete_versions(store, "d", [0])
    gc(store, grace_seconds=0)

    def delete_now(done, total):
        if not getattr(delete_now, "ran", False):
            delete_now.ran = True
            lifecycle.delete_versions(store, "d", [1])
            gc(store, grace_seconds=0)

    with pytest.raises(NotFound, match=r"d:v1 was deleted while pulling"):
        pull(store, "d:v1", tmp_path / "out", progress=delete_now, cache=False)
    assert not [p for p in (tmp_path / "out").rglob("*") if p.is_file() and p.name.startswith(".")]


def test_loading_a_checkpoint_deleted_meanwhile_is_one_clear_line(store, tmp_path):
    pytest.importorskip("torch")
    import torch

    checkpoint.save(store, "r-model", {"w": torch.ones(3)})
    record = store.resolve("r-model:latest")  # resume resolved it ...
    lifecycle.delete_versions(store, "r-model", [0])  # ... then it was deleted and collected
    gc(store, grace_seconds=0)
    with pytest.raises(NotFound, match=r"r-model:v0 was deleted while loading it"):
        checkpoint.load(store, record)


def test_pull_racing_rm_and_gc_as_real_processes(tmp_path):
    """A pull in another process while the version is deleted and collected: it either completes
    byte-identical or fails with one line saying the version was deleted; never a broken file."""
    store = artifactkit.open_store(str(tmp_path / "store"))
    data = make_folder(tmp_path / "d", n=150, size=20000)
    outcomes = set()
    for i in range(4):
        (data / "round.txt").write_text(str(i))
        version = store.log_folder(data, name="d").record.version
        out = tmp_path / f"out{i}"
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "artifactkit",
                "pull",
                f"d:v{version}",
                str(out),
                "--store",
                str(tmp_path / "store"),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        time.sleep(0.3 * i)
        lifecycle.delete_versions(store, "d", [version])
        gc(store, grace_seconds=0)
        stdout, stderr = proc.communicate(timeout=120)
        if proc.returncode == 0:
            outcomes.add("completed")
            assert sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file()) == sorted(
                p.relative_to(data) for p in data.rglob("*") if p.is_file()
            )
            for p in data.rglob("*"):
                if p.is_file():
                    assert (out / p.relative_to(data)).read_bytes() == p.read_bytes()
        else:
            outcomes.add("refused")
            lines = stderr.strip().splitlines()
            assert len(lines) == 1 and f"d:v{version} was deleted" in lines[0], stderr
            for p in out.rglob("*") if out.exists() else []:
                if p.is_file():
                    assert p.read_bytes() == (data / p.relative_to(out)).read_bytes()
    assert outcomes  # each round ended in one of the two acceptable ways


def test_cli_rm_prune_and_runs_rm(tmp_path, cli):
    store = artifactkit.open_store(str(tmp_path / "s"))
    log_versions(store, tmp_path, n=2)
    make_run(store, "r", dataset="d:v0", checkpoints=4, best=0)
    at = ["--store", str(tmp_path / "s")]
    refused = cli("rm", "d:v0", *at, check=False)
    assert refused.returncode == 1 and refused.stderr.strip().splitlines() == [
        f"error: {store.uri}: d:v0 was used by run r (dataset); pass --force to delete it anyway"
    ]
    assert "pass --yes" in cli("rm", "d", *at, check=False).stderr
    assert "NAME:vN" in cli("rm", "d:latest", *at, check=False).stderr
    out = json.loads(cli("prune", "r-model", "--keep-last", "1", *at, "--json").stdout.splitlines()[-1])
    assert out["versions"] == ["v1", "v2"] and out["kept"] == ["v0", "v3"]
    assert "pass --yes" in cli("runs", "rm", "r", *at, check=False).stderr
    gone = json.loads(cli("runs", "rm", "r", "--yes", *at, "--json").stdout.splitlines()[-1])
    assert gone["versions"] == {"r-model": ["v0", "v3"], "r-evaluation": ["v0"]}
    assert json.loads(cli("runs", *at, "--json").stdout.splitlines()[-1]) == {"runs": []}
    cli("rm", "d:v0", *at)  # no run uses it now
    assert "deleted d:v1" in cli("rm", "d", "--yes", *at).stdout
    assert "was deleted" in cli("pull", "d:v1", str(tmp_path / "o"), *at, check=False).stderr


def test_lifecycle_commands_do_not_import_torch(tmp_path):
    store = artifactkit.open_store(str(tmp_path / "s"))
    log_versions(store, tmp_path, n=2)
    code = (
        f"import sys; sys.argv=['artifactkit','rm','d:v0','--store',{str(tmp_path / 's')!r}]\n"
        "import runpy\n"
        "try:\n    runpy.run_module('artifactkit', run_name='__main__')\nexcept SystemExit:\n    pass\n"
        "bad=[m for m in ('torch','wandb','fsspec','s3fs') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0 and "deleted d:v0" in proc.stdout, proc.stderr
