"""Run records: what a training run is, where its data and checkpoints are, how far it got.

runs/<id>/run.json             the RunRecord (mutable: replaced atomically as the run advances)
runs/<id>/metrics/<epoch>.json one object per epoch (one write each: append-safe on S3); a
                               resumed run that repeats an epoch replaces it, never duplicates
runs/<id>/lease/<n>.json       who holds the run, renewed by its heartbeat (lease.py)

Status: a run is `running` while it trains, `finished`, `failed` (it raised: the error is in the
record) or `interrupted` (Ctrl-C). A process killed by a signal or a lost machine cannot say so:
a `running` run whose lease is no longer live is observed as `interrupted` (observe()).
"""

from __future__ import annotations

import json
import secrets
import string
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from . import lease
from .errors import AlreadyExists, InvalidInput, NotFound
from .fencing import check_pending
from .names import check_name, check_relative_path, check_run_id
from .nesting import too_deep
from .records import Record, now_iso, parse_record, to_json, validator_of
from .store import Store
from .uri import parse_ref

Status = Literal["running", "finished", "failed", "interrupted"]
MAX_ERROR_CHARS = 500
# Keys older records may hold that mean nothing now; `dataset_complete` was never set to False.
RETIRED_KEYS = frozenset({"dataset_complete"})


class RunRecord(Record):
    """Every field that becomes a key or a path (run id, artifact names, data.yaml's path) is
    validated when a record is read: a run record may come from someone else's bucket."""

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
    error: str | None = None  # why a failed run failed: one line, credentials removed (error_line)
    trackers: dict[str, dict[str, Any]] = {}  # e.g. {"wandb": {"id": ..., "project": ..., "entity": ...}}
    # Lineage of a fine-tuned run: {"store": URI, "version": NAME:vN} of a stored checkpoint, or
    # {"file": absolute path, "digest": xxh3-128} of an exported file; None when trained from scratch.
    weights_from: dict[str, str] | None = None
    # Fencing on a store with conditional writes (fencing.py): the lease generation of the record's
    # last writer, and the newest version of each of the run's artifacts that the takeover of that
    # generation found; a version an older generation claimed above it landed after the takeover.
    generation: int | None = Field(None, ge=0)
    versions_at_takeover: dict[str, int] = {}
    # Versions (NAME:vN) its holder announced it is deleting: a takeover finishes them first (fencing.py).
    pending_deletes: list[str] = []

    @model_validator(mode="before")
    @classmethod
    def _drop_retired_keys(cls, data: Any) -> Any:
        """Records written before a key was retired still load (the key is dropped, not refused)."""
        if isinstance(data, dict) and RETIRED_KEYS & data.keys():
            data = {k: v for k, v in data.items() if k not in RETIRED_KEYS}
        return data

    _check_run_id = field_validator("run_id")(validator_of(check_run_id))
    _check_model = field_validator("model_artifact")(validator_of(check_name))
    _check_yaml = field_validator("data_yaml")(validator_of(check_relative_path))
    _check_pending = field_validator("pending_deletes")(validator_of(check_pending))
    _check_dataset = field_validator("dataset")(validator_of(lambda v: v if v is None else _check_ref(v)))

    @field_validator("versions_at_takeover")
    @classmethod
    def _check_takeover(cls, value: dict[str, int]) -> dict[str, int]:
        for name, version in value.items():
            validator_of(check_name)(name)
            if version < -1:
                raise ValueError(f"{name}: version {version} (expected -1 for none, or a version number)")
        return value

    def with_(self, **changes: Any) -> "RunRecord":
        return self.model_copy(update={**changes, "updated": now_iso()})


def _check_ref(ref: str) -> str:
    parse_ref(ref)
    return ref


def new_run_id() -> str:
    alphabet = string.ascii_lowercase + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(8))


def create_run(store: Store, record: RunRecord) -> None:
    """Claim the run id exclusively: two trainings never share a run folder."""
    try:
        store.runs.write_run(record.run_id, to_json(record), create_only=True)
    except AlreadyExists:
        raise InvalidInput(
            f"{store.uri}: run {record.run_id!r} already exists; resume it or pick another --run-id"
        ) from None


def save_run(store: Store, record: RunRecord) -> None:
    store.runs.write_run(record.run_id, to_json(record))


def load_run(store: Store, run_id: str) -> RunRecord:
    """The run's record, validated, and checked to be the record of this run id."""
    data, where = store.runs.read_run(run_id)
    return parse_run(data, where, run_id)


def parse_run(data: bytes, where: str, run_id: str) -> RunRecord:
    record = parse_record(RunRecord, data, where)
    if record.run_id != run_id:
        raise InvalidInput(f"{where}: the record is of run {record.run_id!r}, not {run_id!r}")
    return record


def list_runs(store: Store) -> list[RunRecord]:
    return sorted((load_run(store, run_id) for run_id in store.runs.run_ids()), key=lambda r: r.created)


