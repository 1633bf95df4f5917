"""Preemption figures (issue 29): time from SIGTERM to exit, the training stall per mid-epoch save,
and the work a preemption loses with --save-every vs epoch checkpoints.

    python bench/preemption.py [--models n s] [--imgsz 320] [--batch 8] [--n-train 48] [--device auto]

- SIGTERM to exit: a real `artifactkit train` process gets SIGTERM after its first batch; the
  figure is the wall time until it has saved where it stood and exited (finishing the batch under
  way, the CPU copy, the upload to a local store, the run record, interpreter exit).
- stall per save: the time the training thread is blocked by one mid-epoch save (CPU copies of the
  state; the encode and upload run in the saver's thread), and that background time; the median of
  5 saves of changed weights.
- work lost: derived from the measured batch time and stall, for an epoch of --epoch-hours: a kill
  without notice loses on average half the interval between checkpoints; a stop with notice
  (SIGTERM within the grace) loses at most the batch under way.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def sigterm_to_exit(data: Path, store: Path, model: str, args) -> tuple[float, float, str]:
    """(seconds from SIGTERM to exit, seconds per batch before it, the last line printed)."""
    cmd = [
        sys.executable,
        "-m",
        "artifactkit",
        "train",
        "--data",
        str(data),
        "--store",
        str(store),
        "--model",
        model,
        "--epochs",
        "2",
        "--imgsz",
        str(args.imgsz),
        "--batch",
        str(args.batch),
        "--workers",
        "0",
        "--device",
        args.device,
        "--run-id",
        f"term-{model}",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    started = None
    for line in proc.stderr:
        if started is None and re.search(r"batch 1/\d+", line):
            started = time.monotonic()
        m = re.search(r"batch (\d+)/\d+", line)
        if m and int(m[1]) >= 3:  # a few batches in: past start-up
            per_batch = (time.monotonic() - started) / (int(m[1]) - 1)
            break
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    rest = proc.stderr.read()
    proc.wait()
    return time.monotonic() - sent, per_batch, rest.strip().splitlines()[-1]


def save_stall(data: Path, store: Path, model: str, args) -> tuple[float, float]:
    """(median seconds the training thread is blocked per save, median background seconds)."""
    import torch

    import artifactkit
    from artifactkit import checkpoint
    from artifactkit.detector.config import TrainConfig
    from artifactkit.detector.train import Trainer

    trainer = Trainer(
        TrainConfig(
            data=str(data / "data.yaml"), model=model, imgsz=args.imgsz, batch=args.batch, workers=0, device=args.device
        )
    )
    s = artifactkit.open_store(str(store))
    saver = checkpoint.BackgroundSaver(s, f"stall-{model}")
    stalls, background = [], []
    for _ in range(5):
        with torch.no_grad():  # new weights each time: content addressing would dedupe a repeat
            for p in trainer.model.parameters():
                p.add_(1e-6)
        t0 = time.perf_counter()
        saver.save(trainer.state_dict())
        t1 = time.perf_counter()
        saver.wait()
        stalls.append(t1 - t0)
        background.append(time.perf_counter() - t1)
    saver.close()
    return statistics.median(stalls), statistics.median(background)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["n", "s"])
    parser.add_argument("--imgsz", type=int, default=320)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--n-train", type=int, default=48)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--epoch-hours", type=float, default=2.0)
    parser.add_argument("--save-every-min", type=float, default=5.0)
    args = parser.parse_args()
    import torch

    from artifactkit.detector.chess import generate

    where = (
        f"{torch.cuda.get_device_name(0)}"
        if torch.cuda.is_available() and args.device != "cpu"
        else f"CPU ({os.cpu_count()} cores, {torch.get_num_threads()} threads)"
    )
    print(f"device: {where}; imgsz {args.imgsz}, batch {args.batch}, local store")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        data = generate(root / "chess", n_train=args.n_train, n_val=8, n_heldout=2, imgsz=args.imgsz).parent
        for model in args.models:
            seconds, per_batch, last = sigterm_to_exit(data, root / "store", model, args)
            stall, background = save_stall(data, root / "store", model, args)
            print(
                f"YOLO-{model}: SIGTERM to exit {seconds:.2f} s (batch {per_batch:.2f} s); "
                f"stall per mid-epoch save {stall * 1000:.0f} ms on the training thread "
                f"(+{background * 1000:.0f} ms encode and write in the saver's thread)"
            )
            print(f"  last line: {last}")
            epoch_s, every_s = args.epoch_hours * 3600, args.save_every_min * 60
            print(
                f"  work lost per preemption on a {args.epoch_hours:g} h epoch, killed without notice: "
                f"epoch checkpoints {epoch_s / 2 / 60:.0f} min on average, --save-every {args.save_every_min:g}m "
                f"{min(every_s, epoch_s) / 2 / 60:.1f} min (costing {stall / every_s * 100:.3f} % of training "
                f"time in stalls); with notice (SIGTERM, grace 20 s): at most one batch, {per_batch:.2f} s"
            )


if __name__ == "__main__":
    main()
