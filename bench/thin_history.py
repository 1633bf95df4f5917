"""Thin checkpoint history (issue 30): the store's bytes after a run saving every epoch, with every
checkpoint keeping its full training state (keep_full = epochs: what every checkpoint held before
thin history) vs the default (keep_full 1: only the newest keeps optimizer moments, raw weights,
scheduler and RNG), each measured after `gc --grace 0` (the bytes a store really keeps).

    python bench/thin_history.py [--model n] [--epochs 10 40] [--n-train 16] [--imgsz 64]

Tiny chess data by default: a checkpoint's size depends on the model, not the data (10 epochs is
what `artifactkit demo` trains). Each run trains in its own local store.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from retention import tiny_chess, tiny_run_options  # bench/ is the script's folder

import artifactkit
from artifactkit.maintenance import gc
from artifactkit.usage import du


def one_run(root: Path, data: Path, args, epochs: int, keep_full: int) -> dict:
    store_dir = root / f"store-{epochs}-{keep_full}"
    start = time.perf_counter()
    artifactkit.train(
        str(store_dir),
        data=str(data),
        run_id="bench",
        model=args.model,
        epochs=epochs,
        imgsz=args.imgsz,
        batch=8,
        workers=0,
        save_period=1,
        keep_full=keep_full,
        report=lambda event, details: None,
    )
    seconds = time.perf_counter() - start
    store = artifactkit.open_store(str(store_dir))
    gc(store, grace_seconds=0)
    usage = du(store)
    own = {a.name: a.own for a in usage.artifacts}
    return {
        "epochs": epochs,
        "keep_full": keep_full,
        "total": usage.total,
        "model": own.get("bench-model", 0),
        "state": own.get("bench-state", 0),
        "checkpoints": len(store.version_numbers("bench-model")),
        "train_s": seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    tiny_run_options(parser)
    parser.add_argument("--epochs", type=int, nargs="+", default=[10, 40])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ak-bench-thin-") as tmp:
        root = Path(tmp)
        data = tiny_chess(root, args)
        rows = [one_run(root, data, args, epochs, keep) for epochs in args.epochs for keep in (epochs, 1)]
    print(f"YOLO-{args.model}, a checkpoint every epoch, {args.n_train} images at {args.imgsz} px; after gc --grace 0")
    print(
        f"{'epochs':>6} {'keep_full':>9} {'checkpoints':>11} {'store MB':>9} {'-model MB':>10} {'-state MB':>10} "
        f"{'train s':>8}"
    )
    for r in rows:
        print(
            f"{r['epochs']:>6} {r['keep_full']:>9} {r['checkpoints']:>11} {r['total'] / 1e6:>9.1f} "
            f"{r['model'] / 1e6:>10.1f} {r['state'] / 1e6:>10.1f} {r['train_s']:>8.0f}"
        )
    for before, after in zip(rows[::2], rows[1::2]):
        print(
            f"{before['epochs']} epochs: {before['total'] / 1e6:.1f} MB -> {after['total'] / 1e6:.1f} MB "
            f"({after['total'] / before['total']:.1%})"
        )


if __name__ == "__main__":
    main()
