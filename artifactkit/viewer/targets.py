"""What `view`'s targets name: run URIs, a bare run id, or one dataset NAME[:VERSION]."""

from __future__ import annotations

from typing import Any, Sequence

from .. import refs
from ..errors import InvalidInput
from ..store import open_store
from ..uri import run_uri


def split_targets(
    targets: Sequence[str], store: str | None = None, storage_options: dict[str, Any] | None = None
) -> tuple[list[str], str | None]:
    """(run URIs, the dataset ref or None), each target read by refs.py: a run URI, or a
    NAME[:VERSION] in `store`, where a bare word is a run id if that run is there (so `view 7f3k2a
    --store s3://team/ak` works too). One dataset at a time."""
    runs, datasets = [], []
    opened = None
    for target in targets:
        ref = refs.parse(target, refs.RUN_OR_VERSION, "view target")
        if isinstance(ref, refs.WordRef):
            opened = opened or open_store(store, storage_options, must_exist=True)
            ref = refs.word_in(opened, ref.word)
        if isinstance(ref, refs.RunRef):
            if ref.store is None:
                opened = opened or open_store(store, storage_options, must_exist=True)
            runs.append(run_uri(ref.store if ref.store is not None else opened.url, ref.run_id))
        else:
            datasets.append(target)
    if len(datasets) > 1:
        raise InvalidInput(f"one dataset at a time, got {', '.join(datasets)}")
    return runs, (datasets[0] if datasets else None)
