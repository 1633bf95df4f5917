"""Training commands: demo-data, train, resume, val, demo (predict and export: model_commands.py;
the `runs` group: lifecycle_commands.py)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any, Callable, Optional

import typer

from .common import JsonOpt, StorageOpts, StoreOpt, parse_storage_options
from .config_options import AUTO_WORKERS, MIN_BATCHES_FOR_WORKERS, SetOpt, default, typed_options
from .output import emit, table
from .training_bar import TrainingProgress
from .words import WORDS, accepts_words, extra_words, take

SAVE_EVERY_HELP = (
    "Also save inside an epoch once this long passed since the last checkpoint: 90s, 10m, 2h "
    "(Ultralytics HUB: every 15 min); resuming from one is bit-exact"
)
RUN_ID_HELP = (
    "Run id (default: random). If the run exists, continue it: resume it from its latest checkpoint (from "
    "epoch 1 if it has none), or print one line and exit 0 if it finished, so a job script can re-run the "
    "same line after every preemption (options must agree with the run's)"
)
VAL_WEIGHTS_HELP = (
    "A run URI (<store>/runs/<id>: its best checkpoint; <store>/runs/<id>:latest its latest), a run "
    "id in --store, a checkpoint NAME:VERSION in --store, or an exported .safetensors / .pt file"
)
STOP_GRACE_HELP = (
    "Seconds a stop (Ctrl-C, SIGTERM, SIGUSR1) may take to reach a batch boundary and save; past "
    "them the process exits without saving, and the run resumes from its last checkpoint. 0: no limit"
)


def register(app: typer.Typer) -> None:
    app.command("demo-data")(demo_data)
    app.command("train", context_settings=WORDS)(train)
    app.command("resume")(resume)
    app.command("val", context_settings=WORDS)(accepts_words({"model": "weights"}, required=("data",))(val))
    app.command("demo")(demo)


def demo_data(
    out: Annotated[Path, typer.Argument(help="Folder to write the chess dataset into")],
    n_train: Annotated[Optional[int], typer.Option(help="Training images (default: 800)")] = None,
    n_val: Annotated[Optional[int], typer.Option(help="Validation images (default: 200)")] = None,
    n_heldout: Annotated[
        Optional[int], typer.Option(help="Images in val-heldout (piece styles never trained on) (default: 200)")
    ] = None,
    imgsz: Annotated[Optional[int], typer.Option(help="Image size in pixels (default: 416)")] = None,
    seed: Annotated[Optional[int], typer.Option(help="Random seed (default: 0)")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Generate the chess-pieces demo dataset locally (YOLO layout + data.yaml)."""
    from artifactkit.detector.chess import DEFAULTS, generate

    given = {"n_train": n_train, "n_val": n_val, "n_heldout": n_heldout, "imgsz": imgsz, "seed": seed}
    given = {k: v for k, v in given.items() if v is not None}
    yaml = generate(out, **given)
    n = {**DEFAULTS, **given}  # what generate used, for the summary line
    emit(
        json_out,
        {"data_yaml": str(yaml), "train": n["n_train"], "val": n["n_val"], "val-heldout": n["n_heldout"]},
        f"chess dataset in {out} ({n['n_train']} train, {n['n_val']} val, {n['n_heldout']} val-heldout at "
        f"{n['imgsz']} px): {yaml}",
    )


def _is_main() -> bool:
    """Under torchrun every rank runs the command; rank 0 alone speaks for the job (and tracks it)."""
    from artifactkit.detector.distributed import World

    return World.from_env().is_main


def _follow(call: Callable[[], Any]) -> Any:
    """Run a session call; a rank that stops because rank 0 failed exits quietly (rank 0 prints).
    A stop signal ends with the one line saying where the run saved and how to resume it, and
    exit status 128 + the signal's number (typer would turn it into a silent 130)."""
    from artifactkit.errors import PeerFailed, Stopped

    try:
        return call()
    except PeerFailed:
        raise typer.Exit(1) from None
    except Stopped as stop:
        if _is_main():
            from .main import _fail

            _fail(str(stop), str(stop), "Interrupted", 128 + (stop.signum or 2))
        raise typer.Exit(128 + (stop.signum or 2)) from None


