"""The demo end to end at its smallest size, as a newcomer runs it."""

from __future__ import annotations

import json

from clirunner import run_cli


def test_tiny_demo(tmp_path):
    proc = run_cli("demo", "--tiny", "--dir", "demo", "--json", cwd=tmp_path)
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    v0, v1 = summary["dataset"]["v0"], summary["dataset"]["v1"]
    assert (v0["version"], v1["version"]) == ("v0", "v1")
    assert v1["uploaded_files"] == 2 and v1["uploaded_bytes"] < v0["uploaded_bytes"] / 2
    assert summary["killed_after_epoch"] == 1 and summary["epochs_after_resume"] == 2
    assert "resuming run" in proc.stderr and "at epoch 2/2" in proc.stderr
    assert (tmp_path / "demo" / "report.html").is_file()
    for heading in ("== 1.", "== 4. Simulate a crash", "$ artifactkit runs", "== 5. Resume", "$ artifactkit resume"):
        assert heading in proc.stderr
    # the last line names the report as the user can open it from where they typed the command
    assert proc.stderr.strip().splitlines()[-1] == "demo finished in demo: open demo/report.html in a browser"
    assert (tmp_path / "demo" / "report.html").is_file()
