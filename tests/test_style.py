"""The code's layout and lint are ruff's (configured in pyproject.toml: line length 120, pyflakes,
pycodestyle, import order), checked here so the README's test command and .ci/run keep them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _ruff(*args: str) -> subprocess.CompletedProcess:
    try:
        import ruff  # noqa: F401  (installed by the test extra)
    except ImportError:
        pytest.fail("ruff is not installed: python -m pip install -e '.[test]'")
    return subprocess.run([sys.executable, "-m", "ruff", *args], cwd=ROOT, capture_output=True, text=True)


def test_ruff_finds_nothing_to_lint():
    done = _ruff("check", "--no-cache", ".")
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]


def test_the_code_is_laid_out_as_ruff_format_writes_it():
    done = _ruff("format", "--check", "--no-cache", ".")
    assert done.returncode == 0, "run `python -m ruff format .`:\n" + done.stdout[-4000:] + done.stderr[-2000:]
