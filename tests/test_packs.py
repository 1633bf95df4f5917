"""Small blobs in packs on S3 (backends/packs.py), against the moto server: what is written,
that every blob stays checked by its digest, that a damaged pack or index is named, what gc
does with whole and partly dead packs, and the crash between a pack and its index."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import artifactkit
from artifactkit.errors import IntegrityError, NotFound
from artifactkit.hashing import digest_bytes
from artifactkit.layout import FORMAT_KEY, index_key, pack_key
from artifactkit.lifecycle import delete_versions
from artifactkit.objects import STORE_FORMAT
from artifactkit.packs import PACK_TARGET


@pytest.fixture
def s3(s3_bucket, s3_env):
    """(store URI, a boto3 client, the bucket) for a fresh bucket."""
    import boto3

    return f"{s3_bucket}/p", boto3.client("s3", endpoint_url=s3_env), s3_bucket[len("s3://") :]


def keys(client, bucket: str, top: str) -> list[str]:
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"p/{top}/")
    return sorted(o["Key"][2:] for page in pages for o in page.get("Contents", []))


def get(client, bucket: str, key: str) -> bytes:
    return client.get_object(Bucket=bucket, Key=f"p/{key}")["Body"].read()


def put(client, bucket: str, key: str, data: bytes) -> None:
    client.put_object(Bucket=bucket, Key=f"p/{key}", Body=data)


def folder(root: Path, files: dict[str, bytes]) -> Path:
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root


def test_small_blobs_go_into_one_pack_and_come_back_checked(s3, tmp_path):
    uri, client, bucket = s3
    files = {f"d{i % 3}/f{i}.txt": os.urandom(100 + i) for i in range(50)}
    store = artifactkit.open_store(uri)
    store.log_folder(folder(tmp_path / "ds", files))
    assert keys(client, bucket, "objects") == []  # not one object per blob
    assert (len(keys(client, bucket, "packs")), len(keys(client, bucket, "index"))) == (1, 1)
    assert json.loads(get(client, bucket, FORMAT_KEY)) == {"format": STORE_FORMAT}  # older code refuses it
    fresh = artifactkit.open_store(uri)  # another process: finds the blobs through the index
    artifactkit.pull(fresh, "ds", tmp_path / "out")
    assert {p: (tmp_path / "out" / p).read_bytes() for p in files} == files
    assert artifactkit.verify(fresh).summary() == {
        "ok": True,
        "objects": 50,
        "versions": 1,
        "problems": [],
        "damage": {},
        "hashed": 50,
        "hashed_bytes": sum(map(len, files.values())),
    }


def test_a_flipped_byte_in_a_pack_is_named_by_verify_and_refused_by_pull(s3, tmp_path):
    uri, client, bucket = s3
    files = {"a.txt": b"a" * 300, "b.txt": b"b" * 300}
    artifactkit.open_store(uri).log_folder(folder(tmp_path / "ds", files))
    [pack] = keys(client, bucket, "packs")
    data = bytearray(get(client, bucket, pack))
    data[data.index(b"b")] ^= 1
    put(client, bucket, pack, bytes(data))
    report = artifactkit.verify(artifactkit.open_store(uri))
    bad = f"objects/{digest_bytes(files['b.txt'])[:2]}/{digest_bytes(files['b.txt'])[2:]}"
    assert report.problems[0] == f"{bad}: corrupt blob (content does not match its digest)"
    assert report.problems[1].startswith(f"ds:v0: b.txt missing blob {bad}") and len(report.problems) == 2
    with pytest.raises(IntegrityError, match=f"{bad}: blob is corrupt"):
        artifactkit.pull(artifactkit.open_store(uri), "ds", tmp_path / "out", cache=False)


def _rewrite_index(client, bucket: str, edit, which=lambda doc: True) -> str:
    """Replace the store's index that `which` picks by an edited one, stored under the edited
    bytes' own digest (so only the checks of its fields can catch it); returns the new key."""
    [old] = [k for k in keys(client, bucket, "index") if which(json.loads(get(client, bucket, k)))]
    doc = edit(json.loads(get(client, bucket, old)))
    data = json.dumps(doc).encode()
    new = index_key(digest_bytes(data))
    put(client, bucket, new, data)
    client.delete_object(Bucket=bucket, Key=f"p/{old}")
    return new


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda d: {**d, "pack": "../../artifacts"}, "invalid pack index"),
        (lambda d: {**d, "blobs": [[b[0], d["size"], 1] for b in d["blobs"]]}, "invalid blob entry"),
        (lambda d: {**d, "blobs": [["AB" * 16, 0, 1]]}, "invalid blob entry"),
        (lambda d: {**d, "blobs": [[b[0], 0, 1 << 40] for b in d["blobs"]]}, "invalid blob entry"),
        (lambda d: {**d, "size": -1}, "invalid pack index"),
        (lambda d: [d], "not a pack index"),
        (lambda d: {**d, "pack": "0" * 32}, f"names packs/00/{'0' * 30}, which is not in the store"),
    ],
)
def test_an_index_read_from_the_store_is_checked_before_use(s3, tmp_path, edit, message):
    """A bad index is never used: its blobs are not found (named), verify names the index, and
    every other index of the store still serves its blobs."""
    uri, client, bucket = s3
    artifactkit.open_store(uri).log_folder(folder(tmp_path / "ds", {"a.txt": b"a", "b.txt": b"b"}))
    artifactkit.open_store(uri).log_files({"other.txt": b"another pack"}, name="other")
    key = _rewrite_index(client, bucket, edit, lambda doc: len(doc["blobs"]) == 2)
    with pytest.raises(NotFound, match=f"{uri}: objects/../.* not found"):
        artifactkit.pull(artifactkit.open_store(uri), "ds", tmp_path / "out", cache=False)
    report = artifactkit.verify(artifactkit.open_store(uri))
    assert report.problems[0].startswith(f"{uri}/{key}: {message}")
    assert [p.split(":")[0] for p in report.problems[1:]] == ["ds", "ds"]  # its two blobs, named missing
    artifactkit.pull(artifactkit.open_store(uri), "other", tmp_path / "other", cache=False)
    assert (tmp_path / "other" / "other.txt").read_bytes() == b"another pack"


