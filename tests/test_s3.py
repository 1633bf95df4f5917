"""S3 as a user meets it: the real CLI in a subprocess against a real S3 API server (moto on
127.0.0.1), with credentials and endpoint in the standard AWS variables."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

import artifactkit
from artifactkit.errors import AlreadyExists, BackendError

pytest.importorskip("s3fs")


def make_dataset(root: Path, n: int, size: int = 2000, seed: int = 0) -> Path:
    """A YOLO-layout folder of n random images and their label files."""
    rng = __import__("random").Random(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "labels").mkdir(parents=True, exist_ok=True)
    (root / "data.yaml").write_text("path: .\ntrain: images\nval: images\nnames: [piece]\n")
    for i in range(n):
        (root / "images" / f"{i:05d}.jpg").write_bytes(rng.randbytes(size))
        (root / "labels" / f"{i:05d}.txt").write_text(f"0 0.{i:04d} 0.5 0.1 0.2\n")
    return root


def last_json(proc) -> dict:
    return json.loads(proc.stdout.strip().splitlines()[-1])


def one_error_line(proc) -> str:
    assert proc.returncode != 0, proc.stdout
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    return lines[0]


def _s3fs(store):
    """The store's s3fs filesystem, under the packs where it has them (packs.PackedBackend.inner)."""
    return getattr(store.backend, "inner", store.backend).fs


def count_calls(store, operation: str, param: str = "Key") -> list[str]:
    """params[param] of every `operation` request (e.g. PutObject) the store's S3 client sends from now on."""
    seen: list[str] = []
    client = _s3fs(store).connect()  # the client s3fs will use
    client.meta.events.register(
        f"before-parameter-build.s3.{operation}", lambda params, **_: seen.append(params[param])
    )
    return seen


def test_log_pull_and_a_second_version_uploads_only_the_changes(cli, s3_bucket, tmp_path):
    store = f"{s3_bucket}/team/artifacts"
    data = make_dataset(tmp_path / "chess", 25)
    v0 = last_json(cli("log-dataset", str(data), "--store", store, "--json"))
    assert (v0["version"], v0["uploaded_files"]) == ("v0", 51)
    (data / "images" / "00003.jpg").write_bytes(b"changed image")
    (data / "labels" / "00003.txt").write_text("0 0.1 0.1 0.1 0.1\n")
    v1 = last_json(cli("log-dataset", str(data), "--store", store, "--json"))
    assert (v1["version"], v1["uploaded_files"]) == ("v1", 2)
    again = artifactkit.open_store(store).log_folder(data)
    assert (again.record.label, again.created, again.uploaded_files) == ("v1", False, 0)

    out = tmp_path / "restored"
    cli("pull", "chess:v1", str(out), "--store", store)
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == sorted(p.relative_to(data) for p in data.rglob("*"))
    assert (out / "images" / "00003.jpg").read_bytes() == b"changed image"
    assert artifactkit.verify(artifactkit.open_store(store)).ok


def test_pull_keeps_a_blob_cache_so_v1_after_v0_downloads_only_what_changed(cli, s3_bucket, tmp_path):
    store = f"{s3_bucket}/c"
    data = make_dataset(tmp_path / "chess", 10)
    artifactkit.open_store(store).log_folder(data)
    (data / "images" / "00001.jpg").write_bytes(b"new pixels")
    (data / "labels" / "00001.txt").write_text("0 0.2 0.2 0.2 0.2\n")
    artifactkit.open_store(store).log_folder(data)

    first = last_json(cli("pull", "chess:v0", str(tmp_path / "a"), "--store", store, "--json"))
    assert first["downloaded_files"] == 21  # every distinct blob once
    second = last_json(cli("pull", "chess:v1", str(tmp_path / "b"), "--store", store, "--json"))
    assert (second["written_files"], second["downloaded_files"]) == (21, 2)
    cached = Path(os.environ["ARTIFACTKIT_CACHE_DIR"]) / "blobs" / "objects"
    assert len([p for p in cached.rglob("*") if p.is_file()]) == 23
    uncached = artifactkit.pull(artifactkit.open_store(store), "chess:v1", tmp_path / "c", cache=False)
    assert uncached.downloaded_files == 21


