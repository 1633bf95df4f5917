"""Plain-data helpers for the Trainer's state_dict(): the global RNGs as nested plain data and
back, and what a JSON round trip changes in an optimizer's state. Knows nothing of the Trainer.

The caller stores tensors and the rest (as JSON) separately, so loading must accept what a JSON
round trip returns: lists for tuples and string keys for integer ones.
"""

import logging
import random
from typing import Any

import numpy as np
import torch

from artifactkit.detector.config import RESUME_OVERRIDES, TrainConfig
from artifactkit.errors import InvalidInput

logger = logging.getLogger(__name__)

STATE_KEYS = (
    "model",
    "ema",
    "optimizer",
    "scheduler",
    "epoch",
    "step",
    "last_opt_step",
    "best_fitness",
    "config",
    "optimizer_choice",
    "rng",
)


def capture_rng() -> dict[str, Any]:
    python_version, python_state, python_gauss = random.getstate()
    numpy_state = np.random.get_state(legacy=False)
    state = {
        "python": [python_version, list(python_state), python_gauss],
        "numpy": {
            "bit_generator": numpy_state["bit_generator"],
            "key": [int(v) for v in numpy_state["state"]["key"]],
            "pos": int(numpy_state["state"]["pos"]),
            "has_gauss": int(numpy_state["has_gauss"]),
            "gauss": float(numpy_state["gauss"]),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = list(torch.cuda.get_rng_state_all())
    return state


def restore_rng(state: dict[str, Any]) -> None:
    python_version, python_state, python_gauss = state["python"]
    random.setstate((python_version, tuple(python_state), python_gauss))
    numpy_state = state["numpy"]
    np.random.set_state(
        {
            "bit_generator": numpy_state["bit_generator"],
            "state": {"key": np.asarray(numpy_state["key"], dtype=np.uint32), "pos": numpy_state["pos"]},
            "has_gauss": numpy_state["has_gauss"],
            "gauss": numpy_state["gauss"],
        }
    )
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


def optimizer_state_from_plain(state: dict[str, Any]) -> dict[str, Any]:
    """Undo JSON's changes: per-parameter state keys back to ints (torch silently ignores state
    under unknown keys), betas back to a tuple."""
    groups = []
    for group in state["param_groups"]:
        group = dict(group)
        if "betas" in group:
            group["betas"] = tuple(group["betas"])
        groups.append(group)
    return {"state": {int(key): value for key, value in state["state"].items()}, "param_groups": groups}


# Keys that may differ on resume without changing the numbers: the length of the run (and when
# to stop it early), where the same dataset version lies on this machine, how many processes load
# it (the data order and augmentation do not depend on workers), how often it is saved. A new device or batch size does
# change them: warn.
_NEUTRAL_ON_RESUME = (set(RESUME_OVERRIDES) - {"device", "threads"}) | {"data"}


_COUNTS = ("epoch", "step", "last_opt_step")  # non-negative ints
_MAPPINGS = ("model", "ema", "optimizer", "config", "optimizer_choice", "rng")


def check_state_keys(state: Any, where: str = "training state") -> None:
    """A checkpoint's state as the trainer wrote it, read from a store as untrusted input: each key
    there and of the type its reader needs (a list, or an 'epoch' of "3", is one line, not a
    TypeError in resume)."""
    if not isinstance(state, dict):
        raise InvalidInput(f"{where}: a {type(state).__name__}, not a trainer checkpoint's state")
    missing = [key for key in STATE_KEYS if key not in state]
    if missing:
        raise InvalidInput(f"{where} lacks {', '.join(missing)}: not a trainer checkpoint")
    for key in _COUNTS:
        if type(state[key]) is not int or state[key] < 0:
            raise InvalidInput(f"{where}: '{key}' is {state[key]!r}, not a count")
    for key in _MAPPINGS:
        if not isinstance(state[key], dict):
            raise InvalidInput(f"{where}: '{key}' is a {type(state[key]).__name__}, not a mapping")
    if type(state["best_fitness"]) not in (int, float):
        raise InvalidInput(f"{where}: 'best_fitness' is {state['best_fitness']!r}, not a number")


def warn_config_changes(config: TrainConfig, saved: dict[str, Any]) -> None:
    """Warn when resuming under a config that changes the numbers against the saved one."""
    current = config.model_dump(mode="json")
    # a key newer than the checkpoint counts as its default (the run was trained with that behaviour)
    defaults = config.model_validate({"data": current["data"]}).model_dump(mode="json")
    changed = sorted(
        key for key in current if key not in _NEUTRAL_ON_RESUME and saved.get(key, defaults[key]) != current[key]
    )
    if changed:
        logger.warning("resuming with changed config keys %s: the run will not match an uninterrupted one", changed)