def test_an_index_whose_bytes_do_not_match_its_name_is_not_used(s3, tmp_path, monkeypatch):
    uri, client, bucket = s3
    artifactkit.open_store(uri).log_folder(folder(tmp_path / "ds", {"a.txt": b"a"}))
    [key] = keys(client, bucket, "index")
    put(client, bucket, key, get(client, bucket, key).replace(b'"size":1', b'"size":2'))
    monkeypatch.setenv("ARTIFACTKIT_CACHE_DIR", str(tmp_path / "another-machine"))  # no good copy kept
    with pytest.raises(NotFound, match="objects/.* not found"):
        artifactkit.pull(artifactkit.open_store(uri), "ds", tmp_path / "out", cache=False)
    assert (
        f"{uri}/{key}: index bytes do not match their digest"
        in artifactkit.verify(artifactkit.open_store(uri)).problems
    )


def test_a_pack_cut_short_is_named_and_its_blobs_sent_again(s3, tmp_path):
    uri, client, bucket = s3
    data = folder(tmp_path / "ds", {"a.txt": b"a" * 10, "b.txt": b"b" * 10})
    artifactkit.open_store(uri).log_folder(data)
    [pack], [index] = keys(client, bucket, "packs"), keys(client, bucket, "index")
    put(client, bucket, pack, get(client, bucket, pack)[:5])  # cut short: the index says 20 bytes
    with pytest.raises(NotFound, match=f"{uri}: objects/.* not found"):
        artifactkit.pull(artifactkit.open_store(uri), "ds", tmp_path / "out", cache=False)
    report = artifactkit.verify(artifactkit.open_store(uri))  # named, not a crash
    assert report.problems[0] == f"{uri}/{index}: names {pack} of 20 bytes, but it has 5"
    assert len(report.problems) == 3  # and the two files, missing
    (data / "c.txt").write_bytes(b"c")  # (the same two alone would make the same pack again)
    assert artifactkit.open_store(uri).log_folder(data).uploaded_files == 3
    artifactkit.pull(artifactkit.open_store(uri), "ds:v0", tmp_path / "v0", cache=False)
    assert (tmp_path / "v0" / "b.txt").read_bytes() == b"b" * 10


