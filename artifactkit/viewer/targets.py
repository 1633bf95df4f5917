"""What `view`'s targets name: run URIs, a bare run id, or one dataset NAME[:VERSION]."""

from __future__ import annotations

from typing import Any, Sequence

from ..errors import InvalidInput
from ..store import open_store
from ..uri import RUN_ID_RE, looks_like_ref, run_uri


def split_targets(targets: Sequence[str], store: str | None = None,
                  storage_options: dict[str, Any] | None = None) -> tuple[list[str], str | None]:
    """(run URIs, the dataset ref or None). Run URIs hold '/runs/'; anything else is a dataset
    NAME[:VERSION] in `store`, unless a bare name is a run id there (so `view 7f3k2a --store
    s3://team/ak` works too). One dataset at a time."""
    runs, datasets = [], []
    opened = None
    for target in targets:
        if "/runs/" in target:
            runs.append(target)
        elif looks_like_ref(target) or not RUN_ID_RE.fullmatch(target):
            datasets.append(target)
        else:
            opened = opened or open_store(store, storage_options, must_exist=True)
            if opened.run_exists(target):
                runs.append(run_uri(opened.url, target))
            else:
                datasets.append(target)
    if len(datasets) > 1:
        raise InvalidInput(f"one dataset at a time, got {', '.join(datasets)}")
    return runs, (datasets[0] if datasets else None)
