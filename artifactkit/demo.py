"""`artifactkit demo`: the product's story in one command, told by running the real CLI.

Each step is a subprocess running the command a user would type, so what the demo shows is what
the user can repeat. The library never prints: the caller passes `say` for the narration.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .errors import ArtifactkitError, InvalidInput
from .layout import version_key

Say = Callable[[str], None]


@dataclass(frozen=True)
class Size:
    n_train: int
    n_val: int
    imgsz: int
    epochs: int
    kill_after: int  # SIGKILL training once this epoch's checkpoint exists


FULL = Size(n_train=400, n_val=50, imgsz=256, epochs=10, kill_after=5)
TINY = Size(n_train=8, n_val=4, imgsz=64, epochs=2, kill_after=1)


@dataclass
class Demo:
    root: Path
    size: Size
    say: Say
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def store(self) -> Path:
        return self.root / ".artifactkit"

    def cli(self, *args: str, stream: bool = True) -> str:
        """Run `artifactkit ARGS` in the demo folder; stop the demo with its error if it fails."""
        self.say(f"$ artifactkit {shlex.join(args)}")
        proc = subprocess.run(
            [sys.executable, "-m", "artifactkit", *args],
            cwd=self.root,
            text=True,
            stdout=subprocess.PIPE,
            stderr=None if stream else subprocess.PIPE,
        )
        if proc.returncode != 0:
            raise DemoFailed(
                f"step failed: artifactkit {shlex.join(args)} (exit {proc.returncode})"
                + (f": {proc.stderr.strip().splitlines()[-1]}" if not stream and proc.stderr.strip() else "")
            )
        lines = proc.stdout.strip().splitlines()
        for line in lines[:-1] if args[-1] == "--json" else lines:
            self.say(line)
        return lines[-1] if lines else ""

    def json(self, *args: str) -> dict[str, Any]:
        return json.loads(self.cli(*args, "--json"))


class DemoFailed(ArtifactkitError):
    pass


def run(root: str | os.PathLike, tiny: bool = False, say: Say = lambda _: None) -> dict[str, Any]:
    root = Path(root).absolute()
    if root.exists() and any(p.name != ".artifactkit" for p in root.iterdir()) and not (root / "chess").exists():
        raise InvalidInput(f"{root} is not empty and not an earlier demo folder; pick another --dir")
    root.mkdir(parents=True, exist_ok=True)
    d = Demo(root, TINY if tiny else FULL, say)
    _dataset(d)
    run_uri = _train_and_crash(d)
    _resume(d, run_uri)
    _inspect(d, run_uri)
    say("\nNext, try:")
    say("  artifactkit log-dataset ./chess --store s3://your-bucket/ak        # the same store on S3 (AWS_* variables)")
    say("  artifactkit train --save-period 1 --wandb --project chess-demo     # mirror the run to Weights & Biases")
    say("  torchrun --nproc-per-node 2 -m artifactkit train --save-period 1   # several processes or GPUs")
    say(
        f"\ndemo finished in {shlex.quote(_shown(root))}: open {shlex.quote(_shown(Path(d.summary['report'])))} in a "
        f"browser"
    )
    return d.summary


def _step(d: Demo, title: str) -> None:
    d.say(f"\n== {title}")


def _dataset(d: Demo) -> None:
    s = d.size
    _step(d, "1. Generate the chess dataset and log it")
    d.cli(
        "demo-data",
        "chess",
        "--n-train",
        str(s.n_train),
        "--n-val",
        str(s.n_val),
        "--n-heldout",
        "0",
        "--imgsz",
        str(s.imgsz),
    )
    v0 = d.json("log-dataset", "chess")
    _step(d, "2. Turn two images grey in place and log again: only they are stored")
    _grey_two_images(d.root / "chess")
    v1 = d.json("log-dataset", "chess")
    d.say(
        f"{v1['version']}: {v1['uploaded_files']} new files, {v1['uploaded_bytes']} bytes stored "
        f"(of {v1['files']} files, {v1['bytes']} bytes)"
    )
    d.summary["dataset"] = {"v0": v0, "v1": v1}


def _grey_two_images(folder: Path) -> None:
    from PIL import Image, ImageOps

    for path in sorted((folder / "images" / "train").iterdir())[:2]:
        with Image.open(path) as im:
            grey = ImageOps.grayscale(im).convert("RGB")
        grey.save(path, quality=90)


def _train_and_crash(d: Demo) -> str:
    s = d.size
    _step(d, f"3. Train for {s.epochs} epochs, saving a checkpoint every epoch")
    run_id = f"demo{int(time.time()) % 100000}"
    args = [
        "train",
        "--epochs",
        str(s.epochs),
        "--imgsz",
        str(s.imgsz),
        "--batch",
        "8",
        "--workers",
        "0",
        "--save-period",
        "1",
        "--run-id",
        run_id,
    ]
    d.say(f"$ artifactkit {shlex.join(args)}")
    marker = d.store / version_key(f"{run_id}-model", s.kill_after - 1)  # a local store: keys are paths
    proc = subprocess.Popen([sys.executable, "-m", "artifactkit", *args], cwd=d.root, stdout=subprocess.DEVNULL)
    while not marker.exists():
        if proc.poll() is not None:
            raise DemoFailed(f"training stopped before its epoch-{s.kill_after} checkpoint (exit {proc.returncode})")
        time.sleep(0.1)
    _step(d, f"4. Simulate a crash: SIGKILL the training process after the epoch-{s.kill_after} checkpoint")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    d.say(f"training process {proc.pid} killed")
    d.cli("runs")  # no process survived to say so; its dead lease does: interrupted
    uri = f"{d.store}/runs/{run_id}"
    d.summary.update(run_uri=uri, killed_after_epoch=s.kill_after)
    return uri


def _resume(d: Demo, uri: str) -> None:
    _step(d, "5. Resume the same run from its latest checkpoint")
    done = d.json("resume", uri)
    d.summary["epochs_after_resume"] = done["epochs_completed"]
    d.summary["final_mAP50"] = done["metrics"].get("metrics/mAP50")


def _inspect(d: Demo, uri: str) -> None:
    run_id = uri.rsplit("/", 1)[-1]
    _step(d, "6. The run's checkpoints, an integrity check, and an HTML report")
    d.cli("versions", f"{run_id}-model")
    d.cli("verify")
    report = d.root / d.json("view", uri, "--out", "report.html")["report"]  # relative to the demo folder
    d.summary["report"] = str(report)
    d.say(f"wrote {shlex.quote(_shown(report))}")


def _shown(path: Path) -> str:
    """The path as the user can type it where they started the demo: relative to their working
    folder when inside it, else absolute."""
    relative = os.path.relpath(path)
    return relative if not relative.startswith(os.pardir) else str(path)
