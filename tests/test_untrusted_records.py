"""Everything read from a store is untrusted input (a store can be someone else's bucket): every
field that becomes a key or a path is validated where it is read, a record must agree with the
key it was read from, and a damaged record is one error line naming its key, never a traceback.
Records are forged with the backend directly, as an attacker with write access to the bucket
would; the same checks run on a local folder and on S3 (the moto server)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import artifactkit
from artifactkit.errors import InvalidInput
from artifactkit.hashing import digest_bytes
from artifactkit.layout import (
    alias_key,
    manifest_key,
    metrics_key,
    run_record_key,
    tree_key,
    version_key,
    versions_prefix,
)
from artifactkit.names import check_name, check_relative_path, check_run_id
from artifactkit.records import check_digest
from artifactkit.runs import RunRecord, create_run, list_runs, load_run, read_metrics
from artifactkit.store import check_alias
from artifactkit.trees import compress_tree
from artifactkit.uri import parse_ref, split_run_uri


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path):
    if request.param == "local":
        return artifactkit.open_store(str(tmp_path / "store"))
    return artifactkit.open_store(request.getfixturevalue("s3_bucket") + "/ak")


@pytest.fixture
def local(tmp_path):
    return artifactkit.open_store(str(tmp_path / "store"))


def forge(store, key: str, data) -> None:
    store.backend.write(key, data if isinstance(data, bytes) else json.dumps(data).encode())


def record_dict(store, name: str = "d", version: int = 0) -> dict:
    return json.loads(store.backend.read(version_key(name, version)))


def forge_version(store, manifest_entries: list[dict], version: int = 1) -> str:
    """A flat (format-1) manifest with these entries and a version record of `d` pointing at it;
    returns the manifest's key."""
    canonical = json.dumps(
        {"entries": manifest_entries, "schema_version": 1}, sort_keys=True, separators=(",", ":")
    ).encode()
    digest = digest_bytes(canonical)
    forge(store, manifest_key(digest), canonical)
    forge(
        store,
        version_key("d", version),
        {**record_dict(store), "version": version, "manifest": digest, "layout": "flat"},
    )
    return manifest_key(digest)


def one_error_line(proc) -> str:
    assert proc.returncode != 0, proc.stdout
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    return lines[0]


def run_record(run_id: str, changes: dict | None = None) -> dict:
    """A valid run record as JSON data, with `changes` (forged fields) applied."""
    now = "2024-01-01T00:00:00.000+00:00"
    record = RunRecord(
        run_id=run_id,
        created=now,
        updated=now,
        config={},
        dataset="d:v0",
        model_artifact=f"{run_id}-model",
        total_epochs=2,
    )
    return {**record.model_dump(mode="json"), **(changes or {})}


# -- names, aliases, run ids, digests: the whole string ------------------------------------------
@pytest.mark.parametrize("check", [check_name, check_alias, check_run_id, parse_ref])
def test_a_trailing_newline_is_not_part_of_a_valid_name(check):
    check("ok")
    with pytest.raises(InvalidInput):
        check("ok\n")


def test_digests_and_run_uris_match_the_whole_string():
    digest = digest_bytes(b"x")
    assert check_digest(digest) == digest
    for bad in (digest + "\n", digest.upper(), "../" + digest[3:], digest[:31]):
        with pytest.raises(InvalidInput, match="invalid digest"):
            check_digest(bad)
    with pytest.raises(InvalidInput):
        split_run_uri("./s/runs/r1\n")
    with pytest.raises(InvalidInput):
        parse_ref("d:best\n")


# -- version records agree with their key --------------------------------------------------------
@pytest.mark.parametrize(
    "change, says",
    [
        ({"name": "../../../x"}, "invalid artifact name"),
        ({"name": "d\n"}, "invalid artifact name"),
        ({"name": "e"}, "the record says e:v1, not d:v1"),
        ({"version": 0}, "the record says d:v0, not d:v1"),
        ({"manifest": "../../objects/ab"}, "invalid digest"),
        ({"run_id": "../../r"}, "invalid run id"),
    ],
)
def test_a_version_record_is_validated_against_its_key(store, change, says):
    store.log_files({"a.txt": b"a"}, name="d")
    forge(store, version_key("d", 1), {**record_dict(store), "version": 1, **change})
    key = f"{store.uri}/{version_key('d', 1)}"
    for read in (lambda: store.record("d", 1), lambda: store.resolve("d"), lambda: store.versions("d")):
        with pytest.raises(InvalidInput, match=says) as caught:
            read()
        assert key in str(caught.value)


