"""Retention: the store's size after a 20-epoch run saving every epoch, with `--keep-last 2` vs
keeping every checkpoint, both measured after `gc` (the bytes a store really keeps).

    python bench/retention.py [--model n] [--epochs 20] [--n-train 16] [--imgsz 64]

Tiny chess data by default (the size of a checkpoint depends on the model, not the data); each
run trains in its own local store. Printed: checkpoints left, store bytes before and after gc.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import artifactkit
from artifactkit.detector.chess import generate
from artifactkit.maintenance import gc


def disk_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def one_run(root: Path, data: Path, args, keep_last: int | None) -> dict:
    store_dir = root / f"store-{keep_last or 'all'}"
    start = time.perf_counter()
    artifactkit.train(
        str(store_dir),
        data=str(data),
        run_id="bench",
        model=args.model,
        epochs=args.epochs,
        imgsz=args.imgsz,
        batch=8,
        workers=0,
        save_period=1,
        keep_last=keep_last,
        report=lambda event, details: None,
    )
    seconds = time.perf_counter() - start
    store = artifactkit.open_store(str(store_dir))
    before = disk_bytes(store_dir)
    freed = gc(store, grace_seconds=0)
    return {
        "keep": f"last {keep_last}" if keep_last else "all",
        "checkpoints": len(store.version_numbers("bench-model")),
        "before_gc": before,
        "after_gc": disk_bytes(store_dir),
        "freed": freed.deleted_bytes,
        "train_s": seconds,
    }


def tiny_run_options(parser: argparse.ArgumentParser) -> None:
    """The options of a bench that trains tiny runs on generated chess (this one and thin_history.py)."""
    parser.add_argument("--model", default="n")
    parser.add_argument("--n-train", type=int, default=16)
    parser.add_argument("--imgsz", type=int, default=64)


def tiny_chess(root: Path, args) -> Path:
    """The generated chess dataset those runs train on: its folder."""
    return generate(root / "chess", n_train=args.n_train, n_val=4, n_heldout=2, imgsz=args.imgsz).parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    tiny_run_options(parser)
    parser.add_argument("--epochs", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ak-bench-retention-") as tmp:
        root = Path(tmp)
        data = tiny_chess(root, args)
        rows = [one_run(root, data, args, keep) for keep in (None, 2)]
    print(
        f"YOLO-{args.model}, {args.epochs} epochs, a checkpoint every epoch, {args.n_train} images at {args.imgsz} px"
    )
    print(f"{'keep':>8} {'checkpoints':>12} {'before gc MB':>13} {'after gc MB':>12} {'train s':>8}")
    for r in rows:
        print(
            f"{r['keep']:>8} {r['checkpoints']:>12} {r['before_gc'] / 1e6:>13.1f} {r['after_gc'] / 1e6:>12.1f} "
            f"{r['train_s']:>8.0f}"
        )
    print(f"keep-last 2 keeps {rows[1]['after_gc'] / rows[0]['after_gc']:.1%} of keep-all's bytes")


if __name__ == "__main__":
    main()