def _summary(run) -> dict[str, Any]:
    return {
        "run_id": run.run_id,
        "status": run.status,
        "epochs_completed": run.epochs_completed,
        "total_epochs": run.total_epochs,
        "dataset": run.dataset,
        "best_fitness": run.best_fitness,
        "metrics": run.best_metrics,
        "error": run.error,
    }


def train(
    ctx: typer.Context,
    data: Annotated[
        Optional[str],
        typer.Option(
            help="data.yaml, dataset folder, or NAME[:VERSION] in the store (default: the store's dataset, if it "
            "holds only one)"
        ),
    ] = None,
    model: Annotated[
        Optional[str], typer.Option(help="Model scale: n, s or m" + default("model"), show_default=False)
    ] = None,
    weights: Annotated[
        Optional[str],
        typer.Option(
            help="Start from trained weights: a run URI, a run id or NAME:VERSION of a checkpoint in --store, or a "
            ".safetensors / .pt file"
        ),
    ] = None,
    epochs: Annotated[
        Optional[int], typer.Option(help="Epochs to train" + default("epochs"), show_default=False)
    ] = None,
    batch: Annotated[Optional[int], typer.Option(help="Batch size" + default("batch"), show_default=False)] = None,
    imgsz: Annotated[
        Optional[int],
        typer.Option(help="Image size, rounded up to a multiple of 32" + default("imgsz"), show_default=False),
    ] = None,
    device: Annotated[
        Optional[str],
        typer.Option(help="auto, cpu, cuda, cuda:N or N; N,M under torchrun" + default("device"), show_default=False),
    ] = None,
    seed: Annotated[Optional[int], typer.Option(help="Random seed" + default("seed"), show_default=False)] = None,
    workers: Annotated[
        Optional[int],
        typer.Option(
            help=f"Data-loading worker processes (default: {AUTO_WORKERS}, but none for an epoch of under "
            f"{MIN_BATCHES_FOR_WORKERS} batches, whose start-up would cost more than it saves; at most the CPU "
            f"cores)",
            show_default=False,
        ),
    ] = None,
    optimizer: Annotated[
        Optional[str], typer.Option(help="auto, SGD or AdamW" + default("optimizer"), show_default=False)
    ] = None,
    patience: Annotated[
        Optional[int],
        typer.Option(
            help="Stop after N epochs without improvement, 0: never" + default("patience"), show_default=False
        ),
    ] = None,
    save_period: Annotated[
        Optional[int],
        typer.Option(
            help="Save a checkpoint every N epochs, 0: only the last" + default("save_period"), show_default=False
        ),
    ] = None,
    keep_last: Annotated[
        Optional[int],
        typer.Option(
            help="Keep the N newest checkpoints (plus best and hand-aliased ones), deleting older ones as training "
            "goes; default: keep all",
            show_default=False,
        ),
    ] = None,
    keep_within: Annotated[
        Optional[str],
        typer.Option(
            help="Also keep checkpoints created within this long of the newest: 12h, 7d, 4w, 1y (rules add up, as "
            "`prune`)",
            show_default=False,
        ),
    ] = None,
    keep_daily: Annotated[
        Optional[int],
        typer.Option(help="Also keep the newest checkpoint of each of the N latest days", show_default=False),
    ] = None,
    keep_weekly: Annotated[
        Optional[int],
        typer.Option(help="Also keep the newest checkpoint of each of the N latest ISO weeks", show_default=False),
    ] = None,
    keep_full: Annotated[
        Optional[int],
        typer.Option(
            help="Only the N newest checkpoints keep the full training state that resume needs (optimizer, RNG); "
            "older ones keep EMA weights and metadata (what val, export and fine-tuning use). Ultralytics strips "
            "the optimizer from best.pt alone" + default("keep_full"),
            show_default=False,
        ),
    ] = None,
    save_every: Annotated[Optional[str], typer.Option(help=SAVE_EVERY_HELP, show_default=False)] = None,
    stop_grace: Annotated[
        Optional[float], typer.Option(help=STOP_GRACE_HELP + default("stop_grace"), show_default=False)
    ] = None,
    bbox_interval: Annotated[
        Optional[int],
        typer.Option(
            help="Log the bounding-box debugger and evaluation table every N epochs" + default("bbox_interval"),
            show_default=False,
        ),
    ] = None,
    cache: Annotated[
        Optional[bool],
        typer.Option("--cache/--no-cache", help="Keep decoded images in RAM" + default("cache"), show_default=False),
    ] = None,
    compile: Annotated[
        Optional[bool],
        typer.Option(
            "--compile/--no-compile", help="torch.compile the model (CUDA)" + default("compile"), show_default=False
        ),
    ] = None,
    sync_bn: Annotated[
        Optional[bool],
        typer.Option(
            "--sync-bn/--no-sync-bn",
            help="SyncBatchNorm across GPUs under torchrun" + default("sync_bn"),
            show_default=False,
        ),
    ] = None,
    val_split: Annotated[
        Optional[list[str]], typer.Option(help="Splits to validate each epoch (repeatable; default: val)")
    ] = None,
    set_: SetOpt = None,
    run_id: Annotated[Optional[str], typer.Option(help=RUN_ID_HELP)] = None,
    resume_latest: Annotated[
        bool,
        typer.Option(
            "--resume",
            help="Resume the most recent interrupted run in the store instead (a failed one: artifactkit resume "
            "RUN_ID)",
        ),
    ] = False,
    wandb: Annotated[
        Optional[bool],
        typer.Option(
            "--wandb/--no-wandb",
            help="Mirror the run to Weights & Biases (offline without a key); with --resume the run's own W&B run is "
            "continued unless --no-wandb",
            show_default=False,
        ),
    ] = None,
    project: Annotated[Optional[str], typer.Option(help="W&B project")] = None,
    entity: Annotated[Optional[str], typer.Option(help="W&B entity")] = None,
    upload_dataset: Annotated[bool, typer.Option(help="Also log the dataset to W&B as a table")] = False,
    store: StoreOpt = None,
    storage_option: StorageOpts = None,
    json_out: JsonOpt = False,
) -> None:
    """Train the YOLO detector; every epoch is recorded in the store's run. Defaults are TrainConfig's,
    the same as artifactkit.train(). Ultralytics' KEY=VALUE words work too (data=chess epochs=1):
    `data` and any --set key."""
    from artifactkit import session
    from artifactkit.tracking import choose as choose_trackers

    words = extra_words(ctx)
    data = take(words, "data", data, "--data")
    options = typed_options(
        {
            "model": ("--model", model),
            "weights": ("--weights", weights),
            "epochs": ("--epochs", epochs),
            "batch": ("--batch", batch),
            "imgsz": ("--imgsz", imgsz),
            "device": ("--device", device),
            "seed": ("--seed", seed),
            "workers": ("--workers", workers),
            "optimizer": ("--optimizer", optimizer),
            "patience": ("--patience", patience),
            "save_period": ("--save-period", save_period),
            "keep_last": ("--keep-last", keep_last),
            "keep_within": ("--keep-within", keep_within),
            "keep_daily": ("--keep-daily", keep_daily),
            "keep_weekly": ("--keep-weekly", keep_weekly),
            "keep_full": ("--keep-full", keep_full),
            "save_every": ("--save-every", save_every),
            "stop_grace": ("--stop-grace", stop_grace),
            "bbox_interval": ("--bbox-interval", bbox_interval),
            "cache": ("--cache", cache),
            "compile": ("--compile", compile),
            "sync_bn": ("--sync-bn", sync_bn),
            "val_splits": ("--val-split", tuple(val_split) if val_split else None),
        },
        set_,
        words,
    )
    trackers = choose_trackers(wandb, project, entity, upload_dataset)
    storage = parse_storage_options(storage_option)
    with TrainingProgress() as report:
        if resume_latest:
            run = _follow(
                lambda: session.resume(
                    None, store=store, storage_options=storage, trackers=trackers, report=report, **options
                )
            )
        else:
            run = _follow(
                lambda: session.train(
                    store,
                    data=data,
                    run_id=run_id,
                    storage_options=storage,
                    trackers=trackers,
                    report=report,
                    **options,
                )
            )
    if _is_main():
        emit(json_out, _summary(run), _done_line(run, already=report.already_finished))