def test_push_of_a_record_named_to_climb_out_writes_nothing_outside(tmp_path, local, cli):
    local.log_files({"a.txt": b"a"}, name="d")
    forge(local, version_key("d", 1), {**record_dict(local), "version": 1, "name": "../../../escape"})
    dst = tmp_path / "deep" / "er" / "dst"
    with pytest.raises(InvalidInput, match="versions/1.json"):
        artifactkit.push(local, "d", artifactkit.open_store(str(dst)))
    line = one_error_line(cli("push", "d", "--to", str(dst), "--store", local.uri, check=False))
    assert "versions/1.json" in line and "invalid artifact name" in line
    assert not [p for p in tmp_path.rglob("*escape*")]
    assert not (dst / "artifacts").exists()


def test_push_puts_versions_create_or_same(tmp_path, store):
    store.log_files({"a.txt": b"a"}, name="d")
    dst = artifactkit.open_store(str(tmp_path / "dst"))
    dst.log_files({"a.txt": b"other"}, name="d")  # d:v0 there with other content
    with pytest.raises(InvalidInput, match="d:v0 exists with different content"):
        artifactkit.push(store, "d:v0", dst)
    same = artifactkit.open_store(str(tmp_path / "same"))
    artifactkit.push(store, "d", same)
    again = artifactkit.push(store, "d", same)
    assert again.sent_versions == [] and again.uploaded_files == 0
    assert same.put_version(store.resolve("d:v0")) is None  # the same record again: fine


# -- manifests --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "entry, says",
    [
        ({"path": "x", "digest": "../../../../etc/passwd", "size": 1}, "invalid digest"),
        ({"path": "x", "digest": "A" * 32, "size": 1}, "invalid digest"),
        ({"path": "x", "size": -1}, "greater than or equal to 0"),
        ({"path": "../x"}, "unsafe manifest path"),
    ],
)
def test_manifest_entries_are_validated_on_read(store, entry, says):
    store.log_files({"a.txt": b"a"}, name="d")
    good = store.manifest(store.resolve("d")).entries[0]
    key = forge_version(store, [{"path": "x", "digest": good.digest, "size": good.size, **entry}])
    with pytest.raises(InvalidInput, match=says) as caught:
        store.manifest(store.record("d", 1))
    assert f"{store.uri}/{key}" in str(caught.value)


def test_a_file_and_a_folder_of_the_same_name(store, tmp_path, cli):
    with pytest.raises(InvalidInput, match="'a' is both a file and the folder of 'a/b'"):
        store.log_files({"a": b"1", "a/b": b"2"}, name="t")
    assert not list(store.backend.list(""))  # refused before the first blob
    store.log_files({"a.txt": b"a"}, name="d")
    digest = store.manifest(store.resolve("d")).entries[0].digest
    key = forge_version(
        store, [{"path": "a", "digest": digest, "size": 1}, {"path": "a/b", "digest": digest, "size": 1}]
    )
    with pytest.raises(InvalidInput, match="'a' is both a file"):
        artifactkit.pull(store, "d:v1", tmp_path / "out")
    if store.uri.startswith("s3://"):
        return
    line = one_error_line(cli("pull", "d:v1", str(tmp_path / "out2"), "--store", store.uri, check=False))
    assert key in line and "'a' is both a file" in line
    assert not (tmp_path / "out").exists() and not (tmp_path / "out2").exists()


# -- trees ------------------------------------------------------------------------------------------
def forge_tree_version(store, files: list[dict], dirs: list[dict] = ()) -> str:
    """A tree (its bytes named by their digest, as an attacker can compute) as the root of d:v1;
    returns the tree's key."""
    canonical = json.dumps({"dirs": list(dirs), "files": files}, sort_keys=True, separators=(",", ":")).encode()
    digest = digest_bytes(canonical)
    forge(store, tree_key(digest), compress_tree(canonical))
    forge(store, version_key("d", 1), {**record_dict(store), "version": 1, "manifest": digest, "layout": "tree"})
    return tree_key(digest)


