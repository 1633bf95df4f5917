"""Running the real CLI in a subprocess, as a user would. (A module of its own, not conftest:
tests/detector has a conftest too, and `from conftest import` would find either.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys


def run_cli(*args: str, env: dict | None = None, cwd: str | os.PathLike | None = None, check: bool = True):
    """Run the real CLI in a subprocess (as a user would), returning the CompletedProcess."""
    full_env = {**os.environ, **(env or {})}
    proc = subprocess.run(
        [sys.executable, "-m", "artifactkit", *args],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=cwd,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"artifactkit {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def run_cli_modules(*args: str, cwd: str | os.PathLike) -> tuple[subprocess.CompletedProcess, set[str]]:
    """Run the real CLI in a fresh interpreter, as `python -m artifactkit` does, and also return the
    names of every module it loaded (start-up cost: what a command imports). The module list is the
    last line of stdout; the exit code is the command's."""
    code = (
        "import json, runpy, sys\n"
        f"sys.argv = {['artifactkit', *args]!r}\n"
        "status = 0\n"
        "try:\n    runpy.run_module('artifactkit', run_name='__main__')\n"
        "except SystemExit as e:\n    status = e.code if isinstance(e.code, int) else (1 if e.code else 0)\n"
        "print(json.dumps(sorted(sys.modules)))\n"
        "sys.exit(status)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd)
    lines = proc.stdout.strip().splitlines()
    return proc, set(json.loads(lines[-1])) if lines else set()


def assert_bit_identical_twins(store_dir, straight: str, resumed: str, epochs: int) -> None:
    """The resumed run's final checkpoint equals the uninterrupted one's bit for bit, and its
    metrics hold each epoch once."""
    import torch

    import artifactkit
    from artifactkit import checkpoint, runs

    store = artifactkit.open_store(str(store_dir))
    a, b = (checkpoint.load_full(store, f"{run}-model", f"{run}-state") for run in (straight, resumed))
    assert a["epoch"] == b["epoch"] == epochs
    for part in ("model", "ema"):
        x, y = (a[part], b[part]) if part == "model" else (a["ema"]["model"], b["ema"]["model"])
        assert x.keys() == y.keys()
        for key in x:
            assert torch.equal(x[key], y[key]), (part, key)
    assert [m["epoch"] for m in runs.read_metrics(store, resumed)] == list(range(1, epochs + 1))


def start_paused(script, text: str, args: list[str], what: str, seconds: float) -> subprocess.Popen:
    """Write `text` to `script`, run it with `args`, and return it once it has SIGSTOPped itself at
    the point it chose (state 'T' in /proc). If it exits first, or never reaches `what` within
    `seconds`, it is killed and the failure carries its stderr."""
    import time

    script.write_text(text)
    proc = subprocess.Popen(
        [sys.executable, str(script), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.time() + seconds
    try:
        while True:
            with open(f"/proc/{proc.pid}/stat") as f:
                if f.read().rsplit(")", 1)[-1].split()[0] == "T":
                    return proc
            assert proc.poll() is None, proc.stderr.read()
            assert time.time() < deadline, f"the child never reached {what}"
            time.sleep(0.05)
    except BaseException:
        proc.kill()
        proc.wait()
        raise
