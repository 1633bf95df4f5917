"""`export`: a model's EMA weights as a file other tools read; the format follows the suffix.

.pt           the plain state_dict (torch.save), as PyTorch code and artifactkit.load_model() load it
              (Ultralytics' YOLO() cannot: it expects its own pickled model object)
.safetensors  the same tensors without pickle; its metadata holds the class names, the training
              image size and the model scale, so artifactkit.load_model(), predict and
              `train --weights` read it back as a complete model
.onnx         the network with its box decoding (torch's TorchScript exporter, opset ONNX_OPSET), in
              Ultralytics' layout so tools written for its exports run it unchanged. Input `images`:
              float32 (N, 3, S, S), RGB in [0, 1], letterboxed to S (default: the training size).
              Output `output0`: (N, 4 + nc, A): per anchor cx, cy, w, h in input pixels, then the
              nc class probabilities (no objectness); NMS is left to the caller. N is dynamic.
              Metadata (metadata_props), as Ultralytics writes it: names "{0: 'a', ...}", imgsz
              "[S, S]", stride "32", task "detect", batch, author, description.

The file is written beside its target and renamed into place: a failed export leaves nothing.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any, Callable

from .errors import InvalidInput, missing_extra
from .fileio import atomic_path
from .weights import FORMAT, Weights, build, check_imgsz, read_weights

ONNX_OPSET = 17
SUFFIXES = (".pt", ".safetensors", ".onnx")
_NEEDS = {".safetensors": ("safetensors",), ".onnx": ("onnx",)}  # the `export` extra


def export_weights(
    weights: str | os.PathLike,
    out: str | os.PathLike,
    *,
    store: str | None = None,
    storage_options: dict | None = None,
    imgsz: int | None = None,
) -> dict[str, Any]:
    """Write the weights `weights` names (a run URI, a run id or NAME:VERSION in `store`, or an
    exported file: refs.WEIGHTS) to `out` in the format of its suffix. `imgsz` sets the ONNX input size."""
    out = Path(out)
    if out.suffix not in SUFFIXES:
        raise InvalidInput(f"{out}: unknown export suffix {out.suffix!r} (expected {', '.join(SUFFIXES)})")
    if imgsz is not None and out.suffix != ".onnx":
        raise InvalidInput(f"{out}: an image size applies to .onnx exports only")
    if imgsz is not None:
        check_imgsz(imgsz, f"{out}")
    for module in _NEEDS.get(out.suffix, ()):  # before any download: a missing extra fails first
        _require(module)
    found = read_weights(weights, store, storage_options)
    writer: Callable[[Weights, Path, int | None], dict[str, Any]] = _WRITERS[out.suffix]
    try:
        with atomic_path(out) as tmp:  # a failure leaves neither half a file nor its temp
            details = writer(found, tmp, imgsz)
    except OSError as e:
        raise InvalidInput(f"{out}: cannot write the weights ({e.strerror or e})") from None
    return {
        "out": str(out),
        "format": out.suffix[1:],
        "source": found.source,
        "loaded": found.shown,
        "tensors": len(found.state),
        **details,
    }


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

    return {
        "format": FORMAT,
        "names": json.dumps(found.names),
        "imgsz": str(found.imgsz),
        "scale": found.scale,
        "source": found.source,
    }


def _write_safetensors(found: Weights, tmp: Path, imgsz: int | None) -> dict[str, Any]:
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in found.state.items()}, str(tmp), metadata=safetensors_metadata(found))
    return {"names": found.names, "imgsz": found.imgsz, "scale": found.scale}


def onnx_module(found: Weights):
    """The torch module an ONNX export traces (its outputs are what the .onnx file computes)."""
    import torch

    from .detector.model import Decoded

    class UltralyticsLayout(torch.nn.Module):
        """Decoded's (B, A, 4 + nc) xyxy -> Ultralytics' (B, 4 + nc, A) cx, cy, w, h."""

        def __init__(self, decoded: Decoded):
            super().__init__()
            self.decoded = decoded

        def forward(self, images: torch.Tensor) -> torch.Tensor:
            out = self.decoded(images)
            xy1, xy2 = out[..., 0:2], out[..., 2:4]
            return torch.cat(((xy1 + xy2) / 2, xy2 - xy1, out[..., 4:]), dim=-1).transpose(1, 2)

    return UltralyticsLayout(Decoded(build(found))).eval()


def onnx_metadata(found: Weights, size: int) -> dict[str, str]:
    """The metadata_props of an ONNX export, spelled as Ultralytics' exporter spells them (str(v)
    of Python values: consumers read them back with ast.literal_eval)."""
    from .detector.config import MAX_STRIDE

    return {
        "description": f"artifactkit YOLO-{found.scale} from {found.source}",
        "author": "artifactkit",
        "stride": str(MAX_STRIDE),
        "task": "detect",
        "batch": "1",
        "imgsz": str([size, size]),
        "names": str(dict(enumerate(found.names))),
    }


def _write_onnx(found: Weights, tmp: Path, imgsz: int | None) -> dict[str, Any]:
    import torch

    size = found.imgsz if imgsz is None else imgsz
    module = onnx_module(found)
    with torch.no_grad():
        channels, anchors = module(torch.zeros(1, 3, size, size)).shape[1:]
    with warnings.catch_warnings():
        # The TorchScript exporter is deprecated in favour of torch.export's, which needs
        # onnxscript (not in the `export` extra); the traced graph of this fixed network is the same.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            (torch.zeros(1, 3, size, size),),
            str(tmp),
            dynamo=False,
            opset_version=ONNX_OPSET,
            input_names=["images"],
            output_names=["output0"],
            dynamic_axes={"images": {0: "batch"}, "output0": {0: "batch"}},
        )
    import onnx

    graph = onnx.load(str(tmp))
    dims = graph.graph.output[0].type.tensor_type.shape.dim  # the tracer leaves both symbolic after the transpose
    dims[1].dim_value, dims[2].dim_value = channels, anchors  # fixed: readers size buffers from them
    for key, value in onnx_metadata(found, size).items():
        graph.metadata_props.add(key=key, value=value)
    onnx.save(graph, str(tmp))
    return {"opset": ONNX_OPSET, "imgsz": size, "names": found.names}


_WRITERS = {".pt": _write_pt, ".safetensors": _write_safetensors, ".onnx": _write_onnx}