def _is_safe(path: str) -> bool:
    """What check_relative_path must accept, written the slow, obvious way."""
    return (
        path != ""
        and "\\" not in path
        and "\x00" not in path
        and all(part not in ("", ".", "..") and not re.match(r"[A-Za-z]:", part) for part in path.split("/"))
    )


@settings(max_examples=3000, deadline=None)
@given(st.text(alphabet=st.sampled_from("aZ09._-:/\\\x00 \n\u00e9\u4e2d"), max_size=7) | st.text(max_size=8))
def test_check_relative_path_accepts_exactly_the_paths_that_stay_inside(path):
    """Every manifest path and tree name goes through this one regex search; a trailing newline
    is part of the name ("$" would have matched before it, refusing the safe file ".\n")."""
    try:
        check_relative_path(path)
        accepted = True
    except ValueError:
        accepted = False
    assert accepted == _is_safe(path), repr(path)


@pytest.mark.parametrize(
    "files, dirs, says",
    [
        ([{"name": ".."}], [], "unsafe manifest path '..'"),
        ([{"name": "."}], [], "unsafe manifest path '.'"),
        ([{"name": "a/b"}], [], "unsafe tree entry name 'a/b'"),
        ([{"name": "a\\b"}], [], "unsafe manifest path"),
        ([{"name": "C:x"}], [], "unsafe manifest path 'C:x'"),
        ([{"name": "a\x00"}], [], "unsafe manifest path"),
        ([{"name": ""}], [], "unsafe manifest path ''"),
        ([{"name": "x", "digest": "../../../../etc/passwd"}], [], "invalid digest"),
        ([{"name": "x", "digest": "A" * 32}], [], "invalid digest"),
        ([{"name": "x", "size": -1}], [], "greater than or equal to 0"),
        ([{"name": "b"}, {"name": "a"}], [], "sorted by name and unique"),
        ([{"name": "a"}, {"name": "a"}], [], "sorted by name and unique"),
        ([{"name": "a"}], [{"name": "a", "files": 1, "bytes": 1}], "'a' is both a file and a folder"),
        ([], [{"name": "..", "files": 1, "bytes": 1}], "unsafe manifest path '..'"),
        ([], [{"name": "s", "tree": "../../x", "files": 1, "bytes": 1}], "invalid digest"),
        ([], [{"name": "s", "files": -1, "bytes": 1}], "greater than or equal to 0"),
    ],
)
def test_tree_entries_are_validated_on_read(store, tmp_path, files, dirs, says):
    store.log_files({"a.txt": b"a"}, name="d")
    good = store.manifest(store.resolve("d")).entries[0]
    files = [{"digest": good.digest, "size": good.size, **f} for f in files]
    dirs = [{"tree": good.digest, **d} for d in dirs]
    key = forge_tree_version(store, files, dirs)
    for read in (
        lambda: list(store.entries(store.record("d", 1))),
        lambda: artifactkit.pull(store, "d:v1", tmp_path / "out"),
    ):
        with pytest.raises(InvalidInput, match=re.escape(says)) as caught:
            read()
        assert f"{store.uri}/{key}" in str(caught.value)
    assert not (tmp_path / "out").exists()
    assert not [p for p in tmp_path.rglob("passwd")]


# -- aliases and stray files -----------------------------------------------------------------------
@pytest.mark.parametrize("content", [b"\xff\xfe\x00\x01", b"hello\n", b"1 2\n", b"-1\n", b"\xd9\xa3\n"])
def test_an_alias_file_that_is_not_a_version_number_is_an_error_naming_it(store, content):
    store.log_files({"a.txt": b"a"}, name="d", aliases=("best",))
    forge(store, alias_key("d", "best"), content)
    key = f"{store.uri}/{alias_key('d', 'best')}"
    for read in (lambda: store.aliases("d"), lambda: store.resolve("d:best"), lambda: store.versions("d")):
        with pytest.raises(InvalidInput, match="not an alias") as caught:
            read()
        assert key in str(caught.value)


def test_an_alias_file_in_the_cli(local, tmp_path, cli):
    local.log_files({"a.txt": b"a"}, name="d")
    forge(local, alias_key("d", "best"), b"\x00\xff garbage")
    line = one_error_line(cli("versions", "d", "--store", local.uri, check=False))
    assert alias_key("d", "best") in line and "not an alias" in line


