"""Side-by-side reference: Ultralytics YOLOv8n trained the way the detector issue's anchor was
(from scratch, 416 px, batch 16, optimizer auto = AdamW, mosaic closed for all 10 epochs, CPU),
on the very data set bench/train_chess.py generates, so the two trainers' figures compare.

Ultralytics is never a dependency of artifactkit: run this with the python of a separate venv.
    python -m venv /tmp/ultra && /tmp/ultra/bin/pip install torch==2.14.1 torchvision==0.29.1 ultralytics
    python -c "from artifactkit.detector.chess import generate; generate('/tmp/chess-side', n_train=800, n_val=200, "
              "n_heldout=200, imgsz=416)"
    /tmp/ultra/bin/python bench/ultralytics_chess.py /tmp/chess-side/data.yaml --out /tmp/ultra-run
It prints the same per-epoch columns as bench/train_chess.py, then writes the final weights'
val predictions as COCO JSON (image_id = file stem, category_id = class index), which
`artifactkit val --preds FILE --data DATA` scores with artifactkit's COCO-exact metric.
"""

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("YOLO_OFFLINE", "1")  # it would try to fetch fonts and check for updates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", type=Path, help="data.yaml made by artifactkit's chess generator")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--imgsz", type=int, default=416)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from ultralytics import YOLO

    model = YOLO("yolov8n.yaml")  # architecture only: trained from scratch, nothing downloaded
    start = time.perf_counter()
    print(
        f"{'epoch':>5} {'epoch_s':>8} {'img/s':>7} {'box':>6} {'cls':>6} {'dfl':>6} {'val50':>6} {'val50-95':>8}",
        flush=True,
    )

    def on_fit_epoch_end(trainer) -> None:
        m, loss = trainer.metrics, [float(v) for v in trainer.tloss.values()]
        n = len(trainer.train_loader.dataset)
        train_s = trainer.epoch_time  # whole epoch incl. validation, as Ultralytics measures it
        print(
            f"{trainer.epoch + 1:>5} {train_s:>8.1f} {n / train_s:>7.2f} {loss[0]:>6.3f} {loss[1]:>6.3f} "
            f"{loss[2]:>6.3f} "
            f"{m['metrics/mAP50(B)']:>6.3f} {m['metrics/mAP50-95(B)']:>8.3f}",
            flush=True,
        )

    model.add_callback("on_fit_epoch_end", on_fit_epoch_end)
    model.train(
        data=str(args.data),
        epochs=args.epochs,
        imgsz=args.imgsz,
        batch=args.batch,
        device="cpu",
        seed=args.seed,
        close_mosaic=10,
        plots=False,
        amp=False,
        project=str(args.out),
        name="train",
        exist_ok=True,
        verbose=False,
    )
    print(f"total {time.perf_counter() - start:.1f} s", flush=True)

    last = args.out / "train" / "weights" / "last.pt"
    for split in ("val", "val-heldout"):
        metrics = YOLO(str(last)).val(
            data=str(args.data),
            split=split,
            imgsz=args.imgsz,
            batch=32,
            device="cpu",
            save_json=True,
            plots=False,
            project=str(args.out),
            name=f"val-{split}",
            exist_ok=True,
            verbose=False,
        )
        preds = json.loads((args.out / f"val-{split}" / "predictions.json").read_text())
        # Ultralytics numbers custom classes from 1 in its JSON; artifactkit's COCO JSON from 0.
        for p in preds:
            p["image_id"], p["category_id"] = str(p["image_id"]), p["category_id"] - 1
        out = args.out / f"preds-{split}.json"
        out.write_text(json.dumps(preds))
        print(
            f"{split}: ultralytics mAP50 {metrics.box.map50:.3f} mAP50-95 {metrics.box.map:.3f}; "
            f"predictions for artifactkit val --preds: {out}",
            flush=True,
        )


if __name__ == "__main__":
    main()