def test_gc_drops_dead_blobs_from_a_partly_dead_pack_and_whole_dead_packs(s3, tmp_path):
    uri, client, bucket = s3
    store = artifactkit.open_store(uri)
    data = folder(tmp_path / "ds", {"keep.txt": b"kept by v1", "old.txt": b"only in v0"})
    store.log_folder(data)
    (data / "old.txt").write_bytes(b"v1's own")
    store.log_folder(data)
    packs_before = keys(client, bucket, "packs")
    assert len(packs_before) == 2
    delete_versions(store, "ds", [0])
    report = artifactkit.gc(artifactkit.open_store(uri), grace_seconds=0)
    assert (report.deleted_objects, report.deleted_packs) == (1, 0)  # "only in v0" left its index
    assert keys(client, bucket, "packs") == packs_before  # the first pack still holds keep.txt
    fresh = artifactkit.open_store(uri)
    assert artifactkit.verify(fresh).summary()["objects"] == 2 and artifactkit.verify(fresh).ok
    artifactkit.pull(fresh, "ds:v1", tmp_path / "out", cache=False)
    assert (tmp_path / "out" / "keep.txt").read_bytes() == b"kept by v1"
    assert artifactkit.gc(fresh, grace_seconds=0).deleted_objects == 0  # nothing dead is listed again

    delete_versions(fresh, "ds", [1])
    artifactkit.gc(artifactkit.open_store(uri), grace_seconds=0)
    assert (keys(client, bucket, "packs"), keys(client, bucket, "index"), keys(client, bucket, "objects")) == (
        [],
        [],
        [],
    )


def test_a_pack_whose_index_never_came_is_swept_after_the_grace_period(s3, tmp_path):
    uri, client, bucket = s3
    store = artifactkit.open_store(uri)
    store.log_folder(folder(tmp_path / "ds", {"a.txt": b"a"}))
    orphan = pack_key(digest_bytes(b"a killed upload"))
    put(client, bucket, orphan, b"a killed upload")
    assert artifactkit.gc(artifactkit.open_store(uri)).deleted_packs == 0  # recent: may be in flight
    assert orphan in keys(client, bucket, "packs")
    assert artifactkit.gc(artifactkit.open_store(uri), grace_seconds=0).deleted_packs == 1
    assert orphan not in keys(client, bucket, "packs") and len(keys(client, bucket, "packs")) == 1
    assert artifactkit.verify(artifactkit.open_store(uri)).ok


def test_loose_and_packed_blobs_read_side_by_side(s3, tmp_path):
    uri, client, bucket = s3
    data = folder(tmp_path / "ds", {"a.txt": b"loose", "big.bin": os.urandom(1_100_000)})
    artifactkit.open_store(uri, {"pack": "false"}).log_folder(data)
    assert len(keys(client, bucket, "objects")) == 2 and keys(client, bucket, "packs") == []
    (data / "b.txt").write_bytes(b"packed")
    result = artifactkit.open_store(uri).log_folder(data)
    assert result.uploaded_files == 1 and len(keys(client, bucket, "packs")) == 1
    (data / "big2.bin").write_bytes(os.urandom(1_100_000))  # above PACK_BLOB_MAX: its own object
    artifactkit.open_store(uri).log_folder(data)
    assert len(keys(client, bucket, "objects")) == 3
    artifactkit.pull(artifactkit.open_store(uri), "ds", tmp_path / "out", cache=False)
    assert {p.name for p in (tmp_path / "out").iterdir()} == {"a.txt", "b.txt", "big.bin", "big2.bin"}
    assert artifactkit.verify(artifactkit.open_store(uri)).summary()["objects"] == 4


def test_push_to_s3_packs_and_pull_back_from_it(s3, tmp_path):
    uri, client, bucket = s3
    files = {f"f{i}.txt": os.urandom(50) for i in range(30)}
    local = artifactkit.open_store(str(tmp_path / "local"))
    local.log_folder(folder(tmp_path / "ds", files))
    artifactkit.push(local, "ds", artifactkit.open_store(uri))
    assert (len(keys(client, bucket, "packs")), keys(client, bucket, "objects")) == (1, [])
    artifactkit.pull(artifactkit.open_store(uri), "ds", tmp_path / "out")
    assert {p: (tmp_path / "out" / p).read_bytes() for p in files} == files


