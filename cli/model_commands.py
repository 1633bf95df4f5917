"""Commands on trained models: predict and export."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from artifactkit.inference import BATCH, CONF, IOU

from .common import JsonOpt, StorageOpts, StoreOpt, parse_storage_options
from .output import emit
from .words import WORDS, accepts_words

WeightsOpt = Annotated[
    Optional[str],
    typer.Option(
        "--weights",
        help="A run URI (<store>/runs/<id>: its best checkpoint, as Ultralytics' best.pt; "
        "<store>/runs/<id>:latest its latest), a run id in --store, NAME:VERSION of a checkpoint "
        "in --store (e.g. <run>-model:best), or an exported .safetensors / .pt file",
        show_default=False,
    ),
]


def register(app: typer.Typer) -> None:
    app.command("predict", context_settings=WORDS)(
        accepts_words({"model": "weights", "source": "sources"}, required=("sources", "weights"))(predict)
    )
    app.command("export", context_settings=WORDS)(
        accepts_words({"model": "weights"}, required=("weights", "out"))(export)
    )


def predict(
    ctx: typer.Context,
    sources: Annotated[
        Optional[list[str]],
        typer.Argument(help="Images, folders of images, or globs ('photos/**/*.jpg')", show_default=False),
    ] = None,
    weights: WeightsOpt = None,
    out: Annotated[
        Path, typer.Option(help="Where to write the predictions as COCO JSON (what val --preds scores)")
    ] = Path("predictions.json"),
    save_images: Annotated[
        Optional[Path], typer.Option(help="Folder for copies of the images with boxes drawn")
    ] = None,
    conf: Annotated[Optional[float], typer.Option(help=f"Confidence threshold (default: {CONF})")] = None,
    iou: Annotated[Optional[float], typer.Option(help=f"NMS IoU threshold (default: {IOU})")] = None,
    imgsz: Annotated[Optional[int], typer.Option(help="Image size (default: the model's training size)")] = None,
    device: Annotated[Optional[str], typer.Option(help="auto, cpu, cuda or cuda:N (default: auto)")] = None,
    batch: Annotated[Optional[int], typer.Option(help=f"Images per forward pass (default: {BATCH})")] = None,
    store: StoreOpt = None,
    storage_option: StorageOpts = None,
    json_out: JsonOpt = False,
) -> None:
    """Detect objects in images with a trained model; write COCO JSON and, if asked, annotated copies.
    KEY=VALUE words set the options as Ultralytics' CLI does (source=img.jpg model=RUN_URI conf=0.5)."""
    from artifactkit import inference as api

    typed = {
        k: v for k, v in dict(conf=conf, iou=iou, imgsz=imgsz, device=device, batch=batch).items() if v is not None
    }
    start = time.perf_counter()
    predictions = api.predict(
        weights,
        sources,
        store=store,
        storage_options=parse_storage_options(storage_option),
        loaded_from=lambda source: print(f"weights: {source}", file=sys.stderr),
        **typed,
    )
    seconds = time.perf_counter() - start
    boxes = api.write_json(predictions, out)
    summary = {
        "out": str(out),
        "images": len(predictions),
        "boxes": boxes,
        "seconds": round(seconds, 3),
        "images_per_s": len(predictions) / seconds if seconds > 0 else 0.0,
    }
    if save_images is not None:
        api.save_images(predictions, save_images)
        summary["save_images"] = str(save_images)
    emit(
        json_out,
        summary,
        f"{len(predictions)} images, {boxes} boxes ({summary['images_per_s']:.1f} images/s): {out}"
        + (f"; drawn in {save_images}" if save_images is not None else ""),
    )


def export(
    ctx: typer.Context,
    weights: Annotated[
        Optional[str],
        typer.Argument(
            help="A run URI (<store>/runs/<id>: its best checkpoint; "
            ":latest for the latest), a run id in --store, NAME:VERSION of a "
            "checkpoint in --store, or an exported .safetensors / .pt file",
            show_default=False,
        ),
    ] = None,
    out: Annotated[
        Optional[Path],
        typer.Argument(
            help="The file to write: .pt, .safetensors or .onnx (the suffix picks the format)", show_default=False
        ),
    ] = None,
    imgsz: Annotated[Optional[int], typer.Option(help="ONNX input size (default: the model's training size)")] = None,
    store: StoreOpt = None,
    storage_option: StorageOpts = None,
    json_out: JsonOpt = False,
) -> None:
    """Write a model's EMA weights for other tools: a state_dict (.pt), safetensors with class
    names and image size (.safetensors), or an ONNX graph with dynamic batch (.onnx).

    .pt is a plain PyTorch state_dict for artifactkit.load_model() (and --weights); unlike an
    Ultralytics .pt, Ultralytics' YOLO() cannot load it. .onnx follows Ultralytics' layout: output0
    (N, 4 + nc, A) with cx, cy, w, h in input pixels then class scores, and metadata names, imgsz,
    stride and task, so tools written for Ultralytics' ONNX exports run it."""
    from artifactkit.export import export_weights

    info = export_weights(weights, out, store=store, storage_options=parse_storage_options(storage_option), imgsz=imgsz)
    emit(json_out, info, f"wrote {out} ({info['format']}, {info['tensors']} tensors from {info['loaded']})")
