"""Where `push` sends versions, named by a string: another store (a path or fsspec URL; only the
blobs it lacks are sent, and it is made if absent) or a W&B project, wandb://ENTITY/PROJECT (a
mirror, not a store: W&B's own backend maps versions to artifacts)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .ingest import Progress
from .store import Store, open_store

MIRROR_PREFIX = "wandb://"  # wandb.sdk.MIRROR_SCHEME, spelt here so a store push never loads the W&B package


@dataclass(frozen=True)
class Pushed:
    result: Any  # transfer.PushResult, or wandb.WandbPushResult for a mirror: both have summary()
    destination: str  # where the versions went, credentials redacted


def is_mirror(to: str) -> bool:
    """A W&B project (logged through the W&B SDK, which reports its own progress), not a store."""
    return to.startswith(MIRROR_PREFIX)


def push_to(
    src: Store, ref: str, to: str, storage_options: dict[str, Any] | None = None, progress: Progress | None = None
) -> Pushed:
    """Copy a version (NAME:vN / NAME:ALIAS) or every version (NAME) of src to `to`."""
    if is_mirror(to):
        from .redact import redact_uri
        from .wandb import push_to_wandb

        return Pushed(push_to_wandb(src, ref, to), redact_uri(to))
    from .transfer import push

    dst = open_store(to, storage_options)
    return Pushed(push(src, ref, dst, progress=progress), dst.uri)