def _done_line(run, already: bool = False) -> str:
    stopped = f" (stopped early: {run.stopped_early})" if run.stopped_early else ""
    nothing = " (already: nothing to do)" if already else ""
    return f"run {run.run_id} {run.status}: {run.epochs_completed}/{run.total_epochs} epochs{stopped}{nothing}"


def resume(
    uri: Annotated[
        Optional[str],
        typer.Argument(
            help="<store>/runs/<run-id>, a run id in --store, or wandb-artifact://<entity>/<project>/<run-id> "
            "(default: the most recent interrupted run in --store)",
            show_default=False,
        ),
    ] = None,
    epochs: Annotated[Optional[int], typer.Option(help="New total epochs (extend a finished run)")] = None,
    device: Annotated[Optional[str], typer.Option(help="auto, cpu, cuda, cuda:N or N")] = None,
    workers: Annotated[Optional[int], typer.Option(help="Data-loading worker processes")] = None,
    batch: Annotated[Optional[int], typer.Option(help="Must be the run's own (data order depends on it)")] = None,
    patience: Annotated[Optional[int], typer.Option(help="Stop after N epochs without improvement, 0: never")] = None,
    keep_last: Annotated[
        Optional[int], typer.Option(help="Keep the N newest checkpoints (plus best and hand-aliased ones) from now on")
    ] = None,
    keep_within: Annotated[
        Optional[str],
        typer.Option(help="Also keep checkpoints created within this long of the newest (12h, 7d, 4w, 1y)"),
    ] = None,
    keep_daily: Annotated[
        Optional[int], typer.Option(help="Also keep the newest checkpoint of each of the N latest days")
    ] = None,
    keep_weekly: Annotated[
        Optional[int], typer.Option(help="Also keep the newest checkpoint of each of the N latest ISO weeks")
    ] = None,
    keep_full: Annotated[
        Optional[int], typer.Option(help="Only the N newest checkpoints keep the full training state from now on")
    ] = None,
    save_every: Annotated[Optional[str], typer.Option(help=SAVE_EVERY_HELP, show_default=False)] = None,
    stop_grace: Annotated[Optional[float], typer.Option(help=STOP_GRACE_HELP, show_default=False)] = None,
    set_: SetOpt = None,
    wandb: Annotated[
        Optional[bool],
        typer.Option(
            "--wandb/--no-wandb",
            help="Mirror to Weights & Biases; by default a run trained with --wandb keeps mirroring to its W&B run",
            show_default=False,
        ),
    ] = None,
    project: Annotated[Optional[str], typer.Option(help="W&B project")] = None,
    entity: Annotated[Optional[str], typer.Option(help="W&B entity")] = None,
    store: StoreOpt = None,
    storage_option: StorageOpts = None,
    json_out: JsonOpt = False,
) -> None:
    """Continue a run from its latest checkpoint, on any machine that can reach the store, with
    the trackers it had. One process at a time holds a run: a second resume is refused.
    Keys that may change: see `--set` (epochs, device, workers, batch, patience, save_period, ...)."""
    from artifactkit import session
    from artifactkit.tracking import choose as choose_trackers

    overrides = typed_options(
        {
            "epochs": ("--epochs", epochs),
            "device": ("--device", device),
            "workers": ("--workers", workers),
            "batch": ("--batch", batch),
            "patience": ("--patience", patience),
            "keep_last": ("--keep-last", keep_last),
            "keep_within": ("--keep-within", keep_within),
            "keep_daily": ("--keep-daily", keep_daily),
            "keep_weekly": ("--keep-weekly", keep_weekly),
            "keep_full": ("--keep-full", keep_full),
            "save_every": ("--save-every", save_every),
            "stop_grace": ("--stop-grace", stop_grace),
        },
        set_,
    )
    with TrainingProgress() as report:
        run = _follow(
            lambda: session.resume(
                uri,
                store=store,
                storage_options=parse_storage_options(storage_option),
                trackers=choose_trackers(wandb, project, entity, False),
                report=report,
                **overrides,
            )
        )
    if _is_main():
        emit(json_out, _summary(run), _done_line(run))


