"""Start-up time of `artifactkit --version` and a store command beside their floors, in one run.

    python bench/startup.py [--checkout PATH ...] [--repeat 15]

Floors: Python itself, `import typer, pydantic` (the issue's floor: both stay, by decision) and
typer's own smallest app with one command (typer 0.29 builds pydantic adapters for every parameter
it parses, so any typer command costs that much). For each checkout (default: this one) it runs
`python -m artifactkit --version` and `python -m artifactkit versions x --store S` on a one-file
store. Every command runs once per round, round after round (ABAB…, so a burst of load on a shared
machine hits all rows alike); it prints the best wall and CPU time of --repeat rounds and each
one's ratio to the import floor. Bytecode is written and warmed first (PYTHONDONTWRITEBYTECODE is
dropped), as an installed package has it. Run with the interpreter itself (not a pyenv shim, which
adds ~80 ms of bash to every start).
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


def timed(cmd: list[str], env: dict) -> tuple[float, float]:
    """(wall seconds, CPU seconds: user + system of the child). CPU time is what the command itself
    costs, the steadier figure where other processes share the cores."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    # cwd: a neutral folder (`python -m` puts the cwd before PYTHONPATH)
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, cwd="/")
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--checkout", action="append", help="a source checkout to run (repeatable; default: this one)")
    ap.add_argument("--repeat", type=int, default=15)
    args = ap.parse_args()
    checkouts = args.checkout or [str(Path(__file__).resolve().parent.parent)]
    base_env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "d").mkdir()
        (work / "d" / "a").write_text("a\n")
        (work / "floor.py").write_text(FLOOR_APP)
        env0 = {**base_env, "PYTHONPATH": checkouts[0], "ARTIFACTKIT_CACHE_DIR": str(work / "cache")}
        subprocess.run(
            [
                sys.executable,
                "-m",
                "artifactkit",
                "log-dataset",
                str(work / "d"),
                "--name",
                "x",
                "--store",
                str(work / "s"),
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            env=env0,
            cwd="/",
        )
        py = sys.executable
        rows: list[tuple[str, list[str], dict]] = [
            ("python -c pass", [py, "-c", "pass"], env0),
            ("floor: python -c 'import typer, pydantic'", [py, "-c", "import typer, pydantic"], env0),
            ("typer's 1-command app", [py, str(work / "floor.py"), "versions", "x"], env0),
        ]
        for checkout in checkouts:
            env = {**env0, "PYTHONPATH": checkout}
            rows.append((f"--version ({checkout})", [py, "-m", "artifactkit", "--version"], env))
            rows.append(
                (
                    f"versions x ({checkout})",
                    [py, "-m", "artifactkit", "versions", "x", "--store", str(work / "s")],
                    env,
                )
            )
        for _, cmd, env in rows:  # warm: bytecode written, files in the page cache
            timed(cmd, env)
        best = [(float("inf"), float("inf"))] * len(rows)
        for _ in range(args.repeat):
            for i, (_, cmd, env) in enumerate(rows):
                wall, cpu = timed(cmd, env)
                best[i] = (min(best[i][0], wall), min(best[i][1], cpu))
    wall0, cpu0 = best[1]
    title = f"best of {args.repeat} interleaved rounds"
    print(f"{title:60s} {'wall':>8s} {'/floor':>6s} {'cpu':>8s} {'/floor':>6s}")
    for (label, _, _), (wall, cpu) in zip(rows, best):
        print(f"{label:60s} {wall * 1000:5.0f} ms x{wall / wall0:.2f} {cpu * 1000:5.0f} ms x{cpu / cpu0:.2f}")


if __name__ == "__main__":
    main()
