"""Weights & Biases: a tracker and a mirror, never the store of record.

    tracker.py  WandbTracker: one W&B run per artifactkit run (same id on resume), metrics,
                the bounding-box debugger, evaluation tables, dataset and checkpoint artifacts
    mirror.py   a store version <-> a W&B artifact (files by content + the exact manifest)
    remote.py   push --to wandb://<entity>/<project>; resume wandb-artifact://<entity>/<project>/<run-id>
    media.py    boxes, images and tables in W&B's formats
    sdk.py      lazy import of wandb, online/offline choice, URI parsing

Only this package imports wandb, and only when one of these is called.
"""

from .remote import WandbPushResult, fetch_run, push_to_wandb
from .sdk import MIRROR_SCHEME, RUN_SCHEME
from .tracker import WandbTracker

__all__ = ["MIRROR_SCHEME", "RUN_SCHEME", "WandbPushResult", "WandbTracker", "fetch_run", "push_to_wandb"]
