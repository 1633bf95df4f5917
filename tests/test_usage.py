"""Storage you can see (issue 30): `du` (own vs shared bytes, what gc frees now and when), `ls`
totals, gc and prune saying what happened and why, retention by time and count."""

from __future__ import annotations

import json
import os
from datetime import datetime, timedelta, timezone

import pytest
from clirunner import run_cli

import artifactkit
from artifactkit import lifecycle
from artifactkit.errors import InvalidInput
from artifactkit.maintenance import gc
from artifactkit.usage import artifact_bytes, du, pending


def two_versions(store, tmp_path):
    """d:v0 = a, b (3000 + 4000 bytes); d:v1 = a, c (3000 + 5000): a is shared."""
    folder = tmp_path / "d"
    folder.mkdir()
    a, b, c = os.urandom(3000), os.urandom(4000), os.urandom(5000)
    (folder / "a").write_bytes(a)
    (folder / "b").write_bytes(b)
    store.log_folder(folder, name="d")
    (folder / "b").unlink()
    (folder / "c").write_bytes(c)
    store.log_folder(folder, name="d")
    store.log_files({"a": a}, name="e")  # another artifact sharing a


def test_du_shows_own_and_shared_bytes_and_what_gc_frees_when(tmp_path):
    store = artifactkit.open_store(str(tmp_path / "s"))
    two_versions(store, tmp_path)
    u = du(store)
    d, e = u.artifacts
    assert (d.name, d.bytes, d.own) == ("d", 12000, 9000) and (e.name, e.bytes, e.own) == ("e", 3000, 0)
    assert [(v.version, v.bytes, v.own) for v in d.versions] == [("v0", 7000, 4000), ("v1", 8000, 5000)]
    assert u.blobs == 12000 and u.total > u.blobs  # records and trees too
    assert artifact_bytes(store, "d") == 12000
    lifecycle.delete_versions(store, "d", [0])
    p = pending(store, 3600)
    assert (p.now_bytes, p.later_bytes) == (0, 4000) and p.later_at is not None  # b: written just now
    when = datetime.fromisoformat(p.later_at)
    assert timedelta(minutes=59) < when - datetime.now(timezone.utc) <= timedelta(hours=1)
    kept = gc(store)
    assert kept.deleted_bytes == 0 and kept.kept_recent_bytes == 4000 and kept.kept_until == p.later_at
    assert pending(store, 0).now_bytes == 4000
    assert gc(store, grace_seconds=0).deleted_bytes == 4000 and du(store).blobs == 8000


def test_cli_du_ls_gc_and_prune_say_where_the_bytes_are(tmp_path):
    store = artifactkit.open_store(str(tmp_path / "s"))
    two_versions(store, tmp_path)
    at = ["--store", str(tmp_path / "s")]
    usage = json.loads(run_cli("du", *at, "--json").stdout.splitlines()[-1])
    assert usage["artifacts"][0]["versions"][1] == {"version": "v1", "bytes": 8000, "own": 5000}
    assert usage["gc"]["now_bytes"] == 0 and "stat_cache" in usage and "blob_cache" in usage
    text = run_cli("du", *at).stdout
    assert "own" in text and "shared" in text and "caches on this machine" in text
    rows = json.loads(run_cli("ls", *at, "--json").stdout.splitlines()[-1])["artifacts"]
    assert [(r["name"], r["bytes"], r["total_bytes"]) for r in rows] == [("d", 8000, 12000), ("e", 3000, 3000)]
    pruned = run_cli("prune", "d", "--keep-last", "1", *at)
    assert "deleted v0" in pruned.stdout and "4.0 kB more after" in pruned.stdout and "--grace 0" in pruned.stdout
    line = run_cli("gc", *at).stdout
    assert "kept 2 unreferenced files (4.0 kB) younger than the 1h grace until" in line and "--grace 0" in line
    assert "deleted 1 blobs (4.0 kB)" in run_cli("gc", "--grace", "0", *at).stdout


def at(day: int, hour: int = 12) -> str:
    return datetime(2026, 3, day, hour, tzinfo=timezone.utc).isoformat()