def val(
    ctx: typer.Context,
    data: Annotated[
        Optional[str],
        typer.Option(
            help="data.yaml, dataset folder, or NAME:VERSION of a dataset in --store (else the weights' store)",
            show_default=False,
        ),
    ] = None,
    weights: Annotated[Optional[str], typer.Option(help=VAL_WEIGHTS_HELP)] = None,
    preds: Annotated[
        Optional[Path], typer.Option(help="Score this COCO-JSON predictions file instead of a model")
    ] = None,
    save_json: Annotated[Optional[Path], typer.Option(help="Write predictions as COCO JSON")] = None,
    split: Annotated[str, typer.Option(help="Split of data.yaml to evaluate")] = "val",
    imgsz: Annotated[
        Optional[int], typer.Option(help="Image size (default: the size the model was trained at)")
    ] = None,
    batch: Annotated[Optional[int], typer.Option(help="Batch size (default: 16)", show_default=False)] = None,
    device: Annotated[
        Optional[str], typer.Option(help="auto, cpu, cuda, cuda:N or N (default: auto)", show_default=False)
    ] = None,
    conf: Annotated[
        Optional[float],
        typer.Option(
            min=0.0, max=1.0, help="Drop detections below this confidence (default: 0.001 for a model, 0 for --preds)"
        ),
    ] = None,
    iou: Annotated[Optional[float], typer.Option(min=0.0, max=1.0, help="NMS IoU threshold (default: 0.7)")] = None,
    store: StoreOpt = None,
    storage_option: StorageOpts = None,
    json_out: JsonOpt = False,
) -> None:
    """Score a trained model (or a COCO-JSON predictions file) on a dataset split: overall and per class.
    KEY=VALUE words set the options as Ultralytics' CLI does (data=chess model=RUN_URI conf=0.25)."""
    from artifactkit import val as api

    scores, warnings = api.val(
        data,
        split,
        weights=weights,
        preds=preds,
        store=store,
        storage_options=parse_storage_options(storage_option),
        imgsz=imgsz,
        batch=batch,
        device=device,
        conf=conf,
        iou=iou,
        save_json=save_json,
    )
    if "weights" in scores:
        print(f"weights: {scores['weights']}", file=sys.stderr)
    for line in warnings:
        print(f"warning: {line}", file=sys.stderr)
    if json_out:
        emit(True, scores)
        return
    _class_table(scores)


