"""Retention while training (train/resume keep_last) on a real tiny run, and the blob cache's cap
with least-recently-used eviction (issue 17)."""

from __future__ import annotations

import os

import pytest
from test_store import make_folder
from tiny_run import train_tiny

import artifactkit
from artifactkit.cache import BlobCache, default_blob_cache
from artifactkit.errors import InvalidInput
from artifactkit.hashing import digest_bytes
from artifactkit.maintenance import gc
from artifactkit.transfer import pull


def disk_bytes(root) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def test_keep_last_during_a_real_run_and_on_resume(tmp_path):
    torch = pytest.importorskip("torch")
    from artifactkit.detector.chess import generate

    data = generate(tmp_path / "chess", n_train=8, n_val=4, n_heldout=2, imgsz=64).parent
    store_dir = tmp_path / "store"
    events = []
    threads = torch.get_num_threads()
    try:
        run = train_tiny(
            store_dir, data, run_id="r", epochs=3, save_period=1, keep_last=1, report=lambda e, d: events.append((e, d))
        )
        store = artifactkit.open_store(str(store_dir))
        kept = {2, store.aliases("r-model")["best"]}  # the newest, and best
        assert store.version_numbers("r-model") == sorted(kept)
        pruned = [v for e, d in events if e == "checkpoint" for v in d["pruned"]]
        assert sorted(pruned) == [f"v{n}" for n in range(3) if n not in kept]
        before = disk_bytes(store_dir)
        freed = gc(store, grace_seconds=0)
        assert freed.deleted_bytes > 0 and disk_bytes(store_dir) < before
        # resume keeps the run's retention (it is in the saved config); keep_last may also be given
        artifactkit.resume(f"{store_dir}/runs/{run.run_id}", epochs=4)
    finally:
        torch.set_num_threads(threads)
    assert store.version_numbers("r-model") == sorted({3, store.aliases("r-model")["best"]})
    assert artifactkit.checkpoint.load(store, "r-model:latest")["epoch"] == 4


def test_cache_evicts_least_recently_used_over_its_cap(tmp_path):
    cache = BlobCache(tmp_path / "cache", max_bytes=5000)
    blobs = {name: os.urandom(2000) for name in "abc"}
    digest = {name: digest_bytes(b) for name, b in blobs.items()}
    cache.put_many({digest["a"]: blobs["a"]})
    cache.put_many({digest["b"]: blobs["b"]})
    old = cache.store.local_blob_path(digest["a"]).stat().st_mtime - 100
    for name in "ab":  # both written long ago, b after a
        os.utime(cache.store.local_blob_path(digest[name]), (old + (name == "b"), old + (name == "b")))
    assert cache.get_many([digest["a"]]) == {digest["a"]: blobs["a"]}  # a hit: a is now the most recent
    cache.put_many({digest["c"]: blobs["c"]})  # 6000 > 5000: the least recently used goes
    held = cache.get_many(digest.values())
    assert set(held) == {digest["a"], digest["c"]} and cache.size() <= 5000


def test_cache_cap_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("ARTIFACTKIT_CACHE_MAX_BYTES", "12345")
    assert default_blob_cache().max_bytes == 12345
    monkeypatch.setenv("ARTIFACTKIT_CACHE_MAX_BYTES", "5GB")
    with pytest.raises(InvalidInput, match=r"ARTIFACTKIT_CACHE_MAX_BYTES: expected a number of bytes"):
        default_blob_cache()
    monkeypatch.delenv("ARTIFACTKIT_CACHE_MAX_BYTES")
    assert default_blob_cache().max_bytes == 5_000_000_000


def test_pulls_from_s3_keep_the_cache_under_its_cap(tmp_path, s3_bucket, monkeypatch):
    monkeypatch.setenv("ARTIFACTKIT_CACHE_MAX_BYTES", "30000")
    store = artifactkit.open_store(s3_bucket)
    data = make_folder(tmp_path / "d", n=20, size=4000)  # 80 kB of images
    store.log_folder(data, name="d")
    result = pull(store, "d", tmp_path / "out")
    assert result.downloaded_files == 40
    cache = default_blob_cache()
    assert 0 < cache.size() <= 30000
    again = pull(store, "d", tmp_path / "out2")  # what the cache kept is served from it
    assert again.downloaded_files < 40
