"""Training progress in words: the lines the CLI prints and the default `report` logs.

session.train()/resume() tell a caller how a run goes through `report(event, details)`; events:
"run", "resume", "batch" (at most twice a second, and each epoch's last batch), "epoch",
"checkpoint", "stopped", "warning", "interrupted" (a stop signal: where it saved),
"finished" (train --run-id of a finished run), "done". LogReport turns them into standard `logging` records
(logger "artifactkit"), a batch line every 10% of an epoch or 30 s, so a notebook with
`logging.basicConfig(level=logging.INFO)` shows a run as the CLI does.
"""

from __future__ import annotations

import logging
import time
from typing import Any

logger = logging.getLogger("artifactkit")


def batch_line(d: dict[str, Any]) -> str:
    losses = "  ".join(f"{k} {v:.3f}" for k, v in d["losses"].items())
    return (
        f"epoch {d['epoch']}/{d['epochs']}  batch {d['batch']}/{d['batches']}  {losses}  "
        f"{d['img_s']:.1f} img/s  ETA {clock(d['eta_s'])}"
    )


def epoch_line(d: dict[str, Any]) -> str:
    m = d["metrics"]
    return (
        f"epoch {d['epoch']}/{d['epochs']}  loss box {m.get('train/box_loss', 0):.3f} cls "
        f"{m.get('train/cls_loss', 0):.3f}"
        f"  mAP50 {m.get('metrics/mAP50', 0):.3f}  mAP50-95 {m.get('metrics/mAP50-95', 0):.3f}"
        f"  {m.get('speed/train_img_s', 0):.1f} img/s  {m.get('time/epoch_s', 0):.0f}s"
    )


def line(event: str, d: dict[str, Any]) -> str | None:
    """The one line an event prints (None: nothing to say)."""
    if event == "warning":
        return f"warning: {d['message']}"
    if event == "run":  # one line: what trains on what, from which weights, where
        return (
            f"run {d['run_id']} on {d['dataset']}, weights {d.get('weights') or 'none (from scratch)'}, "
            f"device {d.get('device', '?')}, workers {d.get('workers', '?')}: "
            f"resume with  artifactkit resume {d['uri']}"
        )
    if event == "resume":
        inside = f", after batch {d['from_batch']}/{d['batches']}" if d.get("from_batch") else ""
        return (
            f"resuming run {d['run_id']} at epoch {d['from_epoch']}/{d['epochs']}{inside} on {d['dataset']}, "
            f"weights {d.get('weights', '?')}, device {d.get('device', '?')}, workers {d.get('workers', '?')}"
        )
    if event == "finished":
        return d["message"]
    if event == "epoch":
        return epoch_line(d)
    if event == "batch":
        return batch_line(d)
    if event == "checkpoint":
        pruned = f"; deleted older {', '.join(d['pruned'])} (retention)" if d.get("pruned") else ""
        inside = f" at epoch {d['epoch']}, batch {d['batch']}/{d['batches']}" if d.get("batch") else ""
        return f"  saved {d['version']} ({', '.join(d['aliases'])}){inside}{pruned}"
    if event == "interrupted":
        return d["message"]
    if event == "stopped":
        return f"stopping early after epoch {d['epoch']}: {d['reason']}"
    return None


def clock(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return (
        f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
        if seconds >= 3600
        else f"{seconds // 60}:{seconds % 60:02d}"
    )


class Periodic:
    """Says yes to a batch line every `fraction` of an epoch or every `seconds`, whichever first."""

    def __init__(self, fraction: float = 0.1, seconds: float = 30.0):
        self.fraction, self.seconds = fraction, seconds
        self._last_time = time.monotonic()
        self._last_step = self._last_batch = 0

    def due(self, d: dict[str, Any]) -> bool:
        step = int(d["batch"] / d["batches"] / self.fraction) if d["batches"] else 0
        now = time.monotonic()
        if d["batch"] <= self._last_batch:  # a new epoch
            self._last_step = 0
        self._last_batch = d["batch"]
        if step > self._last_step or now - self._last_time >= self.seconds:
            self._last_step, self._last_time = step, now
            return True
        return False


class LogReport:
    """The default `report` of the Python API: standard logging, batch lines now and then."""

    def __init__(self) -> None:
        self.periodic = Periodic()

    def __call__(self, event: str, d: dict[str, Any]) -> None:
        if event == "batch" and not self.periodic.due(d):
            return
        text = line(event, d)
        if text is not None:
            logger.log(logging.WARNING if event == "warning" else logging.INFO, text)
