"""The training configuration: one frozen, validated record of every knob a run was started with.

It is stored with each checkpoint (as a plain dict) so a run can be resumed or reproduced from it
alone; defaults follow Ultralytics YOLOv8 so results are comparable.
"""

import math
import os
import re
from typing import Any, Literal, Mapping

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, create_model, field_validator

from artifactkit.errors import InvalidInput, did_you_mean

_DEVICE_PATTERN = re.compile(r"^(auto|cpu|cuda|cuda:\d+)$")
_GPU_LIST = re.compile(r"^\d+(,\d+)*$")  # Ultralytics' spelling: "0" or "0,1"
MAX_STRIDE = 32  # the coarsest feature map of every YOLOv8 scale: image sides must divide by it
MAX_IMGSZ = 16384  # the largest image side a model is built for (weights' metadata is checked against it)
# Data-loading workers when the config gives none (data.effective_workers): AUTO_WORKERS, but none
# for an epoch of under MIN_BATCHES_FOR_WORKERS batches. A worker pool costs 0.1-0.4 s to start per
# loader on an idle 2-core machine (seconds on a loaded one) and forks the trainer's memory; it pays
# back only by overlapping decoding with many steps (bench/worker_startup.py, docs/benchmarks.md).
AUTO_WORKERS, MIN_BATCHES_FOR_WORKERS = 2, 10


def round_imgsz(imgsz: int) -> int:
    """The image size rounded up to a multiple of the model's stride, as Ultralytics does."""
    return max(MAX_STRIDE, math.ceil(imgsz / MAX_STRIDE) * MAX_STRIDE)


def normalise_device(value: str) -> str:
    """auto/cpu/cuda/cuda:N, or Ultralytics' "0" (-> cuda:0) and "0,1" (several GPUs: torchrun's
    job; under torchrun each process takes its local rank's GPU, so it means "cuda")."""
    value = value.strip()
    if _DEVICE_PATTERN.match(value):
        return value
    if not _GPU_LIST.match(value):
        raise ValueError("expected 'auto', 'cpu', 'cuda', 'cuda:N', a GPU index 'N' or a list 'N,M'")
    gpus = value.split(",")
    if len(gpus) == 1:
        return f"cuda:{gpus[0]}"
    if "LOCAL_RANK" in os.environ:  # torchrun started us: one process per GPU
        return "cuda"
    raise ValueError(
        f"{len(gpus)} GPUs train as one process each: run  CUDA_VISIBLE_DEVICES={value} "
        f"torchrun --nproc-per-node {len(gpus)} -m artifactkit train --device cuda ..."
    )


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*$")


