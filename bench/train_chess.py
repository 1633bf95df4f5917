"""Benchmark: train YOLO-n from scratch on the synthetic chess demo and print per-epoch speed and
accuracy on val (seen piece styles), val-style (the training pieces repainted: the split to choose
a recipe by) and val-heldout (a piece set never trained on: reported, never tuned on).

The issue's anchor (Ultralytics 8.4 YOLOv8n on a similar chess set, its own metric): mAP50 0.51 /
0.83 / 0.91 / 0.94 after epochs 4 / 6 / 8 / 10, mAP50-95 0.74 after 10, ~7 train img/s on 2 CPU
threads. bench/ultralytics_chess.py runs Ultralytics on this very data for a side-by-side.
    python bench/train_chess.py
The recipe before the style augmentations (issue 19's baseline), and its 3-seed summary:
    python bench/train_chess.py --set contrast=0 --set blur=0 --set seed=1 > base_s1.log
    python bench/chess_seeds.py base:base_s0.log base:base_s1.log ... style:cb_s0.log ...
Ultralytics' exact recipe (nominal batch 64) instead of artifactkit's short-run default:
    python bench/train_chess.py --set nbs=64
Quick check:
    python bench/train_chess.py --epochs 2 --n-train 160
"""

import argparse
import logging
import tempfile
import time
from pathlib import Path

import torch

from artifactkit.detector.chess import generate
from artifactkit.detector.config import TrainConfig, parse_setting
from artifactkit.detector.train import Trainer


class PrintEpochs:
    """Prints one line per epoch (a bench script may print; the library never does)."""

    def on_train_start(self, trainer):
        print(
            f"train images {len(trainer.train_set)}, batch {trainer.config.batch}, imgsz {trainer.config.imgsz}, "
            f"optimizer {trainer.choice.name} lr0 {trainer.choice.lr0}, threads {torch.get_num_threads()}, "
            f"device {trainer.device}",
            flush=True,
        )
        print(
            f"{'epoch':>5} {'epoch_s':>8} {'img/s':>7} {'box':>6} {'cls':>6} {'dfl':>6} "
            f"{'val50':>6} {'val50-95':>8} {'style50':>7} {'style50-95':>10} {'held50':>6} {'held50-95':>9}",
            flush=True,
        )

    def on_epoch_end(self, trainer, epoch, m):
        print(
            f"{epoch:>5} {m['time/epoch_s']:>8.1f} {m['speed/train_img_s']:>7.2f} "
            f"{m['train/box_loss']:>6.3f} {m['train/cls_loss']:>6.3f} {m['train/dfl_loss']:>6.3f} "
            f"{m.get('metrics/mAP50', float('nan')):>6.3f} {m.get('metrics/mAP50-95', float('nan')):>8.3f} "
            f"{m.get('val-style/mAP50', float('nan')):>7.3f} {m.get('val-style/mAP50-95', float('nan')):>10.3f} "
            f"{m.get('val-heldout/mAP50', float('nan')):>6.3f} {m.get('val-heldout/mAP50-95', float('nan')):>9.3f}",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, help="where to generate the data (default: a temp folder)")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--n-train", type=int, default=800)
    parser.add_argument("--n-val", type=int, default=200)
    parser.add_argument("--n-heldout", type=int, default=200)
    parser.add_argument("--n-style", type=int, default=200)
    parser.add_argument("--imgsz", type=int, default=416)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--model", default="n", choices=["n", "s", "m"])
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any other train config key, e.g. --set nbs=16 (repeatable)",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="chess-bench-") as tmp:
        out = args.data_dir or Path(tmp)
        start = time.perf_counter()
        data_yaml = generate(
            out,
            n_train=args.n_train,
            n_val=args.n_val,
            n_heldout=args.n_heldout,
            n_style=args.n_style,
            imgsz=args.imgsz,
        )
        print(
            f"generated {args.n_train}/{args.n_val}/{args.n_heldout}/{args.n_style} images at {args.imgsz} px in "
            f"{time.perf_counter() - start:.1f} s: {data_yaml}",
            flush=True,
        )
        config = TrainConfig(
            data=str(data_yaml),
            model=args.model,
            epochs=args.epochs,
            batch=args.batch,
            imgsz=args.imgsz,
            threads=args.threads,
            workers=args.workers,
            device=args.device,
            val_splits=["val", "val-style", "val-heldout"] if args.n_style else ["val", "val-heldout"],
            **dict(parse_setting(item) for item in args.set),
        )
        start = time.perf_counter()
        metrics = Trainer(config, callbacks=[PrintEpochs()]).fit()
        print(
            f"total {time.perf_counter() - start:.1f} s; final mAP50 {metrics['metrics/mAP50']:.3f} "
            f"mAP50-95 {metrics['metrics/mAP50-95']:.3f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
