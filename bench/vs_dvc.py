"""artifactkit log-dataset beside DVC's `dvc add` and W&B offline on the same folders, in one run (issue 32).

    python bench/vs_dvc.py --dvc /tmp/dvcenv/bin/dvc [--dataset images|tiny] [--images 2000] [--files 200000]
                           [--per-folder 2000] [--repeat 3] [--work DIR] [--checkout PATH] [--skip-wandb]

--dataset images: log_dataset.py's 2000-image set (4,001 files, ~194 MB); tiny: million.py's 1 kB
files in folders of --per-folder. Each round runs, interleaved so load hits every row alike: the
floor (`cp -r` + `sync`, and `python -c "import typer, pydantic"`), then for artifactkit and dvc
each: the first log / add (v0, synced: artifactkit makes its store durable with syncfs, dvc is
followed by `sync`), an unchanged re-log / re-add, and one after editing 2 files (v1). W&B offline
(the real SDK: Artifact.add_dir + log_artifact, v0 then v1) with --dataset images unless
--skip-wandb. DVC runs from its own venv (--dvc, never the system Python's packages): each round a
fresh git + `dvc init` repo holding a copy of the folder (dvc adds what is inside its repo), its
cache on the same filesystem. Prints the median of the rounds and each row's ratio to the floor.
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

import log_dataset  # bench/ is the script's folder: the datasets, edits and the W&B script of the other benches
import million


def timed(cmd: list[str], env: dict | None = None, cwd: str | Path = "/") -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, cwd=cwd)
    return time.perf_counter() - start


def edit_two(data: Path, kind: str, salt: int) -> None:
    if kind == "images":
        log_dataset.change_two_images(data, salt)
    else:
        for name in ("0000003.bin", "0000007.bin"):
            (data / "d0000" / name).write_bytes(os.urandom(1000))
    time.sleep(2.1)  # past the stat cache's racy window, as any real edit is by the next log


def floor(data: Path, work: Path) -> float:
    subprocess.run(["sync"], check=True)
    seconds = timed(["sh", "-c", f"cp -r '{data}' '{work / 'cp'}' && sync"])
    shutil.rmtree(work / "cp")
    return seconds


def artifactkit_rows(data: Path, work: Path, kind: str, checkout: str, rnd: int) -> dict[str, float]:
    env = {
        **{k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"},  # bytecode, as installed
        "ARTIFACTKIT_CACHE_DIR": str(work / "ak-cache"),
        "PYTHONPATH": checkout,
    }
    cmd = [sys.executable, "-m", "artifactkit", "log-dataset", str(data), "--name", "d", "--store", str(work / "ak")]
    subprocess.run(["sync"], check=True)
    out = {"v0": timed(cmd, env), "unchanged": timed(cmd, env)}
    edit_two(data, kind, 300 + rnd)
    out["v1"] = timed(cmd, env)
    shutil.rmtree(work / "ak"), shutil.rmtree(work / "ak-cache")
    return out


def dvc_rows(dvc: str, data: Path, work: Path, kind: str, rnd: int) -> dict[str, float]:
    repo = work / "dvc"
    repo.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    subprocess.run([dvc, "init", "-q"], cwd=repo, check=True)
    subprocess.run(["cp", "-r", str(data), str(repo / "d")], check=True)  # dvc adds what is inside its repo
    add = [dvc, "add", "-q", "d"]
    subprocess.run(["sync"], check=True)
    out = {"v0": timed(["sh", "-c", f"'{dvc}' add -q d && sync"], cwd=repo), "unchanged": timed(add, cwd=repo)}
    edit_two(repo / "d", kind, 400 + rnd)
    out["v1"] = timed(add, cwd=repo)
    shutil.rmtree(repo)
    return out


def wandb_rows(data: Path, work: Path, rnd: int) -> dict[str, float]:
    rows = log_dataset.bench_wandb(data, work, rnd)
    shutil.rmtree(work / f"wandb{rnd}")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument(
        "--dvc", required=True, help="the dvc executable of a separate venv (python -m venv; pip install dvc)"
    )
    ap.add_argument("--dataset", choices=["images", "tiny"], default="images")
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--files", type=int, default=200_000)
    ap.add_argument("--per-folder", type=int, default=2000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--work", help="folder for the datasets, stores and repos (default: a temp folder)")
    ap.add_argument("--checkout", default=str(Path(__file__).resolve().parent.parent))
    ap.add_argument("--skip-wandb", action="store_true")
    args = ap.parse_args()
    version = subprocess.run([args.dvc, "--version"], capture_output=True, text=True, check=True).stdout.strip()
    work = Path(tempfile.mkdtemp(prefix="ak-vs-dvc-", dir=args.work))
    try:
        data = work / "data"
        if args.dataset == "images":
            log_dataset.make_dataset(data, args.images)
        else:
            million.make_dataset(data, args.files, args.per_folder)
        files = sum(len(f) for _, _, f in os.walk(data))
        size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(data) for f in fs)
        imports = min(timed([sys.executable, "-c", "import typer, pydantic"]) for _ in range(5))
        rounds: dict[str, list] = {"floor": [], "artifactkit": [], "dvc": [], "wandb": []}
        load = [os.getloadavg()[0]]
        for rnd in range(args.repeat):
            rounds["floor"].append({"cp -r + sync": floor(data, work)})
            rounds["artifactkit"].append(artifactkit_rows(data, work, args.dataset, args.checkout, rnd))
            rounds["dvc"].append(dvc_rows(args.dvc, data, work, args.dataset, rnd))
            if args.dataset == "images" and not args.skip_wandb:
                rounds["wandb"].append(wandb_rows(data, work, rnd))
            load.append(os.getloadavg()[0])
    finally:
        shutil.rmtree(work, ignore_errors=True)
    med = {k: {f: statistics.median(r[f] for r in rs) for f in rs[0]} for k, rs in rounds.items() if rs}
    cp = med["floor"]["cp -r + sync"]
    print(
        f"{files} files, {size / 1e6:.0f} MB ({args.dataset}) under {args.work or tempfile.gettempdir()}; "
        f"median of {args.repeat} interleaved rounds; load average {min(load):.1f}-{max(load):.1f}; {version}"
    )
    print(f"floor: cp -r + sync {cp:.2f} s; import typer, pydantic {imports:.3f} s")
    ak = med["artifactkit"]
    for tool, rows in med.items():
        if tool == "floor":
            continue
        cells = "   ".join(
            f"{row} {s:7.2f} s (x{s / cp:.2f} of cp, x{s / ak[row]:.2f} of artifactkit's)" for row, s in rows.items()
        )
        print(f"{tool:12s} {cells}")
    print(
        json.dumps(
            {"files": files, "bytes": size, "dvc_version": version, "load": load, "import_floor_s": imports, **med}
        )
    )


if __name__ == "__main__":
    main()
