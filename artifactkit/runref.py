"""What `resume` means by its argument: a run URI, a run id in a store, wandb-artifact://… (the
run rebuilt from W&B in a local store first), or nothing (the most recent interrupted run). A
module of its own because it sits above both runs.py and the W&B integration."""

from __future__ import annotations

from .errors import NotFound
from .names import RUN_ID_RE
from .runs import RunRecord, latest_interrupted, load_run
from .store import Store, open_store
from .uri import split_run_uri

WANDB_RUN = "wandb-artifact://"  # wandb-artifact://<entity>/<project>/<run-id>: resume from W&B alone


def find_run(uri: str | None, store: str | None, storage_options=None) -> tuple[Store, RunRecord]:
    """The run `resume` means: a run URI, a run id in `store`, wandb-artifact://… (rebuilt in a
    local store first), or None: the most recent interrupted run in `store`."""
    if uri is not None and uri.startswith(WANDB_RUN):
        from .wandb import fetch_run  # W&B as the source: rebuilt in a local store first

        return fetch_run(uri, store, storage_options)
    if uri is not None and RUN_ID_RE.fullmatch(uri):  # a run id in --store, as `view` takes one
        s = open_store(store, storage_options)
        try:
            return s, load_run(s, uri)
        except NotFound as e:  # in a missing store too
            raise NotFound(f"{e} (resume takes <store>/runs/<run-id>, or a run id with --store)") from None
    if uri is not None:
        store_uri, run_id = split_run_uri(uri)
        s = open_store(store_uri, storage_options)
        return s, load_run(s, run_id)  # in a missing store too: "<store>/runs/<id>: no such run"
    s = open_store(store, storage_options, must_exist=True)
    return s, latest_interrupted(s)
