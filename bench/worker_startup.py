"""DataLoader worker start-up against the work it saves, on the trainer's own loaders.

    python bench/worker_startup.py [--n-train 16] [--imgsz 64] [--batch 4] [--workers 2] [--epochs 2]

For each worker count (0 and --workers) it builds the train loader and the validation loader as
the Trainer does (detector.data.build_dataloader, persistent workers), then times, per epoch, the
first batch (worker start-up is paid there: fork, the dataset's pages, the first sample) and the
whole pass over the data (decode + augment, no model). Also prints the worker count the library
picks by default for the dataset (data.effective_workers, workers unset) and why.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from artifactkit.detector.chess import generate
from artifactkit.detector.data import build_dataloader, effective_workers, load_split
from artifactkit.yolo import load_data_config


def timed_epochs(loader, epochs: int) -> list[tuple[float, float]]:
    out = []
    for epoch in range(epochs):
        loader.sampler.set_epoch(epoch)
        start = time.perf_counter()
        first = None
        for _ in loader:
            if first is None:
                first = time.perf_counter() - start
        out.append((first or 0.0, time.perf_counter() - start))
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n-train", type=int, default=16)
    parser.add_argument("--imgsz", type=int, default=64)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = load_data_config(
            generate(
                Path(tmp) / "chess",
                n_train=args.n_train,
                n_val=max(4, args.n_train // 4),
                n_heldout=0,
                imgsz=args.imgsz,
            )
        )
        for split, augment in (("train", True), ("val", False)):
            dataset = load_split(data, split, imgsz=args.imgsz, augment=augment)
            chosen, why = effective_workers(None, len(dataset), args.batch)
            print(
                f"{split}: {len(dataset)} images, batch {args.batch}: "
                f"by default the library runs {chosen} workers ({why})"
            )
            for workers in (0, args.workers):
                loader = build_dataloader(dataset, args.batch, workers, shuffle=augment, seed=0)
                for epoch, (first, total) in enumerate(timed_epochs(loader, args.epochs), 1):
                    print(
                        f"  workers {workers}  epoch {epoch}: first batch {first * 1000:7.1f} ms, "
                        f"whole pass {total * 1000:7.1f} ms"
                    )
                del loader


if __name__ == "__main__":
    main()
