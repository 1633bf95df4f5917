"""`pull` of many small files beside its floor, `cp -r` + `sync` of the same folder, in one run.

    python bench/pull.py [--files 200000] [--per-folder 1000] [--checkout PATH ...] [--rounds 3] [--work DIR]

Makes --files files of 1 kB in folders of --per-folder files, logs them once into a local store
(with the first checkout's code), then round after round runs the floor (`cp -r` of the folder
and `sync`) and `python -m artifactkit pull` of each --checkout (default: this one) into an
empty folder, interleaved (ABAB…, so load on a shared machine hits every row alike). Prints the
best seconds of each and its ratio to the floor. --work on tmpfs (/dev/shm) leaves the disk out
of it (the issue's figure: pull at 1M files on tmpfs).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from million import make_dataset  # bench/ is the script's folder: the same dataset as million.py


def timed(cmd: list[str], env: dict | None = None) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env=env, cwd="/")
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=200_000)
    ap.add_argument("--per-folder", type=int, default=1000)
    ap.add_argument("--checkout", action="append", help="a source checkout to run (repeatable; default: this one)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--work", help="folder for the dataset, store and copies (default: a temp folder)")
    args = ap.parse_args()
    checkouts = args.checkout or [str(Path(__file__).resolve().parent.parent)]
    work = Path(tempfile.mkdtemp(prefix="ak-pull-", dir=args.work))
    try:
        data, store, out = work / "data", work / "store", work / "out"
        make_dataset(data, args.files, args.per_folder)
        base_env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        envs = [{**base_env, "PYTHONPATH": c, "ARTIFACTKIT_CACHE_DIR": str(work / "cache")} for c in checkouts]
        ak = [sys.executable, "-m", "artifactkit"]
        subprocess.run(
            [*ak, "log-dataset", str(data), "--name", "m", "--store", str(store)],
            check=True,
            stdout=subprocess.DEVNULL,
            env=envs[0],
            cwd="/",
        )
        rows = [("floor: cp -r + sync", lambda: timed(["sh", "-c", f"cp -r '{data}' '{out}' && sync"]))]
        for checkout, env in zip(checkouts, envs):
            rows.append(
                (
                    f"pull ({checkout})",
                    lambda env=env: timed([*ak, "pull", "m:v0", str(out), "--store", str(store)], env),
                )
            )
        best = [float("inf")] * len(rows)
        for _ in range(args.rounds):
            for i, (_, run) in enumerate(rows):
                shutil.rmtree(out, ignore_errors=True)
                subprocess.run(["sync"], check=True)
                best[i] = min(best[i], run())
        shutil.rmtree(out, ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(
        f"{args.files} files of 1 kB in folders of {args.per_folder}, under {args.work or tempfile.gettempdir()}; "
        f"best of {args.rounds} interleaved rounds"
    )
    for (label, _), seconds in zip(rows, best):
        print(f"{label:60s} {seconds:7.2f} s  x{seconds / best[0]:.2f} of the floor")


if __name__ == "__main__":
    main()
