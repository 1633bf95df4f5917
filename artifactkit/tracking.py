"""Trackers: where a run's events go besides the store of record (e.g. Weights & Biases).

A tracker is any object with some of these methods; the run calls only those it has:
    start(run: RunRecord, resumed: bool) -> dict | None   # info kept in run.trackers[tracker.name]
    log_dataset(dataset: datasets.LocalDataset, store: Store)   # once, after start
    log_epoch(epoch: int, metrics: dict, system: dict)
    log_evaluation(epoch: int, table: dict, read_image: Callable[[str], bytes])
    log_checkpoint(record: VersionRecord, aliases: list[str], metadata: dict)
    finish(status: str)
A tracker that fails must never stop training or lose a checkpoint: FanOut reports the failure
through `warn` and stops calling that tracker.
"""

from __future__ import annotations

import os
import time
from typing import Any, Callable, Sequence


class FanOut:
    def __init__(self, trackers: Sequence[Any], warn: Callable[[str], None]):
        self.trackers = list(trackers)
        self.warn = warn

    def call(self, method: str, *args: Any) -> dict[str, Any]:
        """Call `method` on every live tracker; returns {tracker name: result}."""
        results = {}
        for tracker in list(self.trackers):
            fn = getattr(tracker, method, None)
            if fn is None:
                continue
            try:
                results[getattr(tracker, "name", type(tracker).__name__)] = fn(*args)
            except Exception as e:  # a mirror's failure is reported, never fatal (store of record holds all)
                self.trackers.remove(tracker)
                self.warn(
                    f"{getattr(tracker, 'name', tracker)}: {method} failed ({type(e).__name__}: {e}); "
                    "no longer mirroring this run there"
                )
        return results


class SystemMonitor:
    """CPU %, resident memory and, on CUDA, GPU memory and utilisation, sampled per epoch."""

    def __init__(self) -> None:
        self._last = (time.perf_counter(), time.process_time())

    def sample(self) -> dict[str, float]:
        now, cpu = time.perf_counter(), time.process_time()
        wall = max(now - self._last[0], 1e-9)
        out: dict[str, float] = {"system/cpu_percent": 100.0 * (cpu - self._last[1]) / wall / (os.cpu_count() or 1)}
        self._last = (now, cpu)
        rss = _rss_bytes()
        if rss is not None:
            out["system/rss_bytes"] = float(rss)
        out.update(_cuda_usage())
        return out


def _rss_bytes() -> int | None:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def _cuda_usage() -> dict[str, float]:
    import sys

    torch = sys.modules.get("torch")  # only if training already imported it
    if torch is None or not torch.cuda.is_available():
        return {}
    out = {
        "system/gpu_mem_bytes": float(torch.cuda.memory_allocated()),
        "system/gpu_mem_peak_bytes": float(torch.cuda.max_memory_allocated()),
    }
    try:
        out["system/gpu_util_percent"] = float(torch.cuda.utilization())
    except Exception:  # needs pynvml; utilisation is optional
        pass
    return out


def continued(trackers: dict[str, dict[str, Any]], warn: Callable[[str], None]) -> list[Any]:
    """The trackers a run had (its record's `trackers`), rebuilt so a resume keeps mirroring to
    the same places without the flags being repeated."""
    out: list[Any] = []
    for name, info in trackers.items():
        if name == "wandb":
            out.append(_wandb_tracker(info))
        else:
            warn(f"the run was mirrored to {name!r}, which this version cannot continue")
    return out


def _wandb_tracker(info: dict[str, Any]) -> Any:
    from .errors import MissingExtra
    from .wandb import WandbTracker

    try:
        return WandbTracker(project=info.get("project"), entity=info.get("entity"))
    except MissingExtra as e:
        raise MissingExtra(
            f"the run is mirrored to W&B run {info.get('id')}, to continue it: {e} (or resume with --no-wandb)"
        ) from None


def choose(
    wandb: bool | None, project: str | None = None, entity: str | None = None, upload_dataset: bool = False
) -> list[Any] | None:
    """The trackers `train --wandb/--no-wandb` (and `resume`) asks for, as session.train/resume take
    them: wandb=True a W&B tracker, False none, None None (a resume continues the run's own; a new
    run gets none). Under torchrun only rank 0 tracks, so other ranks get none whatever was asked."""
    from .detector.distributed import World

    if not World.from_env().is_main:
        return []
    if not wandb:
        return None if wandb is None else []
    from .wandb import WandbTracker

    return [WandbTracker(project=project, entity=entity, upload_dataset=upload_dataset)]
