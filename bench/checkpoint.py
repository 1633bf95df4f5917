"""Checkpoint cost: how long training is blocked per save, bytes per checkpoint, bytes per extra
checkpoint with the backbone frozen, and time from `resume` to the first training step.

    python bench/checkpoint.py [--model s] [--n-train 64] [--imgsz 256] [--epochs 3] [--s3]

Trains the chess demo with --save-period 1 in-process; "blocked" is the time the training thread
spends in the checkpoint callback (CPU copies + waiting for the previous upload).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import artifactkit
from artifactkit import checkpoint, session
from artifactkit.detector.chess import generate


class Timings:
    def __init__(self):
        self.blocked: list[float] = []
        self.epoch_s: list[float] = []
        self.saved: list[int] = []
        self.started: float | None = None

    def report(self, event: str, d: dict) -> None:
        if event == "epoch":
            self.epoch_s.append(d["metrics"]["time/epoch_s"])
        elif event == "checkpoint":
            self.saved.append(d["uploaded_bytes"])
        elif event == "train_start" and self.started is None:
            self.started = time.perf_counter()


def train_options(args, data) -> dict:
    """What every run of this bench trains with: the model and size asked for, one checkpoint an epoch."""
    return dict(
        data=str(data),
        model=args.model,
        epochs=args.epochs,
        imgsz=args.imgsz,
        batch=8,
        workers=0,
        save_period=1,
        bbox_interval=0,
        threads=2,
    )


def timed_saves(t: Timings):
    """Wrap BackgroundSaver.save to time the part that runs on the training thread."""
    real = checkpoint.BackgroundSaver.save

    def save(self, *a, **kw):
        start = time.perf_counter()
        real(self, *a, **kw)
        t.blocked.append(time.perf_counter() - start)

    checkpoint.BackgroundSaver.save = save


class FreezeBackbone:
    """A fine-tune: the backbone's parameters get no gradient (and its BatchNorms stay in eval)."""

    def on_train_start(self, trainer) -> None:
        for name, p in trainer.model.named_parameters():
            if name.startswith("backbone"):
                p.requires_grad_(False)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="s")
    ap.add_argument("--n-train", type=int, default=64)
    ap.add_argument("--imgsz", type=int, default=256)
    ap.add_argument("--epochs", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        os.environ["ARTIFACTKIT_CACHE_DIR"] = str(tmp / "cache")
        data = generate(tmp / "chess", n_train=args.n_train, n_val=16, n_heldout=0, imgsz=args.imgsz).parent
        t = Timings()
        timed_saves(t)
        store = str(tmp / "store")
        r = Timings()
        session.train(store, report=r.report, run_id="plain", **train_options(args, data))
        blocked = t.blocked[1:] or t.blocked  # the first save has no previous upload to wait for
        epoch = sum(r.epoch_s) / len(r.epoch_s)
        print(f"model {args.model}, {args.n_train} images at {args.imgsz} px, {args.epochs} epochs, save-period 1")
        print(
            f"epoch time {epoch:.1f} s; blocked per save {1000 * max(blocked):.0f} ms max, "
            f"{1000 * sum(blocked) / len(blocked):.0f} ms mean -> {100 * max(blocked) / epoch:.2f}% of an epoch"
        )
        print(f"bytes stored per checkpoint: {[f'{b / 1e6:.1f} MB' for b in r.saved]}")

        t.blocked.clear()
        f = Timings()
        real_start = session.RunCallbacks.on_train_start

        def start_frozen(self, trainer):
            FreezeBackbone().on_train_start(trainer)
            real_start(self, trainer)

        session.RunCallbacks.on_train_start = start_frozen
        session.train(store, report=f.report, run_id="frozen", **train_options(args, data))
        session.RunCallbacks.on_train_start = real_start
        s = artifactkit.open_store(store)
        state = checkpoint.load(s, "frozen-model:latest")
        # a checkpoint keeps the EMA weights (thin history); the raw model has the same tensors
        ema = state["ema"]["model"]
        trainable = sum(v.numel() * v.element_size() for k, v in ema.items() if not k.startswith("backbone"))
        print(
            f"frozen backbone: bytes per extra checkpoint {[f'{b / 1e6:.1f} MB' for b in f.saved[1:]]}; "
            f"trainable (non-backbone) model tensors {trainable / 1e6:.1f} MB x (model, EMA, optimizer state)"
        )

        r2 = Timings()
        start = time.perf_counter()
        session.resume(f"{store}/runs/plain", epochs=args.epochs + 1, report=r2.report)
        print(f"resume -> first training step (local store): {r2.started - start:.2f} s")
        resume_from_s3(data, args, tmp)


def resume_from_s3(data: Path, args, tmp: Path) -> None:
    """The same measurement against a local S3 API server (moto), into an empty cache."""
    import socket

    import boto3
    from moto.server import ThreadedMotoServer

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    import logging

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        os.environ.update(
            AWS_ENDPOINT_URL=f"http://127.0.0.1:{port}",
            AWS_ACCESS_KEY_ID="x",
            AWS_SECRET_ACCESS_KEY="x",
            AWS_DEFAULT_REGION="us-east-1",
        )
        boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"]).create_bucket(Bucket="bench")
        store = "s3://bench/ak"
        session.train(store, run_id="remote", **{**train_options(args, data), "epochs": 1})
        os.environ["ARTIFACTKIT_CACHE_DIR"] = str(tmp / "empty-cache")  # "another machine"
        r = Timings()
        start = time.perf_counter()
        session.resume(f"{store}/runs/remote", epochs=2, report=r.report)
        print(f"resume -> first training step (S3 on 127.0.0.1, empty cache): {r.started - start:.2f} s")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
