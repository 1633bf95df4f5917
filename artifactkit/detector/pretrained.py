"""Starting a model from weights trained elsewhere: what a state_dict is (scale, class count) and
how it goes into a fresh model, keeping the backbone and neck when the class count differs."""

import torch

from artifactkit.detector.model import SCALES, YOLO, _width
from artifactkit.errors import InvalidInput

STEM_KEY = "backbone.stem.0.conv.weight"  # first conv: its width tells the scale apart
CLASS_KEY = "head.cls_branches.0.2.weight"  # last class conv of the first level: nc outputs
HEAD_PREFIX = "head."


def describe_weights(state: dict[str, torch.Tensor], where: str) -> tuple[str, int]:
    """(scale, number of classes) of a YOLO state_dict, read from its tensor shapes."""
    try:
        stem, classes = state[STEM_KEY], state[CLASS_KEY]
    except (KeyError, TypeError):
        raise InvalidInput(f"{where}: not the weights of an artifactkit YOLO model (no {STEM_KEY})") from None
    if not all(isinstance(t, torch.Tensor) and t.ndim == 4 for t in (stem, classes)):  # a forged file
        raise InvalidInput(
            f"{where}: weights of an unknown model shape ({STEM_KEY} and {CLASS_KEY} are no conv weights)"
        )
    by_width = {_width(64, width, top): scale for scale, (_, width, top) in SCALES.items()}
    scale = by_width.get(int(stem.shape[0]))
    if scale is None or classes.ndim != 4:
        raise InvalidInput(f"{where}: weights of an unknown model shape (stem width {stem.shape[0]})")
    return scale, int(classes.shape[0])


def load_pretrained(model: YOLO, state: dict[str, torch.Tensor], where: str) -> str | None:
    """Copy `state` into `model` (weights are copied in place: memory format and the parameters
    an optimizer may hold stay the same). With another class count only the backbone and neck
    are copied and the head keeps its fresh initialisation; the returned sentence says so."""
    scale, nc = describe_weights(state, where)
    if scale != model.scale:
        raise InvalidInput(
            f"{where}: weights of a YOLO-{scale} do not fit a YOLO-{model.scale} (train with --model {scale})"
        )
    body = state if nc == model.nc else {k: v for k, v in state.items() if not k.startswith(HEAD_PREFIX)}
    try:
        missing, unexpected = model.load_state_dict(body, strict=False)
    except RuntimeError as e:  # a shape that differs although the scale matches
        raise InvalidInput(f"{where}: weights do not fit a YOLO-{scale} ({str(e).splitlines()[-1].strip()})") from None
    wrong = list(unexpected) + [k for k in missing if body is state or not k.startswith(HEAD_PREFIX)]
    if wrong:
        raise InvalidInput(f"{where}: weights do not fit a YOLO-{scale} (keys {', '.join(wrong[:3])} differ)")
    if body is state:
        return None
    return (
        f"{where} has {nc} classes, the dataset {model.nc}: kept the backbone and neck, "
        f"re-initialised the detection head"
    )