def test_push_one_version_then_all_sends_only_missing_blobs(cli, s3_bucket, tmp_path):
    local, remote = str(tmp_path / ".artifactkit"), f"{s3_bucket}/mirror"
    data = make_dataset(tmp_path / "chess", 8)
    for i in range(3):
        (data / "labels" / "00000.txt").write_text(f"0 0.{i + 1} 0.5 0.1 0.1\n")
        artifactkit.open_store(local).log_folder(data, aliases=("best",) if i == 1 else ())

    one = last_json(cli("push", "chess:v1", "--store", local, "--to", remote, "--json"))
    assert (one["versions"], one["uploaded_files"]) == (["v1"], 17)
    listed = artifactkit.open_store(remote).versions("chess")
    assert [(v.record.label, v.aliases) for v in listed] == [("v1", ("latest", "best"))]

    every = last_json(cli("push", "chess", "--store", local, "--to", remote, "--json"))
    assert (every["sent_versions"], every["uploaded_files"]) == (["v0", "v2"], 2)  # one new label each
    again = artifactkit.push(artifactkit.open_store(local), "chess", artifactkit.open_store(remote))
    assert (again.sent_versions, again.uploaded_files) == ([], 0)
    artifactkit.pull(artifactkit.open_store(remote), "chess:v2", tmp_path / "out")
    assert (tmp_path / "out" / "labels" / "00000.txt").read_text() == "0 0.3 0.5 0.1 0.1\n"


def test_push_refuses_a_different_version_under_the_same_number(cli, s3_bucket, tmp_path):
    remote, local = f"{s3_bucket}/p", str(tmp_path / "local")
    artifactkit.open_store(remote).log_folder(make_dataset(tmp_path / "chess", 2, seed=1))
    artifactkit.open_store(local).log_folder(make_dataset(tmp_path / "other" / "chess", 2, seed=2))
    line = one_error_line(cli("push", "chess:v0", "--store", local, "--to", remote, check=False))
    assert "chess:v0 exists with different content" in line and remote in line


def test_four_concurrent_writers_get_four_distinct_versions(s3_bucket, tmp_path):
    store = f"{s3_bucket}/race"
    folders = [make_dataset(tmp_path / f"w{i}" / "shared", 6, seed=10 + i) for i in range(4)]
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "artifactkit", "log-dataset", str(f), "--store", store, "--json"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for f in folders
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, outs
    versions = sorted(json.loads(o.strip().splitlines()[-1])["version"] for o, _ in outs)
    assert versions == ["v0", "v1", "v2", "v3"]
    s = artifactkit.open_store(store)
    assert len({s.record("shared", v).manifest for v in range(4)}) == 4  # none lost, none overwritten
    assert artifactkit.verify(s).ok


