"""view: one self-contained HTML report of runs and/or a dataset version, readable offline."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from .common import JsonOpt, StorageOpts, StoreOpt, parse_storage_options
from .output import emit, human_bytes


def register(app: typer.Typer) -> None:
    app.command("view")(view)


def view(
    targets: Annotated[
        list[str],
        typer.Argument(
            help="Run URIs (<store>/runs/<id>, several overlay their curves) and/or one dataset NAME:VERSION in --store"
        ),
    ],
    out: Annotated[
        Optional[Path],
        typer.Option(
            "--out",
            help="HTML file to write (default: ./artifactkit-<run-id>.html or ./artifactkit-<name>-<version>.html)",
        ),
    ] = None,
    dataset_browser: Annotated[
        bool, typer.Option("--dataset/--no-dataset", help="Browse the run's dataset version too")
    ] = True,
    max_dataset_images: Annotated[
        Optional[int],
        typer.Option(
            help="Dataset images embedded at most (each split in proportion beyond it; default: the viewer's, 2000)",
            show_default=False,
        ),
    ] = None,
    open_browser: Annotated[bool, typer.Option("--open", help="Open the report in the default web browser")] = False,
    store: StoreOpt = None,
    storage_option: StorageOpts = None,
    json_out: JsonOpt = False,
) -> None:
    """Write a report you can open without a server or an account: metric curves, the
    bounding-box debugger, the evaluation table and the dataset browser grouped by class."""
    from artifactkit.viewer import build_report
    from artifactkit.viewer.targets import split_targets

    options = parse_storage_options(storage_option)
    runs, dataset = split_targets(targets, store, options)
    limit = {} if max_dataset_images is None else {"max_dataset_images": max_dataset_images}
    report = build_report(
        runs=runs,
        dataset=dataset,
        store=store,
        out=out,
        storage_options=options,
        include_dataset=dataset_browser,
        **limit,
    )
    for warning in report.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if open_browser:
        import webbrowser

        webbrowser.open(report.path.resolve().as_uri())
    parts = [f"{len(report.runs)} run{'s' if len(report.runs) != 1 else ''}"] if report.runs else []
    parts += [f"{report.epochs} evaluation epochs"] if report.runs else []
    parts += [f"dataset {report.dataset}"] if report.dataset else []
    parts += [f"{report.images} images"]
    emit(json_out, report.summary(), f"wrote {report.path} ({human_bytes(report.bytes)}: {', '.join(parts)})")
