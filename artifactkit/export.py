"""`export`: a model's EMA weights as a file other tools read; the format follows the suffix.

.pt           the plain state_dict (torch.save), as PyTorch code loads it
.safetensors  the same tensors without pickle; its metadata holds the class names, the training
              image size and the model scale, so artifactkit.load_model(), predict and
              `train --weights` read it back as a complete model
.onnx         the network with its box decoding (torch's TorchScript exporter, opset ONNX_OPSET).
              Input `images`: float32 (N, 3, S, S), RGB in [0, 1], letterboxed to S (default: the
              training size). Output `predictions`: (N, A, 4 + nc), xyxy boxes in input pixels,
              then class probabilities; NMS is left to the caller. N is dynamic.

The file is written beside its target and renamed into place: a failed export leaves nothing.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any, Callable

from .errors import InvalidInput, missing_extra
from .fileio import atomic_path
from .weights import FORMAT, Weights, build, read_weights

ONNX_OPSET = 17
SUFFIXES = (".pt", ".safetensors", ".onnx")
_NEEDS = {".safetensors": ("safetensors",), ".onnx": ("onnx",)}  # the `export` extra


def export_weights(weights: str | os.PathLike, out: str | os.PathLike, *, store: str | None = None,
                   storage_options: dict | None = None, imgsz: int | None = None) -> dict[str, Any]:
    """Write the weights `weights` names (a run URI, NAME:VERSION in `store`, or an exported
    file) to `out` in the format of its suffix. `imgsz` sets the ONNX input size."""
    out = Path(out)
    if out.suffix not in SUFFIXES:
        raise InvalidInput(f"{out}: unknown export suffix {out.suffix!r} (expected {', '.join(SUFFIXES)})")
    if imgsz is not None and out.suffix != ".onnx":
        raise InvalidInput(f"{out}: an image size applies to .onnx exports only")
    if imgsz is not None and (imgsz < 32 or imgsz % 32):
        raise InvalidInput(f"{out}: image size {imgsz} is not a positive multiple of 32")
    for module in _NEEDS.get(out.suffix, ()):  # before any download: a missing extra fails first
        _require(module)
    found = read_weights(weights, store, storage_options)
    writer: Callable[[Weights, Path, int | None], dict[str, Any]] = _WRITERS[out.suffix]
    try:
        with atomic_path(out) as tmp:  # a failure leaves neither half a file nor its temp
            details = writer(found, tmp, imgsz)
    except OSError as e:
        raise InvalidInput(f"{out}: cannot write the weights ({e.strerror or e})") from None
    return {"out": str(out), "format": out.suffix[1:], "source": found.source, "loaded": found.shown,
            "tensors": len(found.state), **details}


def _require(module: str) -> None:
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise missing_extra(module, "export")


def _write_pt(found: Weights, tmp: Path, imgsz: int | None) -> dict[str, Any]:
    import torch

    with open(tmp, "wb") as f:  # a file object: given a path, torch names the archive after it and refuses ours
        torch.save({k: v.contiguous() for k, v in found.state.items()}, f)
    return {}


def safetensors_metadata(found: Weights) -> dict[str, str]:
    """What a .safetensors export says about its model (safetensors metadata is str -> str)."""
    import json

    return {"format": FORMAT, "names": json.dumps(found.names), "imgsz": str(found.imgsz), "scale": found.scale,
            "source": found.source}


def _write_safetensors(found: Weights, tmp: Path, imgsz: int | None) -> dict[str, Any]:
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in found.state.items()}, str(tmp), metadata=safetensors_metadata(found))
    return {"names": found.names, "imgsz": found.imgsz, "scale": found.scale}


def onnx_module(found: Weights):
    """The torch module an ONNX export traces (its outputs are what the .onnx file computes)."""
    from .detector.model import Decoded

    return Decoded(build(found)).eval()


def _write_onnx(found: Weights, tmp: Path, imgsz: int | None) -> dict[str, Any]:
    import torch

    size = found.imgsz if imgsz is None else imgsz
    with warnings.catch_warnings():
        # The TorchScript exporter is deprecated in favour of torch.export's, which needs
        # onnxscript (not in the `export` extra); the traced graph of this fixed network is the same.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            onnx_module(found), (torch.zeros(1, 3, size, size),), str(tmp), dynamo=False, opset_version=ONNX_OPSET,
            input_names=["images"], output_names=["predictions"],
            dynamic_axes={"images": {0: "batch"}, "predictions": {0: "batch"}},
        )
    return {"opset": ONNX_OPSET, "imgsz": size, "names": found.names}


_WRITERS = {".pt": _write_pt, ".safetensors": _write_safetensors, ".onnx": _write_onnx}
