"""Run records: what a training run is, where its data and checkpoints are, how far it got.

runs/<id>/run.json             the RunRecord (mutable: replaced atomically as the run advances)
runs/<id>/metrics/<epoch>.json one object per epoch (one write each: append-safe on S3); a
                               resumed run that repeats an epoch replaces it, never duplicates
"""

from __future__ import annotations

import json
import secrets
import string
from typing import Any, Literal

from pydantic import Field, model_validator

from .errors import InvalidInput, NotFound
from .layout import run_prefix
from .manifest import Record, now_iso, parse_record, to_json
from .store import Store
from .uri import RUN_ID_RE

Status = Literal["running", "finished", "failed"]
# Keys older records may hold that mean nothing now; `dataset_complete` was never set to False.
RETIRED_KEYS = frozenset({"dataset_complete"})


class RunRecord(Record):
    schema_version: int = 1
    run_id: str
    created: str
    updated: str
    status: Status = "running"
    config: dict[str, Any]
    dataset: str | None = None  # NAME:vN in the same store
    data_yaml: str = "data.yaml"  # path of data.yaml inside the dataset version
    model_artifact: str
    epochs_completed: int = Field(0, ge=0)
    total_epochs: int = Field(ge=0)
    best_fitness: float | None = None
    best_metrics: dict[str, float] = {}
    stopped_early: str | None = None  # why early stopping (patience) ended the run before total_epochs
    trackers: dict[str, dict[str, Any]] = {}  # e.g. {"wandb": {"id": ..., "project": ..., "entity": ...}}
    # Lineage of a fine-tuned run: {"store": URI, "version": NAME:vN} of a stored checkpoint, or
    # {"file": absolute path, "digest": xxh3-128} of an exported file; None when trained from scratch.
    weights_from: dict[str, str] | None = None

    @model_validator(mode="before")
    @classmethod
    def _drop_retired_keys(cls, data: Any) -> Any:
        """Records written before a key was retired still load (the key is dropped, not refused)."""
        if isinstance(data, dict) and RETIRED_KEYS & data.keys():
            data = {k: v for k, v in data.items() if k not in RETIRED_KEYS}
        return data

    def with_(self, **changes: Any) -> "RunRecord":
        return self.model_copy(update={**changes, "updated": now_iso()})


def new_run_id() -> str:
    alphabet = string.ascii_lowercase + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(8))


def check_run_id(run_id: str) -> str:
    if not RUN_ID_RE.match(run_id):
        raise InvalidInput(f"invalid run id {run_id!r}: letters, digits, '.', '_' and '-', at most 64")
    return run_id


def record_key(run_id: str) -> str:
    return f"{run_prefix(run_id)}/run.json"


def metrics_key(run_id: str, epoch: int) -> str:
    return f"{run_prefix(run_id)}/metrics/{epoch:06d}.json"


def create_run(store: Store, record: RunRecord) -> None:
    """Claim the run id exclusively: two trainings never share a run folder."""
    from .errors import AlreadyExists

    try:
        store.backend.write(record_key(record.run_id), to_json(record), create_only=True)
    except AlreadyExists:
        raise InvalidInput(f"{store.uri}: run {record.run_id!r} already exists; resume it or pick another --run-id") from None


def save_run(store: Store, record: RunRecord) -> None:
    store.backend.write(record_key(record.run_id), to_json(record))


def load_run(store: Store, run_id: str) -> RunRecord:
    key = record_key(check_run_id(run_id))
    try:
        data = store.backend.read(key)
    except NotFound:
        raise NotFound(f"{store.uri}/runs/{run_id}: no such run") from None
    return parse_record(RunRecord, data, f"{store.uri}/{key}")


def list_runs(store: Store) -> list[RunRecord]:
    records = []
    for info in store.backend.list("runs/"):
        parts = info.key.split("/")
        if len(parts) == 3 and parts[2] == "run.json":
            records.append(load_run(store, parts[1]))
    return sorted(records, key=lambda r: r.created)


def write_epoch_metrics(store: Store, run_id: str, epoch: int, payload: dict[str, Any]) -> None:
    store.backend.write(metrics_key(run_id, epoch), json.dumps(payload, sort_keys=True).encode())


def read_metrics(store: Store, run_id: str) -> list[dict[str, Any]]:
    """Every epoch's metrics object, in epoch order."""
    keys = sorted(i.key for i in store.backend.list(f"{run_prefix(run_id)}/metrics/") if i.key.endswith(".json"))
    return [json.loads(data) for _, data in sorted(store.backend.read_many(keys))]