def test_stray_files_in_a_versions_folder_are_skipped(store, tmp_path):
    store.log_files({"a.txt": b"a"}, name="d")
    for stray in ("².json", "٣.json", "01.json", "1.json.bak", "notes.txt", "-1.json"):
        forge(store, f"{versions_prefix('d')}/{stray}", record_dict(store))
    forge(store, alias_key("d", ".tmp-123"), b"junk")  # an alias write in progress
    forge(store, "artifacts/bad name/versions/0.json", b"{}")  # not an artifact name: a stray folder
    assert store.version_numbers("d") == [0]
    assert [i.record.label for i in store.versions("d")] == ["v0"]
    assert store.artifact_names() == ["d"]
    assert store.log_files({"a.txt": b"b"}, name="d").record.label == "v1"
    report = artifactkit.verify(store)
    assert report.ok and report.versions == 2, report.problems
    artifactkit.gc(store, grace_seconds=0)
    artifactkit.pull(store, "d:v1", tmp_path / "out")
    assert (tmp_path / "out" / "a.txt").read_bytes() == b"b"


def test_stray_versions_in_the_cli(local, cli):
    local.log_files({"a.txt": b"a"}, name="d")
    forge(local, f"{versions_prefix('d')}/².json", b"\xff")
    assert "v0" in cli("versions", "d", "--store", local.uri).stdout
    assert "ok" in cli("verify", "--store", local.uri).stdout
    cli("gc", "--store", local.uri)


# -- run records and metrics ----------------------------------------------------------------------
@pytest.mark.parametrize(
    "change, says",
    [
        ({"run_id": "../../../evil"}, "invalid run id"),
        ({"run_id": "r2\n"}, "invalid run id"),
        ({"run_id": "r1"}, "the record is of run 'r1', not 'r2'"),
        ({"model_artifact": "../m"}, "invalid artifact name"),
        ({"data_yaml": "../../data.yaml"}, "unsafe manifest path"),
        ({"dataset": "../d:v0"}, "invalid artifact reference"),
    ],
)
def test_a_run_record_is_validated_against_its_run_id(store, change, says):
    create_run(store, RunRecord.model_validate(run_record("r1")))
    forge(store, run_record_key("r2"), run_record("r2", change))
    key = f"{store.uri}/{run_record_key('r2')}"
    for read in (lambda: load_run(store, "r2"), lambda: list_runs(store)):
        with pytest.raises(InvalidInput, match=says) as caught:
            read()
        assert key in str(caught.value)


def test_stray_run_folders_are_skipped(store):
    create_run(store, RunRecord.model_validate(run_record("r1")))
    forge(store, "runs/bad name/run.json", run_record("r1"))
    forge(store, "runs/r1/notes.json", b"{}")
    assert [r.run_id for r in list_runs(store)] == ["r1"]
    assert store.runs.run_exists("r1") and not store.runs.run_exists("r9")


def test_resume_of_a_run_record_that_climbs_out_is_one_line(tmp_path, local, cli):
    forge(local, run_record_key("r2"), run_record("r2", {"run_id": "../../../evil"}))
    line = one_error_line(cli("resume", f"{local.uri}/runs/r2", check=False))
    assert run_record_key("r2") in line and "invalid run id" in line
    assert not list(tmp_path.rglob("evil*"))


@pytest.mark.parametrize(
    "data, says",
    [
        (b"\xff\xfe not json", "not JSON"),
        (b"[1, 2]", "a JSON list"),
        (b'{"epoch": 1, "metrics": [1]}', "'metrics' is not an object"),
        (b'{"epoch": "x"}', "epoch 'x'"),
    ],
)
def test_a_garbage_metrics_file_is_an_error_naming_it(store, data, says):
    create_run(store, RunRecord.model_validate(run_record("r1")))
    forge(store, metrics_key("r1", 1), {"epoch": 1, "metrics": {"fitness": 0.5}})
    forge(store, metrics_key("r1", 2), data)
    forge(store, "runs/r1/metrics/notes.txt", b"stray")
    with pytest.raises(InvalidInput, match=says) as caught:
        read_metrics(store, "r1")
    assert f"{store.uri}/{metrics_key('r1', 2)}" in str(caught.value)


