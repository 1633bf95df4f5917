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
    targets: Annotated[list[str], typer.Argument(help="Run URIs (<store>/runs/<id>, several overlay their curves) and/or one dataset NAME:VERSION in --store")],
    out: Annotated[Optional[Path], typer.Option("--out", help="HTML file to write (default: ./artifactkit-<run-id>.html or ./artifactkit-<name>-<version>.html)")] = None,
    dataset_browser: Annotated[bool, typer.Option("--dataset/--no-dataset", help="Browse the run's dataset version too")] = True,
    max_dataset_images: Annotated[int, typer.Option(help="Dataset images embedded at most (each split in proportion beyond it)")] = 2000,
    open_browser: Annotated[bool, typer.Option("--open", help="Open the report in the default web browser")] = False,
    store: StoreOpt = None,
    storage_option: StorageOpts = None,
    json_out: JsonOpt = False,
) -> None:
    """Write a report you can open without a server or an account: metric curves, the
    bounding-box debugger, the evaluation table and the dataset browser grouped by class."""
    from artifactkit.viewer import build_report

    runs, dataset = _split_targets(targets, store, storage_option)
    report = build_report(runs=runs, dataset=dataset, store=store, out=out, storage_options=parse_storage_options(storage_option),
                          include_dataset=dataset_browser, max_dataset_images=max_dataset_images)
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


def _split_targets(targets: list[str], store: str | None, storage_option: list[str] | None) -> tuple[list[str], str | None]:
    """Runs and a dataset NAME[:VERSION] in --store, as refs.py reads them: a bare name is a run id
    if that run is there (so `view 7f3k2a --store s3://team/ak` works too)."""
    from artifactkit import refs
    from artifactkit.errors import InvalidInput
    from artifactkit.uri import run_uri

    runs, datasets = [], []
    for target in targets:
        ref = refs.parse(target, refs.RUN_OR_VERSION, "view target")
        if isinstance(ref, refs.WordRef):
            from .common import open_store

            ref = refs.word_in(open_store(store, storage_option), ref.word)
        if isinstance(ref, refs.RunRef):
            runs.append(run_uri(ref.store, ref.run_id))
        else:
            datasets.append(target)
    if len(datasets) > 1:
        raise InvalidInput(f"one dataset at a time, got {', '.join(datasets)}")
    return runs, (datasets[0] if datasets else None)
