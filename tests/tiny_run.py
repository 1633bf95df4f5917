"""One tiny trained run shared by the predict, export and fine-tune tests (trained once per
session: a module of its own, like clirunner, so each test file can import it)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

IMGSZ = 64
# What every tiny training of the tests uses: 64 px, batch 4, no data workers, one thread.
TINY = dict(epochs=1, imgsz=IMGSZ, batch=4, workers=0, threads=1)
_cache: dict[str, "TinyRun"] = {}


@dataclass(frozen=True)
class TinyRun:
    store: Path
    run_id: str
    data: Path  # the chess dataset folder (12 classes)

    @property
    def uri(self) -> str:
        return f"{self.store}/runs/{self.run_id}"

    @property
    def val_images(self) -> Path:
        return self.data / "images" / "val"


def tiny_run(tmp_path_factory) -> TinyRun:
    """1 epoch of YOLO-n at 64 px on 8 chess images, in a local store."""
    if "run" not in _cache:
        from artifactkit.detector.chess import generate

        root = tmp_path_factory.mktemp("tiny-run")
        data = generate(root / "chess", n_train=8, n_val=4, n_heldout=2, imgsz=IMGSZ).parent
        train_tiny(root / "store", data, run_id="tiny")
        _cache["run"] = TinyRun(root / "store", "tiny", data)
    return _cache["run"]


def train_tiny(store, data, **options):
    """artifactkit.train of `data` into `store` with TINY's options (`options` override them), giving
    the test process its torch thread count back afterwards (training sets it)."""
    import torch

    import artifactkit

    threads = torch.get_num_threads()
    try:
        return artifactkit.train(str(store), data=str(data), **{**TINY, **options})
    finally:
        torch.set_num_threads(threads)


def three_class_copy(data: Path, dest: Path) -> Path:
    """The chess data with its 12 classes folded into 3 (a dataset of another class count)."""
    import shutil

    shutil.copytree(data, dest)
    for label in (dest / "labels").rglob("*.txt"):
        rows = [line.split() for line in label.read_text().splitlines() if line.strip()]
        label.write_text("".join(f"{int(r[0]) % 3} {' '.join(r[1:])}\n" for r in rows))
    (dest / "data.yaml").write_text("path: .\ntrain: images/train\nval: images/val\nnames: [white, black, other]\n")
    return dest
