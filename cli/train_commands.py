"""Training commands: demo-data, train, resume, runs, val (predict and export: model_commands.py)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any, Callable, Optional

import typer

from .common import JsonOpt, StorageOpts, StoreOpt, parse_storage_options
from .output import emit, table


def register(app: typer.Typer) -> None:
    app.command("demo-data")(demo_data)
    app.command("train")(train)
    app.command("resume")(resume)
    app.command("runs")(runs)
    app.command("val")(val)
    app.command("demo")(demo)


def demo_data(
    out: Annotated[Path, typer.Argument(help="Folder to write the chess dataset into")],
    n_train: Annotated[int, typer.Option(help="Training images")] = 800,
    n_val: Annotated[int, typer.Option(help="Validation images")] = 200,
    n_heldout: Annotated[int, typer.Option(help="Images in val-heldout (piece styles never trained on)")] = 200,
    imgsz: Annotated[int, typer.Option(help="Image size in pixels")] = 416,
    seed: Annotated[int, typer.Option(help="Random seed")] = 0,
    json_out: JsonOpt = False,
) -> None:
    """Generate the chess-pieces demo dataset locally (YOLO layout + data.yaml)."""
    from artifactkit.detector.chess import generate

    yaml = generate(out, n_train=n_train, n_val=n_val, n_heldout=n_heldout, imgsz=imgsz, seed=seed)
    emit(json_out, {"data_yaml": str(yaml), "train": n_train, "val": n_val, "val-heldout": n_heldout},
         f"chess dataset in {out} ({n_train} train, {n_val} val, {n_heldout} val-heldout at {imgsz} px): {yaml}")


class Printer:
    """Turns session events into lines on stderr (stdout stays for --json)."""

    def __init__(self, quiet: bool):
        self.quiet = quiet

    def __call__(self, event: str, d: dict[str, Any]) -> None:
        if event == "warning":
            print(f"warning: {d['message']}", file=sys.stderr)
        elif self.quiet:
            return
        elif event == "run":
            print(f"run {d['run_id']} on {d['dataset']}: resume with  artifactkit resume {d['uri']}", file=sys.stderr)
        elif event == "resume":
            print(f"resuming run {d['run_id']} at epoch {d['from_epoch']}/{d['epochs']} on {d['dataset']}", file=sys.stderr)
        elif event == "epoch":
            m = d["metrics"]
            print(f"epoch {d['epoch']}/{d['epochs']}  loss box {m.get('train/box_loss', 0):.3f} cls {m.get('train/cls_loss', 0):.3f}"
                  f"  mAP50 {m.get('metrics/mAP50', 0):.3f}  mAP50-95 {m.get('metrics/mAP50-95', 0):.3f}"
                  f"  {m.get('speed/train_img_s', 0):.1f} img/s  {m.get('time/epoch_s', 0):.0f}s", file=sys.stderr)
        elif event == "checkpoint":
            print(f"  saved {d['version']} ({', '.join(d['aliases'])})", file=sys.stderr)


def _is_main() -> bool:
    """Under torchrun every rank runs the command; rank 0 alone speaks for the job (and tracks it)."""
    from artifactkit.detector.distributed import World

    return World.from_env().is_main


def _follow(call: Callable[[], Any]) -> Any:
    """Run a session call; a rank that stops because rank 0 failed exits quietly (rank 0 prints)."""
    from artifactkit.errors import PeerFailed

    try:
        return call()
    except PeerFailed:
        raise typer.Exit(1) from None


def _trackers(wandb: bool, project: str | None, entity: str | None, upload_dataset: bool) -> list[Any]:
    if not wandb or not _is_main():
        return []
    from artifactkit.backends.wandb import WandbTracker

    return [WandbTracker(project=project, entity=entity, upload_dataset=upload_dataset)]


def _summary(run) -> dict[str, Any]:
    return {"run_id": run.run_id, "status": run.status, "epochs_completed": run.epochs_completed,
            "total_epochs": run.total_epochs, "dataset": run.dataset, "best_fitness": run.best_fitness,
            "metrics": run.best_metrics}


def train(
    data: Annotated[Optional[str], typer.Option(help="data.yaml, dataset folder, or NAME:VERSION in the store (default: latest dataset)")] = None,
    model: Annotated[str, typer.Option(help="Model scale: n, s or m")] = "n",
    weights: Annotated[Optional[str], typer.Option(help="Start from trained weights: a run URI, NAME:VERSION of a checkpoint, or a .safetensors / .pt file")] = None,
    epochs: Annotated[int, typer.Option(help="Epochs to train")] = 10,
    batch: Annotated[int, typer.Option(help="Batch size")] = 16,
    imgsz: Annotated[int, typer.Option(help="Image size")] = 416,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N")] = "auto",
    seed: Annotated[int, typer.Option(help="Random seed")] = 0,
    workers: Annotated[int, typer.Option(help="Data-loading worker processes")] = 2,
    optimizer: Annotated[str, typer.Option(help="auto, SGD or AdamW")] = "auto",
    save_period: Annotated[int, typer.Option(help="Save a checkpoint every N epochs (0: only the last)")] = 0,
    bbox_interval: Annotated[int, typer.Option(help="Log the bounding-box debugger and evaluation table every N epochs")] = 1,
    cache: Annotated[bool, typer.Option(help="Keep decoded images in RAM")] = False,
    compile: Annotated[bool, typer.Option(help="torch.compile the model (CUDA)")] = False,
    sync_bn: Annotated[bool, typer.Option("--sync-bn", help="SyncBatchNorm across GPUs under torchrun")] = False,
    val_split: Annotated[Optional[list[str]], typer.Option(help="Splits to validate each epoch (repeatable)")] = None,
    run_id: Annotated[Optional[str], typer.Option(help="Run id (default: random)")] = None,
    resume_latest: Annotated[bool, typer.Option("--resume", help="Resume the most recent unfinished run in the store instead")] = False,
    wandb: Annotated[bool, typer.Option("--wandb", help="Mirror the run to Weights & Biases (offline without a key)")] = False,
    project: Annotated[Optional[str], typer.Option(help="W&B project")] = None,
    entity: Annotated[Optional[str], typer.Option(help="W&B entity")] = None,
    upload_dataset: Annotated[bool, typer.Option(help="Also log the dataset to W&B as a table")] = False,
    store: StoreOpt = None,
    storage_option: StorageOpts = None,
    json_out: JsonOpt = False,
) -> None:
    """Train the YOLO detector; every epoch is recorded in the store's run."""
    from artifactkit import session

    trackers = _trackers(wandb, project, entity, upload_dataset)
    report = Printer(quiet=False)
    options = parse_storage_options(storage_option)
    if resume_latest:
        run = _follow(lambda: session.resume(None, store=store, storage_options=options, trackers=trackers, report=report))
    else:
        extra = {"val_splits": tuple(val_split)} if val_split else {}
        extra.update({"weights": weights} if weights else {})
        run = _follow(lambda: session.train(
            store, data=data, run_id=run_id, storage_options=options, trackers=trackers, report=report,
            model=model, epochs=epochs, batch=batch, imgsz=imgsz, device=device, seed=seed, workers=workers,
            optimizer=optimizer, save_period=save_period, bbox_interval=bbox_interval, cache=cache, compile=compile,
            sync_bn=sync_bn, **extra,
        ))
    if _is_main():
        emit(json_out, _summary(run), f"run {run.run_id} {run.status}: {run.epochs_completed}/{run.total_epochs} epochs")


