"""Start-up time of a store command beside its floor (Python itself, and typer's own minimum), in one run.

    python bench/startup.py [--checkout PATH ...] [--repeat 15]

For each checkout (default: this one) runs `python -m artifactkit versions x --store S` on a
one-file store with that checkout first on PYTHONPATH, and prints the best of --repeat wall and CPU times
(the least disturbed by other processes on a shared machine) and their ratio to the first checkout.
Run with the interpreter itself (not a pyenv shim, which adds ~80 ms of bash to every start).
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# typer's floor: the smallest app with one command and three options, as ours has.
FLOOR_APP = """
from typing import Annotated, Optional
import typer
app = typer.Typer()
@app.command()
def versions(name: str, store: Annotated[Optional[str], typer.Option()] = None,
             json_out: Annotated[bool, typer.Option("--json")] = False):
    print(name)
@app.command()
def other(x: int = 1):
    pass
app()
"""


def best_of(cmd: list[str], repeat: int, env: dict | None = None) -> tuple[float, float]:
    """(best wall seconds, best CPU seconds: user + system of the child). CPU time is what the
    command itself costs, the steadier figure where other processes share the cores."""
    walls, cpus = [], []
    for _ in range(repeat):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        # cwd: a neutral folder (`python -m` puts the cwd before PYTHONPATH)
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, cwd="/")
        walls.append(time.perf_counter() - start)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return min(walls), min(cpus)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--checkout", action="append", help="a source checkout to run (repeatable; default: this one)")
    ap.add_argument("--repeat", type=int, default=15)
    args = ap.parse_args()
    checkouts = args.checkout or [str(Path(__file__).resolve().parent.parent)]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "d").mkdir()
        (work / "d" / "a").write_text("a\n")
        (work / "floor.py").write_text(FLOOR_APP)
        env0 = {**os.environ, "PYTHONPATH": checkouts[0], "ARTIFACTKIT_CACHE_DIR": str(work / "cache")}
        subprocess.run([sys.executable, "-m", "artifactkit", "log-dataset", str(work / "d"), "--name", "x",
                        "--store", str(work / "s")], check=True, stdout=subprocess.DEVNULL, env=env0, cwd="/")
        rows = [("python -c pass", best_of([sys.executable, "-c", "pass"], args.repeat)),
                ("typer floor (1-command app)", best_of([sys.executable, str(work / "floor.py"), "versions", "x"], args.repeat))]
        for checkout in checkouts:
            env = {**env0, "PYTHONPATH": checkout}
            cmd = [sys.executable, "-m", "artifactkit", "versions", "x", "--store", str(work / "s")]
            rows.append((f"versions ({checkout})", best_of(cmd, args.repeat, env)))
    wall0, cpu0 = rows[2][1]
    print(f"{'best of ' + str(args.repeat):52s} {'wall':>8s} {'ratio':>6s} {'cpu':>8s} {'ratio':>6s}")
    for label, (wall, cpu) in rows:
        print(f"{label:52s} {wall * 1000:5.0f} ms x{wall / wall0:.2f} {cpu * 1000:5.0f} ms x{cpu / cpu0:.2f}")


if __name__ == "__main__":
    main()