@pytest.mark.parametrize("packed", [True, False])
def test_v1_with_two_changed_files_puts_two_blobs_and_the_records(s3_bucket, tmp_path, packed):
    data = make_dataset(tmp_path / "chess", 40)
    uri, options = f"{s3_bucket}/count", {} if packed else {"pack": "false"}
    s = artifactkit.open_store(uri, options)
    lists, heads = count_calls(s, "ListObjectsV2", "Prefix"), count_calls(s, "HeadObject")
    puts = count_calls(s, "PutObject")
    s.log_folder(data)
    # 81 new blobs: one listing, no HEAD per blob; one existence check per folder's tree (3)
    assert (lists.count("count/objects/"), [h for h in heads if "/trees/" not in h]) == (1, [])
    assert len(heads) == 3
    blob_puts = [k for k in puts if k.split("/")[1] in ("objects", "packs", "index")]
    assert len(blob_puts) == (2 if packed else 81)  # one pack and its index, or one PUT per blob
    (data / "images" / "00007.jpg").write_bytes(b"x")
    (data / "labels" / "00007.txt").write_text("0 0.9 0.9 0.1 0.1\n")
    s = artifactkit.open_store(uri, options)  # a fresh process's view: a new client
    puts, heads = count_calls(s, "PutObject"), count_calls(s, "HeadObject")
    lists = count_calls(s, "ListObjectsV2", "Prefix")
    s.log_folder(data)
    kinds = sorted(k.split("/")[1] for k in puts)
    # probe refused: 412; the trees on the path to the 2 changed files (images/, labels/, the
    # root): O(depth) metadata objects, not one manifest listing every file; the log's writer lock
    # (locks.py: gc deletes nothing it relies on)
    blobs = ["index", "packs"] if packed else ["objects", "objects"]
    assert kinds == sorted([".artifactkit", "artifacts", "locks", *blobs, "trees", "trees", "trees"]), puts
    # Every blob of v1 is checked (none assumed present because v0 had it). Packed: the index
    # (one listing, one GET) knows 79 of the 81, the 2 new ones are asked for (2 HEADs); loose:
    # the 81 keys are one listing of objects/. The 3 trees written were checked first (3 HEADs).
    assert lists.count("count/objects/") == (0 if packed else 1)
    assert len([h for h in heads if "/trees/" not in h]) == (2 if packed else 0)
    assert len([h for h in heads if "/trees/" in h]) == 3
    assert artifactkit.verify(s).ok


def test_server_going_away_mid_upload_then_rerun_completes(own_s3_server, tmp_path, monkeypatch):
    import boto3

    env = {
        "AWS_ENDPOINT_URL": own_s3_server.url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_MAX_ATTEMPTS": "2",
    }  # the user's knob: give up sooner
    for var, value in env.items():
        monkeypatch.setenv(var, value)
    bucket = f"ak-{uuid.uuid4().hex[:12]}"
    s3 = boto3.client(
        "s3",
        endpoint_url=own_s3_server.url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    s3.create_bucket(Bucket=bucket)
    data = make_dataset(tmp_path / "chess", 150, size=20_000)
    args = [
        sys.executable,
        "-m",
        "artifactkit",
        "log-dataset",
        str(data),
        "--store",
        f"s3://{bucket}/a",
        "--json",
        "-o",
        "pack=false",
    ]  # one object per blob: many requests, so the server can go away between them
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, **env})
    deadline = time.monotonic() + 60
    while s3.list_objects_v2(Bucket=bucket, Prefix="a/objects/").get("KeyCount", 0) < 30:
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.1)
    own_s3_server.stop()
    out, err = proc.communicate(timeout=60)
    line = one_error_line(subprocess.CompletedProcess(args, proc.returncode, out, err))
    assert f"s3://{bucket}/a" in line and "cannot reach the S3 endpoint" in line

    own_s3_server.start()  # same port, same buckets
    present = s3.list_objects_v2(Bucket=bucket, Prefix="a/").get("Contents", [])
    assert not [o for o in present if "/artifacts/" in o["Key"]]  # no version before its bytes
    blobs_there = len([o for o in present if "/objects/" in o["Key"]])
    rerun = subprocess.run(args, capture_output=True, text=True, env={**os.environ, **env})
    assert rerun.returncode == 0, rerun.stderr
    assert last_json(rerun)["uploaded_files"] == 301 - blobs_there
    assert artifactkit.verify(artifactkit.open_store(f"s3://{bucket}/a")).ok


def test_a_bucket_that_does_not_exist(cli, s3_env, tmp_path):
    data = make_dataset(tmp_path / "chess", 1)
    line = one_error_line(cli("log-dataset", str(data), "--store", "s3://no-such-bucket-ak/x", check=False))
    assert "s3://no-such-bucket-ak/x: bucket 'no-such-bucket-ak' does not exist" in line
    with pytest.raises(BackendError, match="bucket 'no-such-bucket-ak' does not exist"):
        artifactkit.pull(artifactkit.open_store("s3://no-such-bucket-ak/x"), "chess:v0", tmp_path / "o")