def _class_table(scores: dict[str, Any]) -> None:
    """Ultralytics' val table: one 'all' row, then one per class."""
    metrics = {k.rsplit("/", 1)[-1]: v for k, v in scores["metrics"].items()}
    rows = [
        [
            "all",
            scores["images"],
            sum(c["instances"] for c in scores["classes"]),
            metrics["precision"],
            metrics["recall"],
            metrics["mAP50"],
            metrics["mAP50-95"],
        ]
    ]
    rows += [
        [c["class"], c["images"], c["instances"], c["precision"], c["recall"], c["mAP50"], c["mAP50-95"]]
        for c in scores["classes"]
    ]
    size = f" at {scores['imgsz']} px" if "imgsz" in scores else ""
    table(
        f"{scores['split']}{size}",
        ["class", "images", "instances", "P", "R", "mAP50", "mAP50-95"],
        [[*r[:3], *("–" if v is None else f"{v:.3f}" for v in r[3:])] for r in rows],
    )


def demo(
    dir: Annotated[Path, typer.Option("--dir", help="Where the demo writes its dataset, store and report")] = Path(
        "artifactkit-demo"
    ),
    tiny: Annotated[bool, typer.Option(help="The smallest version (for tests)")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Generate data, log it twice, train, crash, resume, verify and report: the whole story in one go."""
    from artifactkit.demo import run

    say = (lambda line: print(line, file=sys.stderr)) if json_out else print
    summary = run(dir, tiny=tiny, say=say)  # its last line names the report
    emit(json_out, summary)
