"""The one model loader: trained weights from whatever refs.py says a string names (a run URI or
a bare run id: its best checkpoint; NAME:VERSION of a checkpoint in a store; an exported
.safetensors with its metadata, or a plain .pt state_dict), and the model built from them. What
val, predict, export, fine-tuning and `load_model` start from.

Everything read here is untrusted: class names, image size and scale are checked against the
tensors before a model is built from them.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import InvalidInput, NotFound, missing_extra

FILE_SUFFIXES = (".safetensors", ".pt")
FORMAT = "artifactkit-yolo"  # the safetensors metadata "format" of our exports


@dataclass
class Weights:
    state: dict[str, Any]  # a YOLO state_dict (a checkpoint's EMA weights), CPU tensors
    names: list[str]  # class names, one per class
    imgsz: int  # the image size the model was trained at
    scale: str  # n, s or m
    origin: dict[str, str]  # {"store", "version": NAME:vN} or {"file": absolute path, "digest": xxh3-128}
    selector: str | None = None  # how the version was asked for (best, latest, an alias), if not by number
    store: Any = field(default=None, repr=False)  # the Store they were read from (origin["store"] is its redacted URI)

    @property
    def source(self) -> str:
        """Where the weights came from, in one phrase for messages (and records)."""
        if "file" in self.origin:
            return self.origin["file"]
        return f"{self.origin['store']}: {self.origin['version']}"

    @property
    def shown(self) -> str:
        """source, and how the version was asked for when not by number: "...: r-model:v3 (best)"."""
        number = self.origin.get("version", "").rpartition(":")[2]
        asked = self.selector and "file" not in self.origin and self.selector != number
        return f"{self.source} ({self.selector})" if asked else self.source


@dataclass
class LoadedModel:
    model: Any  # artifactkit.detector.model.YOLO, in eval mode on the device asked for
    names: list[str]
    imgsz: int
    scale: str
    source: str
    origin: dict[str, str] = field(default_factory=dict)  # Weights.origin
    shown: str = ""  # source, with the alias asked for (Weights.shown)


def read_weights(spec: str | os.PathLike, store: str | None = None, storage_options: dict | None = None) -> Weights:
    """Weights named by `spec`, in any form refs.WEIGHTS lists: a .safetensors or .pt file, a run
    URI (<store>/runs/<id>: its best checkpoint; <store>/runs/<id>:latest its latest), a run id
    in `store`, or NAME:VERSION of a checkpoint in `store`."""
    from . import refs

    text = os.fspath(spec)
    ref = refs.parse(text, refs.WEIGHTS, "weights")
    if isinstance(ref, refs.FileRef):
        if not os.path.isfile(ref.path):
            raise NotFound(f"{text}: no such weights file")
        return _from_file(ref.path)
    return _from_store(*refs.checkpoint(ref, store, storage_options, text))


def load_model(
    weights: str | os.PathLike, *, store: str | None = None, storage_options: dict | None = None, device: str = "auto"
) -> LoadedModel:
    """A ready model in eval mode, with its class names and training image size, from anything
    `read_weights` accepts."""
    from .detector.config import _DEVICE_PATTERN
    from .detector.train import resolve_device

    if not _DEVICE_PATTERN.match(device):
        raise InvalidInput(f"device {device!r}: expected auto, cpu, cuda or cuda:N")
    found = read_weights(weights, store, storage_options)
    model = build(found).to(resolve_device(device))
    return LoadedModel(model, found.names, found.imgsz, found.scale, found.source, found.origin, found.shown)


def build(weights: Weights):
    """An eval-mode YOLO on the CPU holding `weights`."""
    from .detector.validation import build_model

    try:
        return build_model(weights.state, len(weights.names), weights.scale)
    except RuntimeError as e:  # a tensor of the wrong shape or a missing key
        raise InvalidInput(
            f"{weights.source}: weights do not fit a YOLO-{weights.scale} ({str(e).splitlines()[-1].strip()})"
        ) from None


def _from_store(s, ref: str) -> Weights:
    from . import checkpoint

    record = s.resolve(ref)
    version = f"{record.name}:{record.label}"  # loaded by number: an alias that moves meanwhile changes nothing
    where = f"{s.uri}: {version}"
    state = checkpoint.load(s, version)
    ema = ema_weights(state, where)
    config = state.get("config") if isinstance(state.get("config"), dict) else {}
    origin = {"store": s.uri, "version": version}
    found = _checked(ema, record.metadata.get("names"), config.get("imgsz"), where, origin)
    claimed = config.get("model")
    if claimed is not None and claimed != found.scale:  # the record and its tensors disagree: neither is trusted
        raise InvalidInput(
            f"{where}: weights do not fit a YOLO-{claimed}, the scale its config records "
            f"(the tensors are a YOLO-{found.scale}'s)"
        )
    found.selector, found.store = ref.rpartition(":")[2], s
    return found


def ema_weights(state: Any, where: str) -> dict:
    """A trainer checkpoint's EMA weights (what validation scores and exports hold)."""
    try:
        return state["ema"]["model"]
    except (KeyError, TypeError):
        raise InvalidInput(f"{where}: checkpoint holds no EMA weights: not an artifactkit trainer checkpoint") from None


