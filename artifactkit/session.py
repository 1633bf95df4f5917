"""A training run end to end: dataset in the store, run record, trainer wired to checkpoints,
metrics, evaluation tables and trackers; and resume from a run URI on any machine.

The detector knows nothing of this: it calls RunCallbacks (run_callbacks.py) at named moments.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from . import checkpoint, datasets
from .detector.config import RESUME_OVERRIDES
from .errors import InvalidInput, Stopped
from .lease import Heartbeat, Lease
from .lifecycle import full_state_name
from .records import now_iso
from .refs import find_run
from .run_callbacks import Report, RunCallbacks
from .runs import (
    RunRecord,
    check_run_id,
    create_run,
    error_line,
    load_run,
    new_run_id,
    save_run,
)
from .stopping import StopOnSignals
from .store import Store, open_store
from .tracking import FanOut, continued
from .training_lines import LogReport
from .uri import run_uri


def train(
    store: str | None = None,
    *,
    data: str | None = None,
    run_id: str | None = None,
    storage_options: dict[str, Any] | None = None,
    trackers: Sequence[Any] | None = (),
    report: Report | None = None,
    **options: Any,
) -> RunRecord:
    """Train a detector on `data` (data.yaml, dataset folder, NAME:VERSION, or the store's only
    dataset), recording everything in the store. Returns the finished run's record. `options`
    are TrainConfig keys (its defaults apply to the rest); `report(event, details)` hears the
    progress (default: standard logging, see training_lines.py).

    Idempotent with a run_id, for schedulers that re-run one command after each preemption: a
    run that exists is continued from its latest checkpoint (from epoch 1 if it has none), and a
    finished one returned as it is (event "finished"). The options given must then agree with
    the run's recorded config, except those resume may change (RESUME_OVERRIDES); its dataset is
    the recorded version. trackers=None: a continued run keeps the trackers it had. The CLI's
    --wandb/--no-wandb is trackers=tracking.choose(True/False, project=..., entity=...).

    Under torchrun every process calls this: rank 0 creates the run and alone writes to the
    store and trackers; each node pulls a stored dataset once; every rank trains its shard."""
    from .detector.distributed import process_group

    report = report or LogReport()
    with process_group() as world:
        start = world.lead(
            lambda: _new_or_existing(store, data, run_id, storage_options, trackers, report, options, world)
        )
        finished, resumed = world.broadcast((start.finished, start.state is not None) if world.is_main else None)
        if finished:
            if world.is_main and start.lease is not None:
                start.lease.release()
            return world.broadcast(start.run if world.is_main else None)
        shared = _share(world, start, storage_options)
        if resumed:
            shared.state = world.broadcast_state(start.state if world.is_main else None)
        return _run(shared, report, world, resumed=resumed)


def _new_or_existing(store, data, run_id, storage_options, trackers, report, options, world) -> "_Start":
    s = open_store(store, storage_options)
    if run_id is None or not s.runs.run_exists(check_run_id(run_id)):
        return _held(_new_run(s, data, run_id, storage_options, trackers or (), report, options, world))
    run = load_run(s, run_id)
    where = run_uri(s.uri, run_id)
    overrides = _same_config(where, run, options)
    if run.status == "finished" and "epochs" not in overrides:
        report(
            "finished",
            {
                "message": f"run {run_id} already finished ({run.epochs_completed}/{run.total_epochs} "
                f"epochs): nothing to do; {where}"
            },
        )
        return _Start(run, None, s, finished=True)
    return _claimed_and_continued(s, run, storage_options, trackers, report, overrides, world, done_is_finished=True)


def _same_config(where: str, run: RunRecord, options: dict[str, Any]) -> dict[str, Any]:
    """The options that continue an existing run: those resume may change (RESUME_OVERRIDES),
    where they differ from its recorded config. Any other key given must agree with it."""
    from .detector.config import TrainConfig

    given = TrainConfig(data="-", **options).model_dump(mode="json")  # normalised as recorded (imgsz, device)
    recorded = TrainConfig(**{**run.config, "data": "-"}).model_dump(mode="json")
    differ = {key: options[key] for key in options if given[key] != recorded[key]}
    fixed = sorted(key for key in differ if key not in RESUME_OVERRIDES)
    if fixed:
        what = ", ".join(f"{key}={recorded[key]!r} (given {given[key]!r})" for key in fixed)
        raise InvalidInput(
            f"{where} exists with {what}: a run keeps its config; re-run it with the same options, "
            "or pick another --run-id"
        )
    return differ


def _held(start: "_Start") -> "_Start":
    """A new run is held by its trainer from the moment it exists (its id was just claimed)."""
    start.lease = Lease.claim(start.store, start.run.run_id, run_uri(start.store.uri, start.run.run_id))
    start.store = start.store.fenced_by(start.lease)  # every write of the run, refused once it is taken over
    return start


def _new_run(s: Store, data, run_id, storage_options, trackers, report, options, world) -> _Start:
    from .detector.config import TrainConfig
    from .detector.distributed import rank_batch, rank_device
    from .detector.train import resolve_device

    # Everything that can be refused is checked before the dataset version and the run exist.
    run_id = check_run_id(run_id) if run_id else new_run_id()
    if s.runs.run_exists(run_id):
        raise InvalidInput(f"{s.uri}: run {run_id!r} already exists; resume it or pick another --run-id")
    config = TrainConfig(data="-", **options)  # the dataset's yaml replaces "-" once it is logged
    if "imgsz" in options and options["imgsz"] != config.imgsz:
        report(
            "warning",
            {
                "message": f"imgsz {options['imgsz']} is not a multiple of the model's stride 32: "
                f"training at {config.imgsz}"
            },
        )
    per_rank = rank_batch(config.batch, world)  # refuse a batch that does not split before a run exists
    device = rank_device(resolve_device(config.device), world)  # and a device this machine lacks
    config, weights = _starting_weights(s, config, "model" in options, storage_options)
    prepared = datasets.prepare(s, data)
    for warning in prepared.spec.warnings:
        report("warning", {"message": warning})
    datasets.check_trainable(prepared.spec, config.val_splits)
    workers = _workers(config, prepared.spec, per_rank)
    dataset = prepared.commit(s)
    config = config.replace(data=str(dataset.yaml_path))
    now = now_iso()
    run = RunRecord(
        run_id=run_id,
        created=now,
        updated=now,
        config=config.model_dump(mode="json"),
        dataset=dataset.ref,
        data_yaml=dataset.data_yaml,
        model_artifact=f"{run_id}-model",
        total_epochs=config.epochs,
        weights_from=weights.origin if weights else None,
    )
    create_run(s, run)
    report(
        "run",
        {
            "run_id": run_id,
            "uri": run_uri(s.uri, run_id),
            "dataset": dataset.ref,
            "weights": weights.source if weights else None,
            "device": str(device),
            "workers": workers,
        },
    )
    return _Start(run, config, s, dataset, trackers=trackers, weights=weights)


def _lacks_device(device: str) -> bool:
    """A recorded CUDA device on a machine without one (a GPU run resumed on a CPU machine:
    checkpoints hold plain tensors, loaded onto whatever device trains now)."""
    import torch

    if not device.startswith("cuda"):
        return False
    index = device.partition(":")[2]
    return not torch.cuda.is_available() or (index.isdigit() and int(index) >= torch.cuda.device_count())


def _starting_weights(s: Store, config, scale_given: bool, storage_options):
    """(config, Weights) for a run started from trained weights (config.weights), else (config,
    None). The weights decide the model scale unless one was given, which must then agree."""
    if config.weights is None:
        return config, None
    from .weights import read_weights

    weights = read_weights(config.weights, s.url, storage_options)
    if scale_given and config.model != weights.scale:
        raise InvalidInput(
            f"{weights.source}: weights of a YOLO-{weights.scale} cannot start a YOLO-{config.model} "
            f"(give model {weights.scale}, or leave it out)"
        )
    return config.replace(model=weights.scale), weights


def resume(
    uri: str | None = None,
    *,
    store: str | None = None,
    storage_options: dict[str, Any] | None = None,
    trackers: Sequence[Any] | None = None,
    report: Report | None = None,
    **overrides: Any,
) -> RunRecord:
    """Continue a run from its latest checkpoint: `<store>/runs/<id>`, a run id in `store`, or
    with uri=None the most recent interrupted run in `store` (never a failed one: name it).
    trackers=None continues the trackers the run had (its W&B run); a list replaces them ([]:
    none). One process at a time holds a run (lease.py): a second resume is refused (RunHeld).
    Allowed overrides: RESUME_OVERRIDES.

    Under torchrun rank 0 reads the run and its checkpoint and sends the state to the other
    ranks (one read of the store, and no rank can load another version)."""
    from .detector.distributed import process_group

    report = report or LogReport()
    bad = sorted(set(overrides) - set(RESUME_OVERRIDES) - {"batch"})  # batch: _continue says why not
    if bad:
        raise InvalidInput(f"cannot change {', '.join(bad)} on resume (allowed: {', '.join(RESUME_OVERRIDES)})")
    with process_group() as world:
        start = world.lead(
            lambda: _claimed_and_continued(
                *find_run(uri, store, storage_options), storage_options, trackers, report, overrides, world
            )
        )
        shared = _share(world, start, storage_options)
        shared.state = world.broadcast_state(start.state if world.is_main else None)
        return _run(shared, report, world, resumed=True)


def _repair_aliases(s: Store, name: str, epoch: int) -> None:
    """Aliases are written after the version record, so a kill in between leaves the latest
    checkpoint without its epoch-<E> alias (and possibly `best` unset): restore them before the
    run and its mirrors go on. `best` is recomputed from the versions' recorded fitness. A
    checkpoint from inside an epoch has no epoch alias."""
    latest = s.resolve(f"{name}:latest")
    aliases = s.aliases(name)
    if not latest.metadata.get("batch") and aliases.get(f"epoch-{epoch}") != latest.version:
        s.set_alias(name, f"epoch-{epoch}", latest.version)
    if "best" not in aliases:
        infos = [i.record for i in s.versions(name) if not i.record.metadata.get("batch")]  # whole epochs only
        if infos:
            best = max(infos, key=lambda r: (r.metadata.get("fitness") or 0.0, -r.version))
            s.set_alias(name, "best", best.version)


def _claimed_and_continued(
    s: Store, run: RunRecord, storage_options, trackers, report, overrides, world, done_is_finished: bool = False
) -> _Start:
    where = run_uri(s.uri, run.run_id)
    lease = Lease.claim(s, run.run_id, where)  # before anything is written (a second resume stops here)
    s = s.fenced_by(lease)  # every write of the run, refused once it is taken over
    try:
        # no earlier holder's write lands after this (S3: fencing.py), then the state is read
        s.runs.take_over(
            run.run_id, lease.generation, [run.model_artifact, full_state_name(run.run_id), f"{run.run_id}-evaluation"]
        )
        run = load_run(s, run.run_id)  # as its last holder left it
        if trackers is None:  # the run's own: a run trained with --wandb keeps its W&B run
            trackers = continued(run.trackers, lambda msg: report("warning", {"message": msg}))
        start = _continue(s, run, trackers, report, overrides, world, storage_options, done_is_finished)
    except BaseException:
        lease.release()
        raise
    start.lease = lease
    return start


def _continue(
    s: Store, run: RunRecord, trackers, report, overrides, world, storage_options=None, done_is_finished: bool = False
) -> "_Start":
    """The run ready to go on from its latest checkpoint. done_is_finished (train --run-id): a run
    whose last epoch was saved but whose end was never recorded (killed in between) is recorded
    finished and returned as such, instead of refused."""
    from .detector.config import TrainConfig
    from .detector.distributed import rank_batch, rank_device
    from .detector.state import check_state_keys
    from .detector.train import resolve_device
    from .yolo import load_data_config

    where = run_uri(s.uri, run.run_id)
    overrides = dict(overrides)
    batch = overrides.pop("batch", run.config.get("batch"))
    if batch != run.config.get("batch"):
        raise InvalidInput(
            f"{where}: --batch {batch}: the run trains at batch {run.config.get('batch')}, on which its "
            "learning-rate schedule, gradient accumulation and data order depend (a new batch size "
            f"is a new run: train --weights {where})"
        )
    if run.dataset is None:
        raise InvalidInput(f"{where}: the run records no dataset version")
    if not s.version_numbers(run.model_artifact):  # stopped before its first checkpoint: nothing to lose
        state, done, batch_done, batches, saved = None, 0, 0, None, dict(run.config)
        report(
            "warning",
            {"message": f"{where} has no checkpoint yet: starting it again from epoch 1 with its recorded config"},
        )
    else:
        record = s.resolve(f"{run.model_artifact}:latest")
        state = checkpoint.load_full(s, run.model_artifact, full_state_name(run.run_id), record)
        check_state_keys(state, f"{s.uri}: {run.model_artifact}:latest {checkpoint.SKELETON}")
        done, batch_done, saved = int(state["epoch"]), int(state.get("batch") or 0), state["config"]
        batches = record.metadata.get("batches")
        if done < run.epochs_completed:  # a record written before checkpoints waited for it
            report(
                "warning",
                {
                    "message": f"{where} recorded {_epochs(run.epochs_completed)} but its latest "
                    f"checkpoint is of epoch {done}: epochs {done + 1}-{run.epochs_completed} "
                    "are trained again"
                },
            )
        _repair_aliases(s, run.model_artifact, done)
    epochs = overrides.pop("epochs", None)
    if epochs is None and done >= run.total_epochs and done_is_finished and not batch_done:
        run = run.with_(status="finished", error=None, epochs_completed=done)
        save_run(s, run)
        report(
            "finished",
            {
                "message": f"run {run.run_id} already finished ({done}/{run.total_epochs} epochs): "
                f"nothing to do; {where}"
            },
        )
        return _Start(run, None, s, finished=True)
    if epochs is None and done >= run.total_epochs:
        raise InvalidInput(f"{where} finished all {done} epochs; pass --epochs N to extend it")
    if run.stopped_early and "patience" not in overrides:
        raise InvalidInput(
            f"{where} stopped early after epoch {done} ({run.stopped_early}); "
            "pass --patience N (more epochs, or 0: never stop) to continue it"
        )
    dataset = datasets.materialise(s, run.dataset, run.data_yaml)
    saved = {**saved, **overrides, "data": str(dataset.yaml_path)}
    if "device" not in overrides and _lacks_device(str(saved.get("device", "auto"))):
        report(
            "warning",
            {
                "message": f"{where} trained on {saved['device']}, which this machine lacks: resuming on "
                "the device 'auto' picks (--device to choose)"
            },
        )
        saved["device"] = "auto"
    if epochs is not None:
        saved["epochs"] = epochs
    config = TrainConfig(**saved)
    device = rank_device(resolve_device(config.device), world)
    workers = _workers(config, load_data_config(dataset.yaml_path), rank_batch(config.batch, world))
    weights = None
    if state is None:  # a restart starts from what the run started from
        config, weights = _starting_weights(s, config, True, storage_options)
    run = run.with_(
        status="running",
        error=None,
        total_epochs=config.epochs,
        config=config.model_dump(mode="json"),
        stopped_early=None,
    )
    save_run(s, run)
    shown = (
        f"{record.name}:{record.label}" if state is not None else (weights.shown if weights else "none (from scratch)")
    )
    report(
        "resume",
        {
            "run_id": run.run_id,
            "uri": where,
            "from_epoch": done + 1,
            "epochs": config.epochs,
            "dataset": dataset.ref,
            "from_batch": batch_done,
            "batches": batches,
            "weights": shown,
            "device": str(device),
            "workers": workers,
        },
    )
    return _Start(run, config, s, dataset, state=state, trackers=trackers, weights=weights)


def _workers(config, spec, batch: int) -> int:
    """The data-loading workers the trainer will run (detector.data.effective_workers)."""
    from .detector.data import effective_workers

    return effective_workers(config.workers, len(spec.splits["train"].images), batch)[0]


def _epochs(n: int) -> str:
    return f"{n} epoch" + ("" if n == 1 else "s")


@dataclass
class _Start:
    """What a rank needs to train. Rank 0 builds it; the others get the run and config (see
    _share), never the store handle, dataset record or trackers, which only rank 0 uses."""

    run: RunRecord
    config: Any  # TrainConfig (imported lazily: importing artifactkit does not import torch)
    store: Store | None = None
    dataset: datasets.LocalDataset | None = None
    state: dict[str, Any] | None = None  # the checkpoint to continue from
    trackers: Sequence[Any] = ()
    weights: Any = None  # weights.Weights to start from (rank 0 only: DDP copies its model to the others)
    lease: Lease | None = None  # rank 0's hold on the run (lease.py)
    finished: bool = False  # train(run_id=...) of a run that finished: nothing to do


def _share(world, start: _Start | None, storage_options) -> _Start:
    """Rank 0's run and config on every rank, each with this node's copy of the dataset: the
    node's local rank 0 pulls it, the others wait and then find its files already there."""
    from .detector.config import TrainConfig

    if not world.distributed:
        return start
    plan = None
    if world.is_main:
        plan = {
            "run": start.run,
            "config": start.config.model_dump(mode="json"),
            "store": start.store.url,
            "dataset": start.dataset.ref,
            "data_yaml": start.dataset.data_yaml,
            "folder": str(start.dataset.root.resolve()) if start.dataset.in_place else None,
        }
    plan = world.broadcast(plan)
    yaml = str(start.dataset.yaml_path) if world.is_main else None
    if world.local_rank == 0 and yaml is None:
        yaml = _node_dataset(plan, storage_options)
    world.barrier()  # every node's copy is complete before its other ranks look at it
    if yaml is None:
        yaml = _node_dataset(plan, storage_options)
    if world.is_main:
        return start
    return _Start(plan["run"], TrainConfig(**{**plan["config"], "data": yaml}))