def test_retention_rules_are_a_union_as_restics_forget():
    # versions 0..9: two a day on March 2..6 (Mon..Fri of ISO week 10), the newest at 6th 18:00
    created = {n: at(2 + n // 2, 8 if n % 2 == 0 else 18) for n in range(10)}
    keep = lifecycle.Retention
    assert set(keep(last=2).keeps(created)) == {8, 9}
    assert set(keep(within="1d").keeps(created)) == {7, 8, 9}  # within 24 h of the newest (6th 18:00)
    assert set(keep(daily=3).keeps(created)) == {5, 7, 9}  # the newest of each of the 3 latest days
    created[10] = at(9)  # Monday of week 11
    assert set(keep(weekly=2).keeps(created)) == {9, 10}
    assert keep(last=1, daily=2).keeps(created) == {10: ["last 1", "daily"], 9: ["daily"]}
    created[3] = "yesterday"  # a time we cannot read is never a reason to delete
    assert keep(last=1).keeps(created) == {10: ["last 1"], 3: ["unknown time"]}
    for bad in (dict(within="7"), dict(within="0d"), dict(daily=0), dict(weekly=True)):
        with pytest.raises(InvalidInput, match="keep_"):
            keep(**bad)


def test_prune_by_time_dry_run_and_protected_versions(tmp_path):
    store = artifactkit.open_store(str(tmp_path / "s"))
    for n in range(4):
        store.log_files({"x": os.urandom(100)}, name="m", type="model", dedup_latest=False)
    store.set_alias("m", "best", 0)
    preview = lifecycle.prune(store, "m", keep_within="1h", keep_last=1, dry_run=True)
    assert preview.dry_run and preview.versions == [] and preview.kept == ["v0", "v1", "v2", "v3"]
    preview = lifecycle.prune(store, "m", keep_last=1, dry_run=True)
    assert preview.versions == ["v1", "v2"] and preview.reasons == {"v0": ["alias best"], "v3": ["last 1"]}
    assert store.version_numbers("m") == [0, 1, 2, 3]  # a dry run deletes nothing
    with pytest.raises(InvalidInput, match="give at least one of keep_last"):
        lifecycle.prune(store, "m")
    out = run_cli("prune", "m", "--keep-daily", "1", "--dry-run", "--store", str(tmp_path / "s"), "--json")
    assert json.loads(out.stdout.splitlines()[-1])["versions"] == ["v1", "v2"]
    assert store.version_numbers("m") == [0, 1, 2, 3]
    assert lifecycle.prune(store, "m", keep_weekly=1).versions == ["v1", "v2"]


def test_verify_sample_checks_sizes_and_names_the_repair_per_kind(tmp_path):
    from artifactkit.maintenance import parse_sample, verify

    root = tmp_path / "s"
    store = artifactkit.open_store(str(root))
    two_versions(store, tmp_path)
    store.log_files({"tensors/000000": os.urandom(6000)}, name="r-model", type="model")
    full = verify(store)
    assert full.ok and full.hashed == full.objects == 4 and full.hashed_bytes == 18000
    assert verify(store, sample="50%").hashed == 2 and verify(store, sample="1B").hashed == 1  # at least one
    assert verify(store, sample="9000B").hashed_bytes <= 9000
    for bad in ("0%", "5 parsecs", "101%"):
        with pytest.raises(InvalidInput, match="sample: expected a share such as 5%"):
            parse_sample(bad)
    assert parse_sample("2GB") == (None, 2_000_000_000) and parse_sample("5%") == (0.05, None)
    blob = lambda data: root / "objects" / data[:2] / data[2:]  # noqa: E731
    tensor = next(e for e in store.manifest(store.resolve("r-model")).entries)
    blob(tensor.digest).write_bytes(os.urandom(6000))  # rot of the same size: only a re-hash finds it
    c = next(e for e in store.manifest(store.resolve("d:v1")).entries if e.path == "c")
    blob(c.digest).write_bytes(b"short")  # a truncated blob: its size alone gives it away
    sampled = verify(store, sample="1B")  # hashes one blob at most: the size check still finds c
    assert any("holds 5 bytes, not 5000" in p for p in sampled.damage["d:v1"])
    report = verify(store)
    assert report.damage["r-model:v0"] == [
        f"tensors/000000 missing blob objects/{tensor.digest[:2]}/{tensor.digest[2:]} (corrupt; a checkpoint's tensor "
        "cannot be made again: push r-model:v0 from a store that holds it, or `rm r-model:v0`)"
    ]
    assert "log-dataset --full of a folder holding the file puts it back" in report.damage["d:v1"][0]
    out = run_cli("verify", "--sample", "100%", "--json", "--store", str(root), check=False)
    assert out.returncode == 1 and set(json.loads(out.stdout.splitlines()[-1])["damage"]) == {"d:v1", "r-model:v0"}