def error_line(error: BaseException) -> str:
    """What a failed run's record says: the error's type and first line, without credentials."""
    from .redact import redact

    text = str(error).strip().splitlines()
    line = f"{type(error).__name__}: {text[0]}" if text else type(error).__name__
    return redact(line)[:MAX_ERROR_CHARS]


@dataclass(frozen=True)
class ObservedRun:
    """A run as it is now: its record, its lease, and the status they say together."""

    record: RunRecord
    status: str  # the record's, except `interrupted` for a running run whose holder is gone
    lease: Any = None  # lease.LeaseRecord, read for running runs only

    @property
    def last_seen(self) -> str:
        """The run's last sign of life: its last heartbeat, else its record's last update."""
        return max(self.record.updated, self.lease.renewed) if self.lease is not None else self.record.updated

    def summary(self) -> dict[str, Any]:
        r = self.record
        held = self.lease is not None and self.status == "running"
        return {
            "run_id": r.run_id,
            "status": self.status,
            "epochs_completed": r.epochs_completed,
            "total_epochs": r.total_epochs,
            "dataset": r.dataset,
            "best_fitness": r.best_fitness,
            "metrics": r.best_metrics,
            "created": r.created,
            "last_seen": self.last_seen,
            "error": r.error,
            "holder": {"host": self.lease.host, "pid": self.lease.pid, "since": self.lease.since} if held else None,
        }


def observe(store: Store, record: RunRecord) -> ObservedRun:
    """The run's status as seen now. A `running` record is `interrupted` once its lease is not
    live (released, expired, or its process on this machine gone), or, with no lease at all,
    once the record is older than a lease would live."""
    if record.status != "running":
        return ObservedRun(record, record.status)
    held = lease.current(store, record.run_id)
    if held is not None:
        alive = held.live()
    else:
        alive = lease.seconds_since(record.updated) < lease.lease_ttl()
    return ObservedRun(record, "running" if alive else "interrupted", held)


def observe_runs(store: Store) -> list[ObservedRun]:
    return [observe(store, r) for r in list_runs(store)]


def latest_interrupted(store: Store) -> RunRecord:
    """The interrupted run last seen alive (what `train --resume` continues); a failed run is
    resumed only when named."""
    observed = observe_runs(store)
    interrupted = sorted((o for o in observed if o.status == "interrupted"), key=lambda o: o.last_seen)
    if interrupted:
        return interrupted[-1].record
    failed = [o.record.run_id for o in observed if o.status == "failed"]
    running = [o.record.run_id for o in observed if o.status == "running"]
    notes = ([f"failed: {', '.join(failed)} (resume one by id: artifactkit resume RUN_ID)"] if failed else []) + (
        [f"still running: {', '.join(running)}"] if running else []
    )
    raise NotFound(f"{store.uri}: no interrupted run to resume" + (f" ({'; '.join(notes)})" if notes else ""))


def write_epoch_metrics(store: Store, run_id: str, epoch: int, payload: dict[str, Any]) -> None:
    store.runs.write_metrics(run_id, epoch, json.dumps(payload, sort_keys=True).encode())


def read_metrics(store: Store, run_id: str) -> list[dict[str, Any]]:
    """Every epoch's metrics object, in epoch order; a damaged one is an error naming its key."""
    objects = [_metrics_object(data, where) for data, where in store.runs.read_metrics(run_id)]
    if all(o.get("generation") is None for o in objects):
        return objects  # written unfenced (a local store): nothing to sort out
    try:
        current = load_run(store, run_id).generation
    except NotFound:
        current = None
    # A takeover stamps every metrics object there is with its generation (fencing.py), so one
    # with an older stamp was created after it by a holder that had lost the run: not the run's.
    return [o for o in objects if current is None or o.get("generation") is None or o["generation"] >= current]


def _metrics_object(data: bytes, where: str) -> dict[str, Any]:
    try:
        obj = json.loads(data)
    except ValueError as e:  # JSON errors and bytes that are not UTF-8 alike
        raise InvalidInput(f"{where}: not a metrics object (not JSON: {e})") from None
    except RecursionError:
        raise too_deep(where) from None
    if not isinstance(obj, dict):
        raise InvalidInput(f"{where}: not a metrics object (a JSON {type(obj).__name__})")
    for part in ("metrics", "system"):
        if not isinstance(obj.get(part, {}), dict):
            raise InvalidInput(f"{where}: not a metrics object ({part!r} is not an object)")
    generation = obj.get("generation")  # the writer's lease generation (fencing.py)
    if generation is not None and (isinstance(generation, bool) or not isinstance(generation, int) or generation < 0):
        raise InvalidInput(f"{where}: not a metrics object (generation {generation!r})")
    epoch = obj.get("epoch", 0)
    if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
        raise InvalidInput(f"{where}: not a metrics object (epoch {epoch!r})")
    return obj