def _from_file(path: Path) -> Weights:
    from .detector.config import TrainConfig
    from .hashing import digest_file

    origin = {"file": str(path.resolve()), "digest": digest_file(path)}
    if path.suffix == ".safetensors":
        state, meta = _read_safetensors(path)
        if meta.get("format") != FORMAT:
            raise InvalidInput(
                f"{path}: not an artifactkit export (safetensors metadata format is {meta.get('format')!r})"
            )
        try:
            names, imgsz = json.loads(meta.get("names", "null")), int(meta.get("imgsz", ""))
        except (ValueError, RecursionError):
            raise InvalidInput(f"{path}: malformed safetensors metadata (names, imgsz)") from None
        return _checked(state, names, imgsz, str(path), origin)
    if path.suffix == ".pt":  # a plain state_dict knows no names or size: class indices and the default size
        return _checked(_read_pt(path), None, TrainConfig.model_fields["imgsz"].default, str(path), origin)
    raise InvalidInput(f"{path}: unknown weights file suffix {path.suffix!r} (expected {', '.join(FILE_SUFFIXES)})")


def _read_safetensors(path: Path) -> tuple[dict[str, Any], dict[str, str]]:
    try:
        from safetensors import SafetensorError, safe_open
    except ImportError:
        raise missing_extra("safetensors", "export") from None
    try:
        with safe_open(str(path), framework="pt") as f:
            return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata() or {})
    except (SafetensorError, OSError) as e:
        raise InvalidInput(f"{path}: not a readable safetensors file ({e})") from None


def _read_pt(path: Path) -> dict[str, Any]:
    import pickle

    import torch

    try:  # weights_only: tensors and plain containers, never arbitrary pickled objects
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError) as e:
        raise InvalidInput(f"{path}: not a PyTorch state_dict ({str(e).splitlines()[0]})") from None
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise InvalidInput(f"{path}: expected a state_dict (a dict of named tensors)")
    return state


def _checked(state: dict[str, Any], names: Any, imgsz: Any, where: str, origin: dict[str, str]) -> Weights:
    """Weights whose names and image size agree with their tensors (None names: class indices)."""
    from .detector.pretrained import describe_weights

    scale, nc = describe_weights(state, where)
    if names is None:
        names = [str(i) for i in range(nc)]
    if not isinstance(names, list) or len(names) != nc or not all(isinstance(n, str) for n in names):
        raise InvalidInput(f"{where}: class names do not match the model's {nc} classes")
    check_imgsz(imgsz, where)
    return Weights(state, names, imgsz, scale, origin)


def check_imgsz(imgsz: Any, where: str) -> int:
    """An image size a model can run at: a multiple of 32 up to MAX_IMGSZ (a forged 32,000,000
    in a file's metadata would be predict's default and an allocation of petabytes)."""
    from .detector.config import MAX_IMGSZ, MAX_STRIDE

    if type(imgsz) is not int or not MAX_STRIDE <= imgsz <= MAX_IMGSZ or imgsz % MAX_STRIDE:
        raise InvalidInput(
            f"{where}: image size {imgsz!r} is not a positive multiple of {MAX_STRIDE} up to {MAX_IMGSZ}"
        )
    return imgsz
