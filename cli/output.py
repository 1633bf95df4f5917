"""How the CLI speaks: one JSON object as the last stdout line with --json, rich otherwise,
progress bars on stderr only when it is a terminal."""

from __future__ import annotations

import contextlib
import json
import sys
from typing import Any, Iterator


def emit(as_json: bool, payload: dict[str, Any], human: str | None = None) -> None:
    if as_json:
        sys.stdout.write(json.dumps(payload, default=str) + "\n")
    elif human is not None:
        print(human)


def human_bytes(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n} B"


@contextlib.contextmanager
def progress_bar(description: str, enabled: bool = True) -> Iterator[Any]:
    """Yields a callback (bytes just processed, total bytes), or None when stderr is not a terminal."""
    if not enabled or not sys.stderr.isatty():
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn, TransferSpeedColumn

    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
    ) as bar:
        task = bar.add_task(description, total=None)
        yield lambda n, total: bar.update(task, advance=n, total=total)


def table(title: str, columns: list[str], rows: list[list[Any]]) -> None:
    """A title line and aligned columns, as plain text (rich would cost every command ~30 ms of
    start-up to draw boxes; text also pipes cleanly into grep and awk)."""
    cells = [columns] + [[str(x) for x in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    print(title)
    for row in cells:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())


# What gc kept and would free: printed by gc, du, rm, prune and runs rm.
def kept_line(report) -> str:
    """What gc kept because it is younger than the grace, and until when."""
    if not report.kept_recent:
        return "nothing younger than the grace period was kept"
    return (
        f"kept {report.kept_recent} unreferenced files ({human_bytes(report.kept_recent_bytes)}) younger than the "
        f"{_duration(report.grace_seconds)} grace until {report.kept_until} (a log in flight may still use them; "
        "`gc --grace 0` deletes them now if no other process writes to this store)"
    )


def pending_line(p) -> str:
    """What gc would free now, and what more once the grace of the younger files ends."""
    line = f"`artifactkit gc` frees {human_bytes(p.now_bytes)} now"
    if p.later_files:
        line += (
            f", and {human_bytes(p.later_bytes)} more after {p.later_at} (files younger than the "
            f"{_duration(p.grace_seconds)} grace; `gc --grace 0` frees them now if no other process writes here)"
        )
    return line


def _duration(seconds: float) -> str:
    if seconds and seconds % 3600 == 0:
        return f"{seconds / 3600:g}h"
    return f"{seconds / 60:g}min" if seconds and seconds % 60 == 0 else f"{seconds:g}s"
