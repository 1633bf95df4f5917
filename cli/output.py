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
    from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn, TransferSpeedColumn

    from rich.console import Console

    with Progress(
        "[progress.description]{task.description}", BarColumn(), DownloadColumn(), TransferSpeedColumn(),
        TimeRemainingColumn(), console=Console(stderr=True), transient=True,
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