def test_view_of_garbage_metrics_is_one_line(local, cli, tmp_path):
    create_run(local, RunRecord.model_validate(run_record("r1")))
    forge(local, metrics_key("r1", 1), b"\x00garbage")
    line = one_error_line(
        cli("view", f"{local.uri}/runs/r1", "--no-dataset", "--out", str(tmp_path / "r.html"), check=False)
    )
    assert metrics_key("r1", 1) in line
    assert not (tmp_path / "r.html").exists()


@pytest.mark.parametrize("image", ["../../../../../etc/passwd", "ab/../../cd" + "0" * 21, 5, "A" * 32])
def test_an_evaluation_image_digest_is_validated_before_it_becomes_a_path(local, cli, tmp_path, image):
    from artifactkit.viewer import build_report

    create_run(local, RunRecord.model_validate(run_record("r1")))
    table = {"epoch": 1, "rows": [{"im_id": "a", "image": image, "gt": [], "pred": []}]}
    local.log_files({"table.json": json.dumps(table).encode()}, name="r1-evaluation")
    with pytest.raises(InvalidInput, match="invalid image digest") as caught:
        build_report(runs=[f"{local.uri}/runs/r1"], include_dataset=False, out=tmp_path / "r.html")
    assert "r1-evaluation:v0" in str(caught.value)
    line = one_error_line(
        cli("view", f"{local.uri}/runs/r1", "--no-dataset", "--out", str(tmp_path / "r.html"), check=False)
    )
    assert "r1-evaluation:v0" in line and "invalid image digest" in line


def test_an_evaluation_table_of_the_wrong_shape_is_one_line(local, cli, tmp_path):
    create_run(local, RunRecord.model_validate(run_record("r1")))
    table = {"epoch": 1, "rows": [{"im_id": "a", "image": None, "gt": [["x"]], "pred": []}]}
    local.log_files({"table.json": json.dumps(table).encode()}, name="r1-evaluation")
    line = one_error_line(
        cli("view", f"{local.uri}/runs/r1", "--no-dataset", "--out", str(tmp_path / "r.html"), check=False)
    )
    assert "r1-evaluation" in line


# -- a store that does not exist -------------------------------------------------------------------
@pytest.mark.parametrize(
    "command",
    [
        ["verify"],
        ["gc"],
        ["runs"],
        ["versions", "d"],
        ["pull", "d", "OUT"],
        ["push", "d", "--to", "DST"],
        ["view", "d:v0"],
    ],
)
def test_a_store_that_does_not_exist_is_an_error(tmp_path, cli, command):
    missing = tmp_path / "no-such-folder"
    args = [str(tmp_path / "out") if a == "OUT" else str(tmp_path / "dst") if a == "DST" else a for a in command]
    line = one_error_line(cli(*args, "--store", str(missing), check=False))
    assert str(missing) in line and "no artifactkit store" in line
    assert not missing.exists() and not (tmp_path / "out").exists() and not (tmp_path / "dst").exists()


def test_only_a_first_write_may_name_a_new_store(tmp_path, cli):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a.txt").write_text("a")
    cli("log-dataset", str(tmp_path / "d"), "--store", str(tmp_path / "s"))
    cli("push", "d", "--to", str(tmp_path / "s2"), "--store", str(tmp_path / "s"))
    assert "ok" in cli("verify", "--store", str(tmp_path / "s2")).stdout
    (tmp_path / "empty").mkdir()
    assert "no artifactkit store" in one_error_line(cli("verify", "--store", str(tmp_path / "empty"), check=False))


def test_an_empty_s3_prefix_is_not_a_store(s3_bucket, cli):
    line = one_error_line(cli("verify", "--store", f"{s3_bucket}/nothing", check=False))
    assert f"{s3_bucket}/nothing" in line and "no artifactkit store" in line


def test_the_library_opens_a_missing_store_only_when_asked_to(tmp_path):
    from artifactkit.errors import NotFound

    with pytest.raises(NotFound, match="no artifactkit store"):
        artifactkit.open_store(str(tmp_path / "none"), must_exist=True)
    assert not artifactkit.open_store(str(tmp_path / "none")).exists()
    assert not Path(tmp_path / "none").exists()
