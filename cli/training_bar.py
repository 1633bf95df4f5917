"""Training progress on stderr (stdout stays for --json): a live bar per epoch with the running
losses, images/s and ETA on a terminal; plain lines every 10% of an epoch or 30 s otherwise
(logs, CI, `| tee`)."""

from __future__ import annotations

import sys
from typing import Any

from artifactkit.training_lines import Periodic, line


class TrainingProgress:
    """A session `report` callable; use it as a context manager so a live bar is closed on exit."""

    def __init__(self, quiet: bool = False, live: bool | None = None):
        self.quiet = quiet
        self.live = sys.stderr.isatty() if live is None else live
        self.periodic = Periodic()
        self._bar: Any = None
        self._task: Any = None
        self.already_finished = False

    def __enter__(self) -> "TrainingProgress":
        return self

    def __exit__(self, *exc: Any) -> None:
        self._close_bar()

    def __call__(self, event: str, d: dict[str, Any]) -> None:
        if self.quiet and event != "warning" or event == "interrupted":  # cli/main.py prints that line
            return
        if event == "finished":  # train --run-id of a finished run: the command's one line says so
            self.already_finished = True
            return
        if event == "batch":
            self._batch(d)
            return
        text = line(event, d)
        if text is None:
            return
        if event == "epoch":
            self._close_bar()
        self._print(text)

    def _batch(self, d: dict[str, Any]) -> None:
        if not self.live:
            if self.periodic.due(d):
                self._print(line("batch", d))
            return
        if self._bar is None:
            self._open_bar(d)
        losses = " ".join(f"{k} {v:.3f}" for k, v in d["losses"].items())
        self._bar.update(
            self._task,
            completed=d["batch"],
            total=d["batches"],
            description=f"epoch {d['epoch']}/{d['epochs']}",
            info=f"{losses}  {d['img_s']:.1f} img/s",
        )

    def _open_bar(self, d: dict[str, Any]) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self._bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            transient=True,
        )
        self._bar.start()
        self._task = self._bar.add_task(f"epoch {d['epoch']}/{d['epochs']}", total=d["batches"], info="")

    def _close_bar(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = self._task = None

    def _print(self, text: str) -> None:
        if self._bar is not None:
            self._bar.console.print(text, markup=False, highlight=False)
        else:
            print(text, file=sys.stderr, flush=True)