def resume(
    uri: Annotated[str, typer.Argument(help="<store>/runs/<run-id>, or wandb-artifact://<entity>/<project>/<run-id>")],
    epochs: Annotated[Optional[int], typer.Option(help="New total epochs (extend a finished run)")] = None,
    device: Annotated[Optional[str], typer.Option(help="auto, cpu, cuda or cuda:N")] = None,
    workers: Annotated[Optional[int], typer.Option(help="Data-loading worker processes")] = None,
    batch: Annotated[Optional[int], typer.Option(help="Batch size (breaks bit-exactness)")] = None,
    wandb: Annotated[bool, typer.Option("--wandb", help="Mirror to Weights & Biases (continues the same W&B run)")] = False,
    project: Annotated[Optional[str], typer.Option(help="W&B project")] = None,
    entity: Annotated[Optional[str], typer.Option(help="W&B entity")] = None,
    storage_option: StorageOpts = None,
    json_out: JsonOpt = False,
) -> None:
    """Continue a run from its latest checkpoint, on any machine that can reach the store."""
    from artifactkit import session

    overrides = {k: v for k, v in dict(epochs=epochs, device=device, workers=workers, batch=batch).items() if v is not None}
    run = _follow(lambda: session.resume(uri, storage_options=parse_storage_options(storage_option),
                                         trackers=_trackers(wandb, project, entity, False), report=Printer(quiet=False),
                                         **overrides))
    if _is_main():
        emit(json_out, _summary(run), f"run {run.run_id} {run.status}: {run.epochs_completed}/{run.total_epochs} epochs")


