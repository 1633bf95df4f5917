"""S3 transfer benchmark: artifactkit vs plain s3fs against a local moto server, in one run.

    python bench/s3_transfer.py [--images 2000] [--image-kb 97]
    python bench/s3_transfer.py --images 50000 --image-kb 1     # 100,000 small files (issue 18)
    python bench/s3_transfer.py --images 50000 --image-kb 1 --packed-only   # artifactkit's default alone (~1 min)

1. Generates a YOLO-layout dataset (images/ of random bytes, labels/ of txt, data.yaml).
2. Upload: plain `s3fs.put(folder, recursive=True)` vs `artifactkit log-dataset` (the CLI in a
   subprocess, as a user runs it: start-up, hashing and existence checks included; cold stat
   cache), once with small blobs in packs (the default) and once with `-o pack=false` (one object
   per blob, as before packs), each into a store of its own.
3. Download: plain `s3fs.get(recursive=True)` vs `artifactkit pull` of each (CLI; every blob
   verified against its digest; the default blob cache on, which writes each blob twice here).
4. A v1 that changes 2 files: `artifactkit log-dataset` again; counts the requests it sends, by
   method, from the moto server's request log.

moto runs in its own process so that it does not share the GIL with the clients; both compete for
the same CPU cores, so the absolute figures measure moto as much as anything: read the ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from pathlib import Path


def make_dataset(root: Path, images: int, image_kb: int) -> int:
    rng = random.Random(0)
    for sub in ("images/train", "labels/train"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    (root / "data.yaml").write_text("path: .\ntrain: images/train\nval: images/train\nnames: [piece]\n")
    total = 0
    for i in range(images):
        size = image_kb * 1000 + rng.randrange(-min(2000, image_kb * 500), min(2000, image_kb * 500) + 1)
        (root / "images/train" / f"{i:05d}.jpg").write_bytes(rng.randbytes(size))
        label = "".join(f"{rng.randrange(12)} {rng.random():.6f} {rng.random():.6f} 0.05 0.05\n" for _ in range(8))
        (root / "labels/train" / f"{i:05d}.txt").write_text(label)
        total += size + len(label)
    return total


def start_moto(log: Path) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=open(log, "w"),
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            urllib.request.urlopen(url + "/moto-api/")
            return proc, url
        except OSError:
            time.sleep(0.1)
    raise SystemExit("moto server did not start")


def requests_since(log: Path, offset: int) -> tuple[Counter, list[str], int]:
    text = log.read_text()
    lines = re.findall(r'"(GET|PUT|HEAD|POST|DELETE) (\S+) HTTP/1\.1" (\d+)', text[offset:])
    return Counter(m for m, _, _ in lines), [f"{m} {p} {c}" for m, p, c in lines if m == "PUT"], len(text)


def cli(*args: str, env: dict) -> dict:
    out = subprocess.run(
        [sys.executable, "-m", "artifactkit", *args, "--json"], capture_output=True, text=True, env=env
    )
    if out.returncode:
        raise SystemExit(f"artifactkit {' '.join(args)} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--image-kb", type=int, default=97)
    ap.add_argument("--packed-only", action="store_true", help="time only artifactkit's default (packs), no baselines")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ak-s3bench-"))
    try:
        run(work, args.images, args.image_kb, args.packed_only)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run(work: Path, images: int, image_kb: int, packed_only: bool = False) -> None:
    data = work / "chess"
    nbytes = make_dataset(data, images, image_kb)
    nfiles = 2 * images + 1
    log = work / "moto.log"
    moto, url = start_moto(log)
    env = {
        **os.environ,
        "AWS_ENDPOINT_URL": url,
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_DEFAULT_REGION": "us-east-1",
        "ARTIFACTKIT_CACHE_DIR": str(work / "cache"),
    }
    os.environ.update(
        {k: env[k] for k in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")}
    )
    try:
        import boto3
        import s3fs

        boto3.client("s3").create_bucket(Bucket="bench")
        # The same client settings artifactkit uses (64 connections), so the baseline is not handicapped.
        fs = s3fs.S3FileSystem(skip_instance_cache=True, config_kwargs={"max_pool_connections": 64})
        mb = nbytes / 1e6
        print(f"dataset: {nfiles} files, {mb:.1f} MB; moto {url}; {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}")

        if packed_only:
            t_up = timed(lambda: cli("log-dataset", str(data), "--store", "s3://bench/ak", env=env))
            t_down = timed(lambda: cli("pull", "chess:v0", str(work / "ak-out"), "--store", "s3://bench/ak", env=env))
            assert sum(1 for p in (work / "ak-out").rglob("*") if p.is_file()) == nfiles
            print(
                f"packed: upload {t_up:.1f}s = {nfiles / t_up:.0f} files/s, download {t_down:.1f}s = "
                f"{nfiles / t_down:.0f} files/s; {len(fs.find('bench/ak/'))} objects in the bucket"
            )
            return
        loose = ("--store", "s3://bench/loose", "-o", "pack=false")
        t_plain_up = timed(lambda: fs.put(str(data) + "/", "bench/plain/", recursive=True))
        t_loose_up = timed(lambda: cli("log-dataset", str(data), *loose, env=env))
        t_ak_up = timed(lambda: cli("log-dataset", str(data), "--store", "s3://bench/ak", env=env))
        t_plain_down = timed(lambda: fs.get("bench/plain/", str(work / "plain-out") + "/", recursive=True))
        t_loose_down = timed(
            lambda: cli(
                "pull",
                "chess:v0",
                str(work / "loose-out"),
                *loose,
                env={**env, "ARTIFACTKIT_CACHE_DIR": str(work / "cache-loose")},
            )
        )
        t_ak_down = timed(lambda: cli("pull", "chess:v0", str(work / "ak-out"), "--store", "s3://bench/ak", env=env))
        for out in ("ak-out", "loose-out"):
            assert sum(1 for p in (work / out).rglob("*") if p.is_file()) == nfiles
        print(
            f"objects in the bucket: packed store {len(fs.find('bench/ak/'))}, pack=false "
            f"{len(fs.find('bench/loose/'))}"
        )
        report("upload, pack=false", mb, nfiles, t_plain_up, t_loose_up)
        report("upload, packed", mb, nfiles, t_plain_up, t_ak_up)
        report("download, pack=false", mb, nfiles, t_plain_down, t_loose_down)
        report("download, packed", mb, nfiles, t_plain_down, t_ak_down)
        print(f"packed / pack=false: upload x{t_loose_up / t_ak_up:.1f}, download x{t_loose_down / t_ak_down:.1f}")
        packing_ceiling(fs, data, nfiles, t_ak_up)

        existence_checks()

        (data / "images/train/00007.jpg").write_bytes(random.Random(1).randbytes(image_kb * 1000))
        (data / "labels/train/00007.txt").write_text("3 0.5 0.5 0.1 0.1\n")
        offset = len(log.read_text())
        v1 = cli("log-dataset", str(data), "--store", "s3://bench/ak", env=env)
        counts, puts, _ = requests_since(log, offset)
        print(f"v1 with 2 changed files: uploaded_files={v1['uploaded_files']}; requests {dict(counts)}")
        for line in puts:
            print(f"  {line}")
        print(f"load average at the end: {os.getloadavg()[0]:.1f} (other work on this machine shares the cores)")
    finally:
        moto.terminate()
        moto.wait()


def existence_checks() -> None:
    """The two ways S3Backend.exists can answer for loose blobs (pack=false), for every blob of v0
    and for a v1's 2 new blobs."""
    import artifactkit
    from artifactkit.layout import object_key

    store = artifactkit.open_store("s3://bench/loose")
    keys = sorted({object_key(e.digest) for e in store.entries(store.record("chess", 0))})

    def fresh():  # a backend with no listing snapshot yet, its client already connected
        backend = artifactkit.open_store("s3://bench/loose").backend.inner
        backend.fs.connect()
        return backend

    b = fresh()
    t_heads = timed(lambda: b._head_many(keys))
    b = fresh()
    t_list = timed(lambda: b._snapshot("objects", len(keys)))
    b = fresh()
    t_two = timed(lambda: b._head_many(keys[:2]))
    print(
        f"exists({len(keys)} keys): concurrent HEADs {t_heads:.1f}s, one listing of objects/ {t_list:.1f}s; "
        f"exists(2 keys): HEADs {t_two * 1000:.0f} ms"
    )