def _node_dataset(plan: dict[str, Any], storage_options) -> str:
    """data.yaml of this node's copy: rank 0's own folder when it trains one in place (every node
    must then see it at the same path), else the version pulled into this machine's cache."""
    if plan["folder"] is not None:
        return str(Path(plan["folder"]) / plan["data_yaml"])
    s = open_store(plan["store"], storage_options)
    return str(datasets.materialise(s, plan["dataset"], plan["data_yaml"]).yaml_path)


def _run(start: _Start, report, world, resumed: bool) -> RunRecord:
    from .detector.train import Trainer

    warn = lambda msg: report("warning", {"message": msg})  # noqa: E731
    if not world.is_main:  # trains its shard; rank 0 writes everything, then shares the result
        with StopOnSignals(start.config.stop_grace, warn) as signals:
            trainer = Trainer(start.config, world=world)
            _load_state(trainer, start, report=report)
            signals.attach(trainer)
            trainer.fit()
        return world.broadcast(None)
    s, run, dataset = start.store, start.run, start.dataset
    heartbeat = Heartbeat(start.lease, warn).start() if start.lease is not None else None
    try:
        with StopOnSignals(start.config.stop_grace, warn) as signals:
            fan = FanOut(start.trackers, warn)
            infos = fan.call("start", run, resumed)
            if any(infos.values()):
                run = run.with_(trackers={**run.trackers, **{k: v for k, v in infos.items() if v}})
                save_run(s, run)
            callbacks = RunCallbacks(s, run, dataset, fan, report, start.lease)
            metrics = _fit(start, callbacks, report, world, signals)
    finally:
        if heartbeat is not None:
            heartbeat.close()  # and release the run
    report("done", {"run_id": run.run_id, "uri": run_uri(s.uri, run.run_id), "metrics": metrics})
    return world.broadcast(callbacks.run)