def runs(store: StoreOpt = None, storage_option: StorageOpts = None, json_out: JsonOpt = False) -> None:
    """List the runs in the store: id, status, epoch, best mAP."""
    from artifactkit.runs import list_runs

    from .common import open_store

    records = list_runs(open_store(store, storage_option))
    rows = [{**_summary(r), "created": r.created} for r in records]
    if json_out:
        emit(True, {"runs": rows})
        return
    table("runs", ["run", "status", "epoch", "best mAP50", "best mAP50-95", "dataset", "created"],
          [[r["run_id"], r["status"], f"{r['epochs_completed']}/{r['total_epochs']}",
            f"{r['metrics'].get('metrics/mAP50', 0):.3f}", f"{r['metrics'].get('metrics/mAP50-95', 0):.3f}",
            r["dataset"], r["created"]] for r in rows])


def val(
    data: Annotated[str, typer.Option(help="data.yaml or dataset folder")],
    weights: Annotated[Optional[str], typer.Option(help="A run URI (<store>/runs/<id>) or a checkpoint NAME:VERSION in --store")] = None,
    preds: Annotated[Optional[Path], typer.Option(help="Score this COCO-JSON predictions file instead of a model")] = None,
    save_json: Annotated[Optional[Path], typer.Option(help="Write predictions as COCO JSON")] = None,
    split: Annotated[str, typer.Option(help="Split of data.yaml to evaluate")] = "val",
    imgsz: Annotated[int, typer.Option(help="Image size")] = 416,
    batch: Annotated[int, typer.Option(help="Batch size")] = 16,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N")] = "auto",
    store: StoreOpt = None,
    storage_option: StorageOpts = None,
    json_out: JsonOpt = False,
) -> None:
    """Score a trained model (or a COCO-JSON predictions file) on a dataset split."""
    from artifactkit import scoring
    from artifactkit.errors import InvalidInput

    if (weights is None) == (preds is None):
        raise InvalidInput("give exactly one of --weights (a model to run) or --preds (a COCO JSON to score)")
    if preds is not None:
        scores = scoring.score_predictions(preds, data, split)
    else:
        scores = scoring.evaluate_weights(weights, data, split, store=store, storage_options=parse_storage_options(storage_option),
                                          imgsz=imgsz, batch=batch, device=device, save_json=save_json)
    emit(json_out, scores, "  ".join(f"{k} {v:.4f}" for k, v in scores.items()))


def demo(
    dir: Annotated[Path, typer.Option("--dir", help="Where the demo writes its dataset, store and report")] = Path("artifactkit-demo"),
    tiny: Annotated[bool, typer.Option(help="The smallest version (for tests)")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Generate data, log it twice, train, crash, resume, verify and report: the whole story in one go."""
    from artifactkit.demo import run

    say = (lambda line: print(line, file=sys.stderr)) if json_out else print
    summary = run(dir, tiny=tiny, say=say)
    emit(json_out, summary, f"\ndemo finished in {dir}")
