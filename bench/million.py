"""A million small files: what a log, a 2-file change, pull, verify and versions cost (issue 18).

    python bench/million.py [--files 1000000] [--per-folder 1000] [--checkout PATH] [--work DIR]

Makes --files files of 1 kB in folders of --per-folder files (d0000/, d0001/, …), then runs the
real CLI (`python -m artifactkit`, the --checkout's code first on PYTHONPATH, from a neutral cwd)
and prints: first log files/s, unchanged re-log seconds, v1 after editing 2 files (seconds and
the bytes of new metadata: everything written outside objects/), and the seconds and peak RSS of
each command (log, pull, re-pull, pull --include of one folder, diff, verify, versions), with
the floors measured in the same run beside the first log and pull (`cp -r` + `sync` of the
folder), the re-log (`find` statting every file, plus `python -c "import typer, pydantic"`) and
v1 (the new trees of the changed folders), with each ratio. Run it once per checkout to compare
before/after, or pass --compare CHECKOUT for the first log and re-log of both, interleaved in one
run. `--files 200000 --per-folder 2000` is the issue's 200k files in 100 folders.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PAST = time.time() - 3600  # a dataset that has existed for a while, as users have them


def make_dataset(root: Path, files: int, per_folder: int) -> None:
    payload = os.urandom(1000 + files)
    for i in range(files):
        folder = root / f"d{i // per_folder:04d}"
        if i % per_folder == 0:
            folder.mkdir(parents=True)
        path = folder / f"{i:07d}.bin"
        with open(path, "wb") as f:
            f.write(payload[i : i + 1000])
        os.utime(path, (PAST, PAST))


def run(cmd: list[str], env: dict) -> tuple[float, float, str]:
    """(seconds, peak RSS in MB, stdout) of one command as its own process (GNU time -f %M)."""
    start = time.perf_counter()
    proc = subprocess.run(["/usr/bin/time", "-f", "%M", *cmd], capture_output=True, text=True, env=env, cwd="/")
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr}")
    return seconds, int(proc.stderr.strip().splitlines()[-1]) / 1024, proc.stdout


def timed(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def metadata_bytes(store: Path) -> int:
    """Everything in the store outside objects/ (records, manifests, trees, aliases, marker)."""
    total = 0
    for dirpath, dirs, files in os.walk(store):
        if Path(dirpath) == store and "objects" in dirs:
            dirs.remove("objects")
        total += sum(os.path.getsize(os.path.join(dirpath, f)) for f in files)
    return total


def compare(data: Path, work: Path, files: int, checkouts: list[str], rounds: int) -> None:
    """First log and unchanged re-log of each checkout beside their floors, rounds interleaved
    (floors, then each checkout in turn), so a burst of load hits every row alike; best of rounds."""
    base = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}  # bytecode, as installed
    best: dict[str, float] = {}
    load = [os.getloadavg()[0]]
    for _ in range(rounds):
        subprocess.run(["sync"], check=True)
        got = {"cp -r + sync": timed(["sh", "-c", f"cp -r '{data}' '{work / 'copy'}' && sync"])}
        shutil.rmtree(work / "copy")
        got["find"] = timed(["find", str(data), "-printf", "%s %T@ %C@ %i\n"])
        got["import"] = min(timed([sys.executable, "-c", "import typer, pydantic"]) for _ in range(3))
        for i, checkout in enumerate(checkouts):
            store, cache = work / f"store{i}", work / f"cache{i}"
            env = {**base, "PYTHONPATH": checkout, "ARTIFACTKIT_CACHE_DIR": str(cache)}
            log = [sys.executable, "-m", "artifactkit", "log-dataset", str(data), "--name", "m", "--store", str(store)]
            subprocess.run(["sync"], check=True)
            got[f"log {checkout}"] = run(log, env)[0]
            got[f"re-log {checkout}"] = run(log, env)[0]
            shutil.rmtree(store), shutil.rmtree(cache)
        best = {k: min(v, best.get(k, v)) for k, v in got.items()}
        load.append(os.getloadavg()[0])
    relog_floor = best["find"] + best["import"]
    print(f"{files} files; best of {rounds} interleaved rounds; load average {min(load):.1f}-{max(load):.1f}")
    print(
        f"floor: cp -r + sync {best['cp -r + sync']:.2f} s; find {best['find']:.2f} s + import {best['import']:.2f} s"
    )
    for checkout in checkouts:
        log, relog = best[f"log {checkout}"], best[f"re-log {checkout}"]
        print(
            f"{checkout}: first log {log:.2f} s x{log / best['cp -r + sync']:.2f} of cp -r + sync; "
            f"unchanged re-log {relog:.2f} s x{relog / relog_floor:.2f} of find + import"
        )
    print(json.dumps({"files": files, "load": load, **best}))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=1_000_000)
    ap.add_argument("--per-folder", type=int, default=1000)
    ap.add_argument("--checkout", default=str(Path(__file__).resolve().parent.parent))
    ap.add_argument("--work", help="folder for the dataset and store (default: a temp folder)")
    ap.add_argument(
        "--compare",
        action="append",
        metavar="CHECKOUT",
        help="only the first log and the unchanged re-log, of --checkout and of each --compare "
        "checkout, interleaved with their floors for --rounds rounds (before/after in one run)",
    )
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="ak-million-"))
    data, store, out = work / "data", work / "store", work / "pulled"
    if not data.exists():
        t = time.perf_counter()
        make_dataset(data, args.files, args.per_folder)
        print(f"made {args.files} files in {time.perf_counter() - t:.0f} s", file=sys.stderr)
    for stale in (store, out, work / "one", work / "cache"):
        shutil.rmtree(stale, ignore_errors=True)
    if args.compare:
        compare(data, work, args.files, [args.checkout, *args.compare], args.rounds)
        return
    env = {
        **{k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"},  # bytecode, as installed
        "PYTHONPATH": args.checkout,
        "ARTIFACTKIT_CACHE_DIR": str(work / "cache"),
    }
    ak = [sys.executable, "-m", "artifactkit"]
    log = [*ak, "log-dataset", str(data), "--name", "m", "--store", str(store), "--json"]
    res: dict[str, float] = {}
    subprocess.run(["sync"], check=True)
    # The floors, in the same run: copying the folder (what a first log writes: every file, made
    # durable) and statting every file without reading it (what an unchanged re-log must do).
    res["cp_sync_s"] = timed(["sh", "-c", f"cp -r '{data}' '{work / 'copy'}' && sync"])
    shutil.rmtree(work / "copy")
    res["find_stat_s"] = timed(["find", str(data), "-printf", "%s %T@ %C@ %i\n"])
    # the import floor (issue 32): typer and pydantic stay, so their import is part of any command
    res["import_floor_s"] = min(timed([sys.executable, "-c", "import typer, pydantic"]) for _ in range(5))
    res["log_s"], res["log_rss_mb"], _ = run(log, env)
    res["log_files_per_s"] = args.files / res["log_s"]
    res["relog_s"], res["relog_rss_mb"], _ = run(log, env)
    before = metadata_bytes(store)
    trees_before = {p for p in (store / "trees").rglob("*") if p.is_file()}
    for name in ("0000003.bin", "0000007.bin"):
        (data / "d0000" / name).write_bytes(os.urandom(1000))
    time.sleep(2.1)  # past the stat cache's racy window, as any real edit is by the next log
    res["v1_s"], res["v1_rss_mb"], _ = run(log, env)
    res["v1_new_metadata_bytes"] = metadata_bytes(store) - before
    # its floor: the new trees of the folders on the changed paths (the rest is the version record)
    res["v1_new_tree_bytes"] = sum(
        p.stat().st_size for p in (store / "trees").rglob("*") if p.is_file() and p not in trees_before
    )
    res["pull_s"], res["pull_rss_mb"], _ = run([*ak, "pull", "m:v1", str(out), "--store", str(store), "--json"], env)
    res["repull_s"], res["repull_rss_mb"], _ = run(
        [*ak, "pull", "m:v1", str(out), "--store", str(store), "--json"], env
    )
    res["pull_one_folder_s"], res["pull_one_folder_rss_mb"], _ = run(
        [*ak, "pull", "m:v1", str(work / "one"), "--include", "d0001/*", "--store", str(store), "--json"], env
    )
    res["diff_s"], res["diff_rss_mb"], _ = run([*ak, "diff", "m:v0", "m:v1", "--store", str(store), "--json"], env)
    res["verify_s"], res["verify_rss_mb"], _ = run([*ak, "verify", "--store", str(store), "--json"], env)
    res["versions_s"], res["versions_rss_mb"], _ = run([*ak, "versions", "m", "--store", str(store), "--json"], env)
    print(f"{args.files} files of 1 kB in folders of {args.per_folder}, code from {args.checkout}")
    relog_floor = res["find_stat_s"] + res["import_floor_s"]
    print(
        f"first log          {res['log_s']:8.1f} s   {res['log_files_per_s']:8.0f} files/s"
        f"   peak {res['log_rss_mb']:6.0f} MB"
        f"   x{res['log_s'] / res['cp_sync_s']:.2f} of the floor"
    )
    print(f"  floor: cp -r + sync {res['cp_sync_s']:5.1f} s   {args.files / res['cp_sync_s']:8.0f} files/s")
    print(
        f"unchanged re-log   {res['relog_s']:8.2f} s                      peak {res['relog_rss_mb']:6.0f} MB"
        f"   x{res['relog_s'] / relog_floor:.2f} of the floor"
    )
    print(
        f"  floor: find, stat of every file {res['find_stat_s']:5.2f} s + import typer, pydantic "
        f"{res['import_floor_s']:.2f} s"
    )
    print(
        f"v1 (2 files)       {res['v1_s']:8.2f} s   {res['v1_new_metadata_bytes'] / 1e3:8.1f} kB new metadata  peak "
        f"{res['v1_rss_mb']:6.0f} MB"
    )
    print(f"  floor: the new trees of the changed folders {res['v1_new_tree_bytes'] / 1e3:.1f} kB")
    print(
        f"pull v1            {res['pull_s']:8.1f} s                      peak {res['pull_rss_mb']:6.0f} MB"
        f"   x{res['pull_s'] / res['cp_sync_s']:.2f} of cp -r + sync"
    )
    print(f"re-pull (all there){res['repull_s']:8.1f} s                      peak {res['repull_rss_mb']:6.0f} MB")
    print(
        f"pull --include d0001/* {res['pull_one_folder_s']:4.2f} s                      peak "
        f"{res['pull_one_folder_rss_mb']:6.0f} MB"
    )
    print(f"diff v0 v1         {res['diff_s']:8.2f} s                      peak {res['diff_rss_mb']:6.0f} MB")
    print(f"verify             {res['verify_s']:8.1f} s                      peak {res['verify_rss_mb']:6.0f} MB")
    print(f"versions           {res['versions_s']:8.2f} s                      peak {res['versions_rss_mb']:6.0f} MB")
    print(json.dumps({"files": args.files, "checkout": args.checkout, **res}))
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
