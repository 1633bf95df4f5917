"""A local viewer: one self-contained HTML report of runs and/or a dataset version.

    from artifactkit.viewer import build_report
    report = build_report(runs=["./.artifactkit/runs/7f3k2a"], out="run.html")

The report holds metric curves (several runs overlaid), the bounding-box debugger (epoch slider,
confidence threshold, class toggles), the evaluation table (sort, filter, group by class) and
the dataset browser grouped by class. No server and no network: thumbnails and boxes are
embedded, drawn by the page's own scripts (artifactkit/viewer/*.js).
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from ..errors import InvalidInput
from ..fileio import atomic_write
from ..records import now_iso
from ..store import Store, open_store
from ..uri import split_run_uri
from .collect import load_run_data
from .dataset import MAX_IMAGES, load_dataset
from .images import ImageBank
from .render import render

__all__ = ["Report", "build_report", "default_report_path"]


@dataclass(frozen=True)
class Report:
    path: Path
    bytes: int
    runs: list[str]
    dataset: str | None
    epochs: int  # evaluation epochs embedded, all runs together
    images: int  # distinct images embedded
    image_bytes: int  # of which base64 image data
    seconds: float
    warnings: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {
            "report": str(self.path),
            "bytes": self.bytes,
            "runs": self.runs,
            "dataset": self.dataset,
            "epochs": self.epochs,
            "images": self.images,
            "image_bytes": self.image_bytes,
            "seconds": round(self.seconds, 3),
            "warnings": self.warnings,
        }


def default_report_path(runs: Sequence[str] = (), dataset: str | None = None) -> Path:
    """./artifactkit-<run-id>.html (several runs: the first id and how many more), or
    ./artifactkit-<name>-<version>.html for a dataset alone."""
    if runs:
        stem = split_run_uri(runs[0])[1] + (f"-and-{len(runs) - 1}" if len(runs) > 1 else "")
    elif dataset:
        stem = dataset.replace(":", "-")
    else:
        stem = "report"
    return Path(f"artifactkit-{re.sub(r'[^A-Za-z0-9._-]', '_', stem)}.html")


def build_report(
    runs: Sequence[str] = (),
    dataset: str | None = None,
    store: str | None = None,
    out: str | os.PathLike | None = None,
    storage_options: dict[str, Any] | None = None,
    include_dataset: bool = True,
    max_dataset_images: int = MAX_IMAGES,
    workers: int = 4,
) -> Report:
    """Write the report for run URIs (`<store>/runs/<id>`) and/or a dataset ref (NAME:VERSION in
    `store`). With runs and no dataset, the first run's dataset version is browsed too
    (include_dataset=False leaves it out)."""
    start = time.perf_counter()
    if not runs and not dataset:
        raise InvalidInput("nothing to view: give run URIs (<store>/runs/<id>) and/or a dataset NAME:VERSION")
    bank = ImageBank()
    stores: dict[str, Store] = {}
    run_data = []
    for uri in runs:
        store_uri, run_id = split_run_uri(uri)
        s = stores.get(store_uri) or stores.setdefault(store_uri, open_store(store_uri, storage_options))
        run_data.append(load_run_data(s, run_id, bank))
    ds_data = None
    if dataset:
        ds_data = load_dataset(
            open_store(store, storage_options, must_exist=True), dataset, bank, max_images=max_dataset_images
        )
    elif include_dataset and run_data and run_data[0]["dataset"]:
        first = stores[split_run_uri(runs[0])[0]]
        ds_data = load_dataset(first, run_data[0]["dataset"], bank, max_images=max_dataset_images)
    embedded = bank.build(workers)
    payload = {
        "v": 1,
        "title": _title(run_data, ds_data),
        "generated": now_iso(),
        "runs": run_data,
        "dataset": ds_data,
        "sizes": embedded.sizes,
        "warnings": embedded.problems,
    }
    html = render(payload, embedded.small, embedded.large).encode("utf-8")
    path = Path(out) if out is not None else default_report_path(runs, dataset)
    atomic_write(path, html)  # a browser never opens half a page, nor a good report half replaced
    return Report(
        path=path,
        bytes=len(html),
        runs=[r["id"] for r in run_data],
        dataset=ds_data["ref"] if ds_data else None,
        epochs=sum(len(r["eval"]["epochs"]) for r in run_data if r["eval"]),
        images=len(embedded.small),
        image_bytes=embedded.encoded_bytes,
        seconds=time.perf_counter() - start,
        warnings=embedded.problems,
    )


def _title(runs: list[dict], dataset: dict | None) -> str:
    if runs:
        return "artifactkit · " + ", ".join(f"run {r['id']}" for r in runs)
    return f"artifactkit · dataset {dataset['ref']}" if dataset else "artifactkit"