@pytest.fixture
def s3_auth_enforced(s3_env):
    """moto checks signatures from now on (against its IAM, where no key exists: every key is
    wrong). moto holds this switch per process, so it is switched back off afterwards."""
    import urllib.request

    def switch(count: str) -> None:
        urllib.request.urlopen(
            urllib.request.Request(
                f"{s3_env}/moto-api/reset-auth",
                data=count.encode(),
                headers={"Content-Type": "text/plain"},
                method="POST",
            )
        )

    switch("0")
    yield
    switch("inf")


def test_wrong_credentials_never_print_the_secret(cli, s3_bucket, s3_auth_enforced, tmp_path):
    secret = "wJalrXUtnFEMI-K7MDENG-SECRETVALUE"
    data = make_dataset(tmp_path / "chess", 1)
    proc = cli(
        "log-dataset", str(data), "--store", f"{s3_bucket}/p", check=False, env={"AWS_SECRET_ACCESS_KEY": secret}
    )
    line = one_error_line(proc)
    assert f"{s3_bucket}/p" in line and "access denied (InvalidAccessKeyId)" in line
    assert secret not in proc.stdout + proc.stderr
    with pytest.raises(BackendError, match="access denied") as e:  # the same through --storage-option
        artifactkit.open_store(f"{s3_bucket}/p", {"key": "AKIAWRONG", "secret": secret}).log_folder(data)
    assert secret not in str(e.value)


def test_an_unreachable_endpoint(cli, s3_env, tmp_path):
    proc = cli(
        "pull",
        "chess:v0",
        str(tmp_path / "o"),
        "--store",
        "s3://bucket/p",
        "--storage-option",
        "endpoint_url=http://127.0.0.1:9",
        check=False,
        env={"AWS_MAX_ATTEMPTS": "2"},
    )
    line = one_error_line(proc)
    assert "s3://bucket/p" in line and "cannot reach the S3 endpoint http://127.0.0.1:9" in line


def test_endpoint_and_credentials_as_storage_options(cli, s3_bucket, tmp_path, monkeypatch):
    endpoint = os.environ["AWS_ENDPOINT_URL"]
    for var in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(var)
    opts = [
        "-o",
        f"endpoint_url={endpoint}",
        "-o",
        "key=testing",
        "-o",
        "secret=testing",
        "-o",
        "config_kwargs.retries.max_attempts=3",
    ]
    done = last_json(
        cli("log-dataset", str(make_dataset(tmp_path / "chess", 2)), "--store", f"{s3_bucket}/o", *opts, "--json")
    )
    assert done["version"] == "v0"


def test_a_server_that_ignores_if_none_match_is_reported_not_raced(s3_bucket):
    """Simulate such a server by dropping the header from the request before it is sent."""

    def ignoring(uri: str, **options):
        s = artifactkit.open_store(uri, options)
        _s3fs(s).connect().meta.events.register(
            "before-parameter-build.s3.PutObject", lambda params, **_: params.pop("IfNoneMatch", None)
        )
        return s

    s = ignoring(f"{s3_bucket}/lax")
    with pytest.raises(BackendError, match="does not enforce conditional writes.*single_writer=true"):
        s.log_files({"a.txt": b"a"}, name="d")
    assert list(s.backend.list("objects/")) == []  # refused before the first blob went out
    s = ignoring(f"{s3_bucket}/lax", single_writer="true")  # the user vouches: one writer only
    assert s.log_files({"a.txt": b"a"}, name="d").record.version == 0
    assert not s.backend.capabilities.atomic_create
    assert s.log_files({"a.txt": b"b"}, name="d").record.version == 1
    with pytest.raises(AlreadyExists):
        s.backend.write("artifacts/d/versions/0.json", b"{}", create_only=True)
