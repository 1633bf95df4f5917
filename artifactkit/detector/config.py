"""The training configuration: one frozen, validated record of every knob a run was started with.

It is stored with each checkpoint (as a plain dict) so a run can be resumed or reproduced from it
alone; defaults follow Ultralytics YOLOv8 so results are comparable.
"""

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from artifactkit.errors import InvalidInput

_DEVICE_PATTERN = re.compile(r"^(auto|cpu|cuda|cuda:\d+)$")


class TrainConfig(BaseModel):
    """Hyper-parameters of one training run. Build it with keywords; bad keys or values raise
    InvalidInput naming the key."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    data: str = Field(min_length=1)
    model: Literal["n", "s", "m"] = "n"
    epochs: int = Field(10, ge=1)
    batch: int = Field(16, ge=1)
    # Nominal batch: gradients of ~nbs images are summed per optimizer step. None: the optimizer
    # rule picks it (16 for the short-run AdamW recipe, YOLOv8's 64 otherwise; see optim.py).
    nbs: int | None = Field(None, ge=1)
    imgsz: int = Field(640, ge=32)
    device: str = "auto"
    seed: int = Field(0, ge=0)
    workers: int = Field(2, ge=0)
    optimizer: Literal["auto", "SGD", "AdamW"] = "auto"
    lr0: float = Field(0.01, gt=0)
    lrf: float = Field(0.01, gt=0, le=1)
    momentum: float = Field(0.937, ge=0, lt=1)
    weight_decay: float = Field(5e-4, ge=0)
    warmup_epochs: float = Field(3.0, ge=0)
    warmup_bias_lr: float = Field(0.1, ge=0)
    warmup_momentum: float = Field(0.8, ge=0, lt=1)
    cos_lr: bool = False
    close_mosaic: int = Field(10, ge=0)
    mosaic: float = Field(1.0, ge=0, le=1)
    hsv_h: float = Field(0.015, ge=0, le=1)
    hsv_s: float = Field(0.7, ge=0, le=1)
    hsv_v: float = Field(0.4, ge=0, le=1)
    fliplr: float = Field(0.5, ge=0, le=1)
    cache: bool = False
    compile: bool = False
    sync_bn: bool = False  # SyncBatchNorm under torchrun (CUDA); a lone process ignores it
    bbox_interval: int = Field(1, ge=0)
    save_period: int = Field(0, ge=0)
    val_splits: tuple[str, ...] = ("val",)
    threads: int | None = Field(None, ge=1)
    # Start from trained weights (a run URI, NAME:VERSION of a checkpoint, or an exported
    # .safetensors / .pt) instead of random ones. The session resolves it; the trainer gets tensors.
    weights: str | None = Field(None, min_length=1)

    def __init__(self, **values: Any) -> None:
        # Pydantic's own error lists every failure in its own words; callers of artifactkit catch
        # InvalidInput, and a message that starts with the key is what a CLI user needs to see.
        try:
            super().__init__(**values)
        except ValidationError as error:
            raise InvalidInput(_describe(error)) from None

    @field_validator("device")
    @classmethod
    def _check_device(cls, value: str) -> str:
        if not _DEVICE_PATTERN.match(value):
            raise ValueError("expected 'auto', 'cpu', 'cuda' or 'cuda:N'")
        return value

    @field_validator("val_splits", mode="before")
    @classmethod
    def _check_val_splits(cls, value: Any) -> Any:
        if isinstance(value, str):  # a lone split name is a common slip; accept it
            value = (value,)
        if not value or not all(isinstance(v, str) and v for v in value):
            raise ValueError("expected a non-empty list of split names")
        if len(set(value)) != len(value):
            raise ValueError("split names repeat")
        return tuple(value)

    def replace(self, **changes: Any) -> "TrainConfig":
        """A validated copy with some values changed (model_copy would skip validation)."""
        return TrainConfig(**{**self.model_dump(), **changes})


def _describe(error: ValidationError) -> str:
    problems = []
    for item in error.errors():
        key = ".".join(str(part) for part in item["loc"]) or "config"
        if item["type"] == "extra_forbidden":
            problems.append(f"unknown train config key '{key}'")
        elif item["type"] == "missing":
            problems.append(f"train config key '{key}' is required")
        else:
            message = item["msg"].removeprefix("Value error, ")
            problems.append(f"train config key '{key}': {message} (got {item.get('input')!r})")
    return "; ".join(problems)
