"""Benchmark: predict images/s beside training img/s, for YOLO-n on the synthetic chess data.

Trains a short run into a temporary store (its training img/s is the trainer's own figure), then
times `artifactkit.predict` over the val images end to end (decode, letterbox, forward, NMS, boxes
back in original pixels) at each batch size, after one warm-up call.
    python bench/predict.py                          # CPU, 416 px
    python bench/predict.py --device cuda --n-val 1000 --batch 1 32 64
"""

import argparse
import logging
import tempfile
import time
from pathlib import Path

import torch

import artifactkit
from artifactkit import runs
from artifactkit.detector.chess import generate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-train", type=int, default=64)
    parser.add_argument("--n-val", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--imgsz", type=int, default=416)
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 16], help="predict batch sizes to time")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="predict-bench-") as tmp:
        data = generate(
            Path(tmp) / "chess", n_train=args.n_train, n_val=args.n_val, n_heldout=0, imgsz=args.imgsz
        ).parent
        store = str(Path(tmp) / "store")
        artifactkit.train(
            store,
            data=str(data),
            run_id="bench",
            epochs=args.epochs,
            imgsz=args.imgsz,
            batch=16,
            workers=2,
            threads=args.threads,
            device=args.device,
            val_splits=["val"],
        )
        metrics = runs.read_metrics(artifactkit.open_store(store), "bench")[-1]["metrics"]
        print(f"device {args.device}, threads {torch.get_num_threads()}, YOLO-n at {args.imgsz} px", flush=True)
        print(
            f"train    {metrics['speed/train_img_s']:8.1f} img/s  (batch 16, {args.n_train} images, "
            f"epoch {args.epochs})",
            flush=True,
        )
        images = data / "images" / "val"
        weights = f"{store}/runs/bench"
        for batch in args.batch:
            artifactkit.predict(weights, sorted(images.iterdir())[:batch], batch=batch, device=args.device)  # warm-up
            start = time.perf_counter()
            predictions = artifactkit.predict(weights, images, batch=batch, device=args.device)
            seconds = time.perf_counter() - start
            boxes = sum(len(p.boxes) for p in predictions)
            print(
                f"predict  {len(predictions) / seconds:8.1f} img/s  (batch {batch}, {len(predictions)} images, "
                f"{boxes} boxes at conf 0.25, model load included)",
                flush=True,
            )


if __name__ == "__main__":
    main()
