"""Running the real CLI in a subprocess, as a user would. (A module of its own, not conftest:
tests/detector has a conftest too, and `from conftest import` would find either.)"""

from __future__ import annotations

import os
import sys


def run_cli(*args: str, env: dict | None = None, cwd: str | os.PathLike | None = None, check: bool = True):
    """Run the real CLI in a subprocess (as a user would), returning the CompletedProcess."""
    import subprocess

    full_env = {**os.environ, **(env or {})}
    proc = subprocess.run(
        [sys.executable, "-m", "artifactkit", *args], capture_output=True, text=True, env=full_env, cwd=cwd,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"artifactkit {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc
