"""Logging a 2000-image dataset: artifactkit vs plain reads, W&B offline and DVC, in one run.

    python bench/log_dataset.py [--images 2000] [--repeat 3] [--checkout PATH ...] [--skip-wandb]

Prints the median of --repeat runs (warm page cache) for: reading every file, reading + xxh3-128,
`cp -r` + `sync` (the floor of any log into a local store), `artifactkit log-dataset` as a whole
command (v0, v1 after changing 2 images, unchanged re-log) run as `python -m artifactkit` from each
--checkout (default: this one; several compare before/after in one run), the real wandb SDK offline
(Artifact.add_dir + log_artifact, v0 and v1), and `dvc add` if installed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import xxhash

WANDB_SCRIPT = """
import sys, wandb
run = wandb.init(project="bench", mode="offline", dir=sys.argv[2])
art = wandb.Artifact("chess", type="dataset")
art.add_dir(sys.argv[1])
run.log_artifact(art)
run.finish()
"""


def make_dataset(root: Path, n: int) -> None:
    rng = __import__("random").Random(0)
    for split, count in (("train", n * 8 // 10), ("val", n - n * 8 // 10)):
        (root / "images" / split).mkdir(parents=True)
        (root / "labels" / split).mkdir(parents=True)
        for i in range(count):
            (root / "images" / split / f"{i:05d}.jpg").write_bytes(rng.randbytes(rng.randint(90_000, 104_000)))
            (root / "labels" / split / f"{i:05d}.txt").write_text("0 0.5 0.5 0.1 0.1\n3 0.2 0.3 0.05 0.07\n")
    (root / "data.yaml").write_text("path: .\ntrain: images/train\nval: images/val\nnames: [a, b, c, d]\n")
    past = time.time() - 3600  # a dataset that has existed for a while, as users have them
    for p in root.rglob("*"):
        os.utime(p, (past, past))


def change_two_images(root: Path, salt: int) -> None:
    for i in (3, 7):
        p = root / "images" / "train" / f"{i:05d}.jpg"
        p.write_bytes(xxhash.xxh3_128_digest(f"{salt}-{i}".encode()) * 6000)


def timed(cmd: list[str], env: dict | None = None) -> float:
    start = time.perf_counter()
    # cwd: a neutral folder (`python -m` puts the cwd before PYTHONPATH)
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, cwd="/")
    return time.perf_counter() - start


def copy_and_sync(data: Path, work: Path, rep: int) -> float:
    """`cp -r` + `sync`: the floor of writing a folder durably into another folder."""
    subprocess.run(["sync"], check=True)  # start with writeback flushed, as every log run does
    return timed(["sh", "-c", f"cp -r '{data}' '{work / f'cp{rep}'}' && sync"])


def read_all(root: Path, do_hash: bool) -> float:
    start = time.perf_counter()
    for dirpath, _, files in os.walk(root):
        for f in files:
            with open(os.path.join(dirpath, f), "rb") as fh:
                data = fh.read()
            if do_hash:
                xxhash.xxh3_128_hexdigest(data)
    return time.perf_counter() - start


def bench_artifactkit(data: Path, work: Path, rep: int, checkout: str, tag: int) -> dict[str, float]:
    env = {
        **{k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"},  # bytecode, as installed
        "ARTIFACTKIT_CACHE_DIR": str(work / f"cache{rep}-{tag}"),
        "PYTHONPATH": checkout,
    }
    cmd = [
        sys.executable,
        "-m",
        "artifactkit",
        "log-dataset",
        str(data),
        "--store",
        str(work / f"ak{rep}-{tag}"),
        "--json",
    ]
    subprocess.run(["sync"], check=True)
    out = {"v0": timed(cmd, env)}
    change_two_images(data, rep)
    out["v1"] = timed(cmd, env)
    out["unchanged"] = timed(cmd, env)
    change_two_images(data, 1000 + rep)  # each checkout starts from the same kind of edit
    return out


def bench_wandb(data: Path, work: Path, rep: int) -> dict[str, float]:
    script = work / "wb.py"
    script.write_text(WANDB_SCRIPT)
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    wdir = work / f"wandb{rep}"
    wdir.mkdir()
    out = {"v0": timed([sys.executable, str(script), str(data), str(wdir)], env)}
    change_two_images(data, 100 + rep)
    out["v1"] = timed([sys.executable, str(script), str(data), str(wdir)], env)
    return out


def bench_dvc(data: Path, work: Path, rep: int) -> dict[str, float] | None:
    dvc = shutil.which("dvc")
    if not dvc:
        return None
    repo = work / f"dvc{rep}"
    repo.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    subprocess.run([dvc, "init", "-q"], cwd=repo, check=True)
    target = repo / "chess"
    shutil.copytree(data, target)
    run = lambda: timed([dvc, "add", "-q", str(target)])  # noqa: E731
    out = {"v0": 0.0}
    start = time.perf_counter()
    subprocess.run([dvc, "add", "-q", "chess"], cwd=repo, check=True, stdout=subprocess.DEVNULL)
    out["v0"] = time.perf_counter() - start
    change_two_images(target, 200 + rep)
    out["v1"] = run()
    out["unchanged"] = run()
    return out


def median_of(runs: list[dict[str, float]]) -> dict[str, float]:
    return {k: statistics.median(r[k] for r in runs) for k in runs[0]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--skip-wandb", action="store_true")
    ap.add_argument("--checkout", action="append", help="source checkout to run (repeatable; default: this one)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        data = work / "chess"
        make_dataset(data, args.images)
        files = sum(len(f) for _, _, f in os.walk(data))
        size = sum(p.stat().st_size for p in data.rglob("*") if p.is_file())
        print(f"dataset: {files} files, {size / 1e6:.0f} MB")
        read_all(data, False)  # warm the page cache
        results = {
            "read": statistics.median(read_all(data, False) for _ in range(args.repeat)),
            "read+xxh3": statistics.median(read_all(data, True) for _ in range(args.repeat)),
        }
        results["cp -r + sync"] = statistics.median(copy_and_sync(data, work, r) for r in range(args.repeat))
        # the start-up floor (issue 32): typer and pydantic stay, so their import is part of any log
        results["import typer, pydantic"] = min(
            timed([sys.executable, "-c", "import typer, pydantic"], None) for _ in range(5)
        )
        checkouts = args.checkout or [str(Path(__file__).resolve().parent.parent)]
        runs: dict[str, list] = {c: [] for c in checkouts}
        for r in range(args.repeat):  # interleaved, so a busy moment of the machine hits each alike
            for tag, c in enumerate(checkouts):
                runs[c].append(bench_artifactkit(data, work, r, c, tag))
        aks = {c: median_of(rs) for c, rs in runs.items()}
        ak = aks[checkouts[-1]]
        wb = None if args.skip_wandb else median_of([bench_wandb(data, work, r) for r in range(args.repeat)])
        dvc_runs = [bench_dvc(data, work, r) for r in range(args.repeat)]
        dvc = median_of(dvc_runs) if dvc_runs[0] else None
    print(f"plain read of every file        {results['read']:.3f} s")
    print(f"read + xxh3-128 of every file   {results['read+xxh3']:.3f} s")
    print(f"cp -r + sync                    {results['cp -r + sync']:.3f} s")
    print(f"import typer, pydantic          {results['import typer, pydantic']:.3f} s")
    floor = results["cp -r + sync"] + results["import typer, pydantic"]
    for c, a in aks.items():
        print(f"artifactkit {c}")
        cp_ratio = a["v0"] / results["cp -r + sync"]
        print(
            f"  log-dataset v0                {a['v0']:.3f} s   x{cp_ratio:.2f} of cp -r + sync, "
            f"x{a['v0'] / floor:.2f} of it + the import floor"
        )
        print(f"  v1 (2 images)                 {a['v1']:.3f} s")
        print(f"  unchanged re-log              {a['unchanged']:.3f} s")
    if wb:
        print(
            f"wandb offline v0 / v1           {wb['v0']:.3f} s / {wb['v1']:.3f} s   -> v0 speed-up "
            f"x{wb['v0'] / ak['v0']:.1f}"
        )
    if dvc:
        print(
            f"dvc add v0 / v1 / unchanged     {dvc['v0']:.3f} / {dvc['v1']:.3f} / {dvc['unchanged']:.3f} s"
            f"   -> v0 speed-up x{dvc['v0'] / ak['v0']:.1f}"
        )
    else:
        print("dvc add                         (dvc not installed: pip install dvc to compare)")
    print(json.dumps({"artifactkit": aks, "wandb": wb, "dvc": dvc, **results}))


if __name__ == "__main__":
    main()