def test_killed_mid_upload_then_rerun_completes_and_gc_leaves_no_orphan(s3, tmp_path):
    """kill -9 wherever the upload is (between packs, between a pack and its index): the rerun
    sends what no index names yet, and gc removes the packs whose index never came."""
    uri, client, bucket = s3
    per_file = 200_000
    n = 6 * PACK_TARGET // per_file  # ~6 packs, in more than one ingest batch
    data = folder(tmp_path / "ds", {f"f{i:04d}.bin": os.urandom(per_file) for i in range(n)})
    args = [sys.executable, "-m", "artifactkit", "log-dataset", str(data), "--store", uri, "--json"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not keys(client, bucket, "packs"):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert keys(client, bucket, "artifacts") == []  # no version before its bytes
    indexed = sum(len(json.loads(get(client, bucket, k))["blobs"]) for k in keys(client, bucket, "index"))
    rerun = subprocess.run(args, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    assert json.loads(rerun.stdout.strip().splitlines()[-1])["uploaded_files"] == n - indexed
    store = artifactkit.open_store(uri)
    artifactkit.gc(store, grace_seconds=0)
    named = {json.loads(get(client, bucket, k))["pack"] for k in keys(client, bucket, "index")}
    assert {pack_key(d) for d in named} == set(keys(client, bucket, "packs"))
    assert artifactkit.verify(artifactkit.open_store(uri)).ok


def test_indexes_are_kept_on_this_machine_and_a_damaged_copy_is_read_again(s3, tmp_path, monkeypatch):
    from test_s3 import count_calls

    uri, client, bucket = s3
    files = {f"f{i}.txt": os.urandom(40) for i in range(5)}
    artifactkit.open_store(uri).log_folder(folder(tmp_path / "ds", files))
    [key] = keys(client, bucket, "index")
    cached = Path(os.environ["ARTIFACTKIT_CACHE_DIR"]) / key
    assert cached.read_bytes() == get(client, bucket, key)  # the writer kept it

    def pull_counting_index_gets(out: str) -> int:
        store = artifactkit.open_store(uri)
        gets = count_calls(store, "GetObject")
        artifactkit.pull(store, "ds", tmp_path / out, cache=False)
        assert {p: (tmp_path / out / p).read_bytes() for p in files} == files
        return len([g for g in gets if "/index/" in g])

    assert pull_counting_index_gets("a") == 0
    cached.write_bytes(b"damaged")
    assert pull_counting_index_gets("b") == 1  # read again from the store, and kept again
    assert cached.read_bytes() == get(client, bucket, key)
    monkeypatch.setenv("ARTIFACTKIT_CACHE_DIR", "off")
    assert pull_counting_index_gets("c") == 1


def test_empty_files_in_a_pack_read_in_any_order(s3, tmp_path):
    import io

    from artifactkit.transfer import cat

    uri, client, bucket = s3
    files = {"a.txt": b"hello", "y.txt": b"why", "z_empty": b"", "sub/empty2": b""}
    artifactkit.open_store(uri).log_folder(folder(tmp_path / "ds", files))
    store = artifactkit.open_store(uri)
    out = io.BytesIO()
    cat(store, "ds", "z_empty", out)
    assert out.getvalue() == b""
    empty, why = digest_bytes(b""), digest_bytes(b"why")
    assert dict(store.read_blobs([why, empty])) == {why: b"why", empty: b""}
    dest = folder(tmp_path / "out", {"a.txt": b"hello"})  # an incremental pull: a.txt is there
    artifactkit.pull(artifactkit.open_store(uri), "ds", dest, cache=False)
    assert {p: (dest / p).read_bytes() for p in files} == files


@pytest.mark.parametrize("options", [{}, {"pack": "false"}])
def test_a_long_lived_store_sees_what_another_process_deleted_and_logged(s3, tmp_path, options):
    """One Store object kept open (a training process): blobs gc took meanwhile are sent again
    (packed ones, and loose ones: a big file, or pack=false; 100 of them, more than are asked
    for one HEAD each, so existence comes from a listing of objects/), and what another process
    logged or re-packed meanwhile is read."""
    uri, client, bucket = s3
    kept = artifactkit.open_store(uri, options)
    files = {f"f{i:03d}": os.urandom(20) for i in range(98)} | {"big.bin": os.urandom(1_100_000)}
    data = folder(tmp_path / "ds", {"a": b"a", "b": b"b", **files})
    kept.log_folder(data, name="ds")
    artifactkit.pull(kept, "ds", tmp_path / "first", cache=False)  # the map now knows a and b
    other = artifactkit.open_store(uri)
    delete_versions(other, "ds", [0])
    artifactkit.gc(other, grace_seconds=0)
    assert keys(client, bucket, "packs") == keys(client, bucket, "objects") == []
    assert kept.log_folder(data, name="ds").uploaded_files == 101
    assert artifactkit.verify(artifactkit.open_store(uri)).ok

    artifactkit.open_store(uri).log_files({"new.txt": b"logged elsewhere"}, name="later")
    artifactkit.pull(kept, "later", tmp_path / "later", cache=False)  # a miss lists the indexes again
    assert (tmp_path / "later" / "new.txt").read_bytes() == b"logged elsewhere"


def test_a_map_entry_whose_pack_a_gc_removed_is_looked_up_again(s3, tmp_path):
    uri, client, bucket = s3
    artifactkit.open_store(uri).log_files({"a": b"a" * 5, "b": b"b" * 5}, name="ds")
    kept = artifactkit.open_store(uri)
    artifactkit.pull(kept, "ds", tmp_path / "first", cache=False)  # kept's map: a, b in pack P
    other = artifactkit.open_store(uri)
    delete_versions(other, "ds", [0])
    artifactkit.gc(other, grace_seconds=0)  # P is gone
    other.log_files({"a": b"a" * 5, "b": b"b" * 5, "c": b"c"}, name="ds")  # a, b again, in a new pack
    artifactkit.pull(kept, "ds", tmp_path / "again", cache=False)
    assert (tmp_path / "again" / "b").read_bytes() == b"b" * 5


def test_an_index_replaced_while_a_reader_lists_is_found_anew(s3, tmp_path, monkeypatch):
    """Another machine's gc replaces an index between a reader's listing and its read of it."""
    uri, client, bucket = s3
    w = artifactkit.open_store(uri)
    w.log_files({"keep": b"keep me", "old": b"old"}, name="ds")
    w.log_files({"keep": b"keep me", "new": b"new"}, name="ds")  # v1: keep lives in v0's pack
    delete_versions(w, "ds", [0])
    monkeypatch.setenv("ARTIFACTKIT_CACHE_DIR", str(tmp_path / "reader-machine"))
    reader = artifactkit.open_store(uri)
    listing, fired = reader.backend.inner.list, []

    def list_then_gc(prefix):
        out = list(listing(prefix))
        if prefix.startswith("packs") and not fired:  # the reader has listed index/ and packs/
            fired.append(True)
            artifactkit.gc(artifactkit.open_store(uri), grace_seconds=0)
        return iter(out)

    monkeypatch.setattr(reader.backend.inner, "list", list_then_gc)
    artifactkit.pull(reader, "ds", tmp_path / "out", cache=False)
    assert fired and (tmp_path / "out" / "keep").read_bytes() == b"keep me"


def test_two_threads_logging_through_one_store(s3, tmp_path):
    """A training run logs evaluation tables while its saver thread writes checkpoints."""
    import threading

    uri, client, bucket = s3
    store = artifactkit.open_store(uri)
    errors = []

    def log(name: str) -> None:
        try:
            for i in range(8):
                store.log_files({f"f{j}": os.urandom(200_000) for j in range(6)}, name=f"{name}{i}")
        except Exception as e:  # noqa: BLE001 - the test reports any
            errors.append(f"{name}: {type(e).__name__}: {e}")

    threads = [threading.Thread(target=log, args=(n,)) for n in ("ckpt", "eval")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert artifactkit.verify(artifactkit.open_store(uri)).summary()["objects"] == 2 * 8 * 6


def test_a_deeply_nested_index_is_named_not_a_crash(s3, tmp_path):
    uri, client, bucket = s3
    artifactkit.open_store(uri).log_files({"a": b"a"}, name="ds")
    bomb = b"[" * 200_000 + b"]" * 200_000
    put(client, bucket, index_key(digest_bytes(bomb)), bomb)
    artifactkit.pull(artifactkit.open_store(uri), "ds", tmp_path / "out", cache=False)  # the rest still reads
    report = artifactkit.verify(artifactkit.open_store(uri))
    assert report.problems == [f"{uri}/{index_key(digest_bytes(bomb))}: not a pack index"]


def test_an_index_whose_pack_is_gone_is_named_its_blobs_sent_again_and_gc_removes_it(s3, tmp_path):
    """What two gcs at once, or a pack deleted by hand, can leave: an index naming no pack."""
    uri, client, bucket = s3
    data = folder(tmp_path / "ds", {"a": b"a" * 10, "b": b"b" * 10})
    artifactkit.open_store(uri).log_folder(data)
    [pack], [index] = keys(client, bucket, "packs"), keys(client, bucket, "index")
    client.delete_object(Bucket=bucket, Key=f"p/{pack}")
    report = artifactkit.verify(artifactkit.open_store(uri))  # reported, not a crash
    assert report.problems[0] == f"{uri}/{index}: names {pack}, which is not in the store"
    assert len(report.problems) == 3  # and the two files of ds:v0, named missing
    (data / "c").write_bytes(b"c")  # (the same two blobs alone would make the very same pack again)
    assert artifactkit.open_store(uri).log_folder(data, full=True).uploaded_files == 3  # not trusted
    assert artifactkit.gc(artifactkit.open_store(uri)).deleted_packs == 0
    assert index in keys(client, bucket, "index")  # recent: kept through the grace period
    artifactkit.gc(artifactkit.open_store(uri), grace_seconds=0)
    assert index not in keys(client, bucket, "index")
    assert artifactkit.verify(artifactkit.open_store(uri)).ok


def test_pack_false_leaves_the_store_at_format_3(s3, tmp_path):
    uri, client, bucket = s3
    artifactkit.open_store(uri, {"pack": "false"}).log_folder(folder(tmp_path / "ds", {"a": b"a"}))
    assert json.loads(get(client, bucket, FORMAT_KEY)) == {"format": 3}


def test_a_blob_both_loose_and_packed_counts_once_and_gc_removes_both(s3, tmp_path):
    from artifactkit.layout import object_key

    uri, client, bucket = s3
    store = artifactkit.open_store(uri)
    store.log_folder(folder(tmp_path / "ds", {"a": b"twice", "b": b"once"}))
    store.backend.inner.write(object_key(digest_bytes(b"twice")), b"twice")  # as a pack=false writer would
    assert artifactkit.verify(artifactkit.open_store(uri)).summary()["objects"] == 2
    delete_versions(store, "ds", [0])
    report = artifactkit.gc(artifactkit.open_store(uri), grace_seconds=0)
    assert (report.deleted_objects, report.deleted_bytes, report.deleted_packs) == (2, 9, 1)
    assert (keys(client, bucket, "objects"), keys(client, bucket, "packs")) == ([], [])


def test_a_subset_of_a_pack_is_read_without_the_files_between():
    from artifactkit.packs import _runs

    big, small = 200_000, 100
    layout, offset = [], 0
    for i in range(30):  # .bin of 200 kB and .json of 100 B, interleaved, as a dataset has them
        layout.append((f"{i}.bin", offset, big))
        layout.append((f"{i}.json", offset + big, small))
        offset += big + small
    runs = _runs([w for w in layout if w[0].endswith(".json")])
    assert sum(max(o + n for _, o, n in r) - r[0][1] for r in runs) == 30 * small  # no .bin byte read
    whole = _runs(layout)
    assert len(whole) == 1  # everything wanted: one range


def test_gc_repacks_a_mostly_dead_pack_and_keeps_a_mostly_live_one(s3, tmp_path):
    uri, client, bucket = s3
    store = artifactkit.open_store(uri)
    data = folder(tmp_path / "ds", {f"f{i}": os.urandom(200_000) for i in range(10)})
    store.log_folder(data)  # v0: one pack of 2 MB
    [first] = keys(client, bucket, "packs")
    for i in range(8):
        (data / f"f{i}").write_bytes(os.urandom(200_000))
    store.log_folder(data)  # v1 keeps 2 of v0's 10 files
    delete_versions(store, "ds", [0])
    report = artifactkit.gc(artifactkit.open_store(uri), grace_seconds=0)
    assert (report.deleted_objects, report.deleted_packs) == (8, 1)
    packs = keys(client, bucket, "packs")
    assert first not in packs and len(packs) == 2  # v1's own pack, and f8, f9 packed anew
    stored = sum(client.head_object(Bucket=bucket, Key=f"p/{k}")["ContentLength"] for k in packs)
    assert stored == 10 * 200_000  # v1's bytes, nothing dead
    fresh = artifactkit.open_store(uri)
    assert artifactkit.verify(fresh).ok
    artifactkit.pull(fresh, "ds:v1", tmp_path / "out", cache=False)
    assert all((tmp_path / "out" / f"f{i}").read_bytes() == (data / f"f{i}").read_bytes() for i in range(10))
    assert artifactkit.gc(fresh, grace_seconds=0).deleted_packs == 0  # both mostly live: kept


def test_a_mostly_dead_pack_with_a_damaged_blob_is_left_for_verify_not_copied_again(s3, tmp_path):
    uri, client, bucket = s3
    store = artifactkit.open_store(uri)
    files = {f"f{i}": os.urandom(200_000) for i in range(10)}
    data = folder(tmp_path / "ds", files)
    store.log_folder(data)
    [first] = keys(client, bucket, "packs")
    for i in range(8):
        (data / f"f{i}").write_bytes(os.urandom(200_000))
    store.log_folder(data)
    delete_versions(store, "ds", [0])
    damaged = bytearray(get(client, bucket, first))
    damaged[damaged.index(files["f9"][:64]) + 10] ^= 1
    put(client, bucket, first, bytes(damaged))
    for _ in range(2):
        assert artifactkit.gc(artifactkit.open_store(uri), grace_seconds=0).deleted_packs == 0
        assert len(keys(client, bucket, "packs")) == 2 and len(keys(client, bucket, "index")) == 2
    problems = artifactkit.verify(artifactkit.open_store(uri)).problems
    assert (
        problems[0]
        == f"objects/{digest_bytes(files['f9'])[:2]}/{digest_bytes(files['f9'])[2:]}: corrupt blob (content does not "
        f"match its digest)"
    )


def _packed_memory_store(name: str, indexes: list[list[list]]):
    """A PackedBackend over memory://name holding these indexes ([[digest, offset, length], …])
    with their packs (zero bytes of the size they state)."""
    from artifactkit.backends.fs import FsspecBackend
    from artifactkit.packs import PackedBackend

    inner = FsspecBackend(f"memory://{name}")
    for rows in indexes:
        pack = os.urandom(16).hex()
        size = max(o + n for _, o, n in rows)
        inner.write(pack_key(pack), bytes(size))
        data = json.dumps({"pack": pack, "size": size, "blobs": rows}).encode()
        inner.write(index_key(digest_bytes(data)), data)
    return PackedBackend(inner)


def test_the_index_map_holds_under_64_bytes_a_blob(monkeypatch):
    """The map of packed blobs (what every S3 command makes first) holds each blob's location in
    compact arrays: under 64 bytes a blob (it held ~300 as tuples of objects); every blob is
    found where its index says, each once, and an unknown one is not."""
    import gc
    import tracemalloc

    from artifactkit.layout import object_key

    monkeypatch.setenv("ARTIFACTKIT_CACHE_DIR", "off")
    digests = [os.urandom(16).hex() for _ in range(20_000)]
    rows = [[d, 1000 * i, 1000] for i, d in enumerate(digests)]
    backend = _packed_memory_store("map-a", [rows[:12_000], rows[12_000:]])
    gc.collect()
    tracemalloc.start()
    try:
        backend.index.refresh(force=True)
        gc.collect()
        held = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert held / len(digests) < 64, held / len(digests)
    keys = [object_key(d) for d in digests]
    assert backend.inner.exists(keys) == set() and backend.exists(keys) == set(keys)
    assert backend.exists([object_key("f" * 32)]) == set()
    assert [backend.index.locate(keys[i])[1:] for i in (0, 12_345)] == [(0, 1000), (12_345_000, 1000)]
    assert sorted(d.hex() for d, _ in backend.index.where.items()) == sorted(digests)
    assert len(backend.index.where) == len(digests)
    assert sorted(o.key for o in backend.list("objects/")) == sorted(keys)


def test_the_index_map_keeps_the_newest_copy_of_a_blob_in_two_indexes():
    """A blob in two indexes (a repack's new pack beside the old) is found in the newer one,
    whichever was added first, also after the table grows."""
    from artifactkit.pack_index import _BlobMap, _Index

    shared = os.urandom(16)
    others = [os.urandom(16) for _ in range(3000)]  # enough to grow the table while adding
    old = _Index("a" * 32, "b" * 32, 10_000, [(shared, 0, 5)], None, mtime=100.0)
    new = _Index("c" * 32, "d" * 32, 10_000, [(d, 1, 1) for d in others] + [(shared, 7, 5)], None, mtime=200.0)
    for order in ([old], [new]), ([new], [old]), ([old, new],):
        where = _BlobMap()
        for part in order:
            where.add(part)
        assert where.get(shared) == (new, 7, 5) and len(where) == 3001
        assert where.get(others[1234]) == (new, 1, 1) and where.get(os.urandom(16)) is None