def _fit(start: _Start, callbacks: RunCallbacks, report, world, signals: StopOnSignals) -> dict[str, float]:
    """Train rank 0, recording how it ended: `failed` with the error if anything raised (the
    trainer's set-up included), `interrupted` on a stop signal (saved where it stood) or Ctrl-C."""
    from .detector.train import Trainer

    s, run = start.store, callbacks.run
    trainer = None
    try:
        callbacks.trackers.call("log_dataset", start.dataset, s)
        weights = start.weights
        trainer = Trainer(
            start.config,
            callbacks=[callbacks],
            world=world,
            weights=weights.state if weights else None,
            weights_from=weights.source if weights else "weights",
        )
        if trainer.pretrained_note:
            report("warning", {"message": trainer.pretrained_note})
        _load_state(trainer, start, run_uri(s.uri, run.run_id), report)
        signals.attach(trainer)
        metrics = trainer.fit()
    except BaseException as error:
        interrupted = isinstance(error, KeyboardInterrupt)
        try:
            callbacks.finish("interrupted" if interrupted else "failed", None if interrupted else error_line(error))
        except Exception as also:  # keep the original error; say what else went wrong
            report("warning", {"message": f"while stopping after {type(error).__name__}: {also}"})
            raise
        if isinstance(error, Stopped):
            where = run_uri(s.uri, run.run_id)
            line = (
                _interrupted_line(trainer, where)
                if error.saved
                else f"{error}: resume from the last checkpoint with artifactkit resume {where}"
            )
            report("interrupted", {"message": line})
            raise Stopped(line, error.signum, error.saved) from None
        raise
    callbacks.finish("finished")
    return metrics


def _interrupted_line(trainer, uri: str) -> str:
    """Where a stopped run stands, and the command that continues it."""
    epoch, batch = (trainer.epoch + 1, trainer.batch) if trainer.batch else (trainer.epoch, trainer.batches)
    return f"interrupted at epoch {epoch}, batch {batch}/{trainer.batches}: resume with artifactkit resume {uri}"


def _load_state(trainer, start: _Start, where: str | None = None, report: Report | None = None) -> None:
    if start.state is None:
        return
    try:
        trainer.load_state_dict(start.state)
    except RuntimeError as e:  # torch's shape mismatch: the checkpoint is not this model
        raise InvalidInput(
            f"{where or start.run.run_id}: checkpoint does not fit a YOLO-{start.config.model} "
            f"with {trainer.model.nc} classes ({str(e).splitlines()[0]})"
        ) from None
    if trainer.schedule_note and trainer.world.is_main:
        report("warning", {"message": trainer.schedule_note})