def packing_ceiling(fs, data: Path, nfiles: int, t_ak_up: float) -> None:
    """What packing small blobs could win at most: the same bytes sent as objects of ~1,000 files
    each, one PUT per pack, from memory. A ceiling: no hashing, index or existence check."""
    files = sorted(p for p in data.rglob("*") if p.is_file())
    packs = [b"".join(p.read_bytes() for p in files[i : i + 1000]) for i in range(0, len(files), 1000)]
    t = timed(lambda: fs.pipe({f"bench/packs/{k:05d}": blob for k, blob in enumerate(packs)}))
    print(
        f"packing ceiling: {len(packs)} objects of ~1,000 files in {t:.1f}s = {nfiles / t:.0f} files/s "
        f"(artifactkit packed takes {t_ak_up / t:.1f}x as long, start-up and hashing included)"
    )


def report(what: str, mb: float, files: int, plain: float, ak: float) -> None:
    print(
        f"{what:20s} plain s3fs {plain:6.1f}s {mb / plain:6.1f} MB/s {files / plain:6.0f} files/s | "
        f"artifactkit CLI {ak:6.1f}s {mb / ak:6.1f} MB/s {files / ak:6.0f} files/s | ratio {plain / ak:.2f}x"
    )


if __name__ == "__main__":
    main()