def parse_duration(text: str) -> float:
    """'90', '90s', '10m', '2h' -> seconds."""
    match = _DURATION.match(text)
    if not match:
        raise ValueError("expected a duration such as 90s, 10m or 2h")
    return float(match.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[match.group(2)]


# What `resume` may change of a run's recorded config (the rest must stay what the run started
# with: session.py refuses it); detector/state.py says which of them leave the numbers unchanged.
RESUME_OVERRIDES = (
    "epochs",
    "device",
    "workers",
    "threads",
    "patience",
    "save_period",
    "save_every",
    "stop_grace",
    "keep_last",
    "keep_within",
    "keep_daily",
    "keep_weekly",
    "keep_full",
)


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
    imgsz: int = Field(640, ge=32, le=MAX_IMGSZ)  # rounded up to a multiple of MAX_STRIDE
    device: str = "auto"
    seed: int = Field(0, ge=0)
    workers: int | None = Field(None, ge=0)  # None: AUTO_WORKERS, or none on a small dataset (see above)
    optimizer: Literal["auto", "SGD", "AdamW"] = "auto"
    lr0: float = Field(0.01, gt=0)
    lrf: float = Field(0.01, gt=0, le=1)
    momentum: float = Field(0.937, ge=0, lt=1)
    weight_decay: float = Field(5e-4, ge=0)
    warmup_epochs: float = Field(3.0, ge=0)
    warmup_bias_lr: float = Field(0.1, ge=0)
    warmup_momentum: float = Field(0.8, ge=0, lt=1)
    cos_lr: bool = False
    # Epochs at the end trained without mosaic. None: YOLOv8's 10, but at most 30 % of the run
    # (mosaic_off_epochs): YOLOv8's 10 leaves a run of 10 epochs without mosaic at all.
    close_mosaic: int | None = Field(None, ge=0)
    # Augmentation (YOLOv8's defaults; affine is scale + translate only, degrees 0). These fields
    # are the one declaration: the data module's AugmentConfig is derived from them (AUGMENT_KEYS).
    mosaic: float = Field(1.0, ge=0, le=1)  # probability
    scale: float = Field(0.5, ge=0, lt=1)
    translate: float = Field(0.1, ge=0, le=0.5)
    hsv_h: float = Field(0.015, ge=0, le=1)
    hsv_s: float = Field(0.7, ge=0, le=1)
    hsv_v: float = Field(0.4, ge=0, le=1)
    fliplr: float = Field(0.5, ge=0, le=1)
    flipud: float = Field(0.0, ge=0, le=1)
    # Style robustness: contrast jitter gain, and the probability of blurring an image by a down-up
    # resize (0 turns either off). On a piece style never trained on they took the chess bench's
    # held-out mAP50 from 0.66 to 0.84, the short-run lr (optim.py) to 0.88, mosaic to 0.91 (3 seeds;
    # docs/benchmarks.md, bench/chess_seeds.py).
    contrast: float = Field(0.5, ge=0, lt=1)
    blur: float = Field(0.3, ge=0, le=1)
    # Random erasing aimed at objects: the probability that an image's pieces get a part hidden
    # (augment.hide_parts). Off by default: see docs/benchmarks.md for what it measured.
    erase: float = Field(0.0, ge=0, le=1)
    cache: bool = False
    compile: bool = False
    sync_bn: bool = False  # SyncBatchNorm under torchrun (CUDA); a lone process ignores it
    bbox_interval: int = Field(1, ge=0)
    save_period: int = Field(0, ge=0)
    # Also save a checkpoint inside an epoch once this many seconds passed since the last one
    # (Ultralytics HUB: every 15 min). Given as seconds or "30s", "10m", "2h". None: never.
    save_every: float | None = Field(None, gt=0)
    # After SIGINT/SIGTERM/SIGUSR1, seconds allowed to reach a batch boundary and save; past them
    # the process exits without saving (stopping.py). 0: no limit.
    stop_grace: float = Field(20.0, ge=0)
    # Retention: keep the N newest checkpoints (plus `best`, hand-aliased ones and any a run was
    # fine-tuned from), deleting older ones as new ones commit; None keeps all (lifecycle.prune).
    # The time rules add up with it as restic's forget does: those created within a duration of
    # the newest (12h, 7d, 4w, 1y), the newest of each of the N latest days / ISO weeks. All None: keep all.
    keep_last: int | None = Field(None, ge=1)
    keep_within: str | None = Field(None, pattern=r"^[1-9][0-9]{0,5}[hdwy]$")
    keep_daily: int | None = Field(None, ge=1)
    keep_weekly: int | None = Field(None, ge=1)
    # Thin history: only the N newest checkpoints keep the full training state (raw weights,
    # optimizer moments, scheduler, RNG: what resume needs) in <run>-state; older ones keep what
    # evaluation, export and fine-tuning read (EMA weights and metadata). Ultralytics keeps the
    # optimizer only in last.pt and strips it from best.pt: this is that rule, for every checkpoint.
    keep_full: int = Field(1, ge=1)
    # Early stopping: stop after this many epochs without a better fitness (0: never), as Ultralytics.
    patience: int = Field(100, ge=0)
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

    @field_validator("device", mode="before")
    @classmethod
    def _check_device(cls, value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)  # device=0 from Python, as Ultralytics accepts
        return normalise_device(value) if isinstance(value, str) else value

    @field_validator("save_every", mode="before")
    @classmethod
    def _check_save_every(cls, value: Any) -> Any:
        return parse_duration(value) if isinstance(value, str) else value

    @field_validator("imgsz")
    @classmethod
    def _check_imgsz(cls, value: int) -> int:
        return round_imgsz(value)  # session.train says so when it changed what the user asked for

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

    def mosaic_off_epochs(self) -> int:
        """How many of the last epochs train without mosaic (close_mosaic, or its default)."""
        if self.close_mosaic is not None:
            return self.close_mosaic
        return min(10, (3 * self.epochs + 9) // 10)  # ceil(30 %), in integers: 10 epochs -> 3

    def replace(self, **changes: Any) -> "TrainConfig":
        """A validated copy with some values changed (model_copy would skip validation)."""
        return TrainConfig(**{**self.model_dump(), **changes})


def parse_setting(pair: str, label: str | None = None) -> tuple[str, Any]:
    """`KEY=VALUE` (the CLI's --set, or a bare `KEY=VALUE` word as Ultralytics' CLI takes it) ->
    (key, value of the key's type). InvalidInput names `label` (default: `--set KEY`)."""
    key, sep, text = pair.partition("=")
    key = key.strip()
    where = label or f"--set {key}"
    if not sep or not key:
        raise InvalidInput(f"{label or '--set ' + repr(pair)}: expected KEY=VALUE, e.g. --set lr0=0.001")
    field = TrainConfig.model_fields.get(key)
    if field is None or key == "data":
        known = [k for k in TrainConfig.model_fields if k != "data"]
        raise InvalidInput(f"{where}: unknown train config key{did_you_mean(key, known)} (known: {', '.join(known)})")
    value: Any = text.strip()
    if value.lower() in ("none", "null") and TypeAdapter(field.annotation).validate_python(None) is None:
        value = None
    elif key == "val_splits":
        value = [part.strip() for part in value.split(",")]
    elif key == "save_every" and value:
        try:
            value = parse_duration(value)
        except ValueError as error:
            raise InvalidInput(f"--set save_every: {error} (got {text!r})") from None
    try:
        return key, TypeAdapter(field.annotation).validate_python(value)
    except ValidationError as error:
        message = error.errors()[0]["msg"]
        raise InvalidInput(f"{where}: {message} (got {text!r})") from None


def check_options(options: Mapping[str, Any], labels: Mapping[str, str]) -> None:
    """Validate training keywords before any run exists; errors name each key as the user gave it
    (labels: key -> e.g. '--epochs' or '--set lr0')."""
    try:  # BaseModel's own __init__: TrainConfig's would describe the error without the labels
        BaseModel.__init__(TrainConfig.__new__(TrainConfig), **{"data": "-", **options})
    except ValidationError as error:
        raise InvalidInput(_describe(error, labels)) from None


def _describe(error: ValidationError, labels: Mapping[str, str] | None = None) -> str:
    problems = []
    for item in error.errors():
        key = ".".join(str(part) for part in item["loc"][:1]) or "config"
        name = (labels or {}).get(key) or f"train config key '{key}'"
        if item["type"] == "extra_forbidden":
            problems.append(f"unknown train config key '{key}'")
        elif item["type"] == "missing":
            problems.append(f"train config key '{key}' is required")
        else:
            message = item["msg"].removeprefix("Value error, ")
            problems.append(f"{name}: {message} (got {item.get('input')!r})")
    return "; ".join(problems)


# The augmentation keys of TrainConfig, which the data module needs without the rest of a run's
# settings (a dataset can be built and tested alone). Derived, never declared twice: one place for
# each default and bound.
AUGMENT_KEYS = (
    "mosaic",
    "scale",
    "translate",
    "hsv_h",
    "hsv_s",
    "hsv_v",
    "fliplr",
    "flipud",
    "contrast",
    "blur",
    "erase",
)
AugmentConfig = create_model(
    "AugmentConfig",
    __config__=ConfigDict(frozen=True, extra="forbid"),
    __doc__="Training augmentation: TrainConfig's augmentation fields (AUGMENT_KEYS), same defaults and bounds.",
    **{key: (TrainConfig.model_fields[key].annotation, TrainConfig.model_fields[key]) for key in AUGMENT_KEYS},
)


def augment_config(config: TrainConfig) -> AugmentConfig:
    """The augmentation settings of a run."""
    return AugmentConfig(**{key: getattr(config, key) for key in AUGMENT_KEYS})
