"""Optimizer, learning-rate schedule, warm-up and weight EMA, following Ultralytics YOLOv8.

Everything here is a pure function of its arguments or keeps its state in state_dict(), so a
resumed run reproduces an uninterrupted one bit for bit.
"""

import math
from copy import deepcopy
from dataclasses import asdict, dataclass
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from artifactkit.detector.config import TrainConfig

GRAD_CLIP_NORM = 10.0
YOLOV8_NBS = 64  # YOLOv8's nominal batch: gradients of ~64 images are summed per optimizer step
# The short-run recipe steps on every batch of 16: on the chess bench (800 images, 10 epochs) that
# took val mAP50 after epoch 4 from 0.45 (nominal batch 64, as Ultralytics) to 0.90.
SHORT_RUN_NBS = 16
# ... and at twice YOLOv8's AdamW lr: a piece style never trained on went from held-out mAP50
# 0.84 to 0.88 on the chess bench (3 seeds; docs/benchmarks.md, issue 19).
SHORT_RUN_LR_GAIN = 2
# Ultralytics picks SGD only for long runs; short runs converge faster with AdamW.
AUTO_SGD_MIN_ITERATIONS = 10_000
MIN_WARMUP_ITERATIONS = 100


@dataclass(frozen=True)
class OptimizerChoice:
    """The optimizer actually used, after resolving optimizer='auto'. Kept in the checkpoint so a
    resumed run (possibly with more epochs, hence more iterations) keeps the same optimizer."""

    name: str
    lr0: float
    momentum: float
    warmup_bias_lr: float
    nbs: int = YOLOV8_NBS  # the default is what checkpoints from before this field ran with

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def choose_optimizer(config: TrainConfig, nc: int, n_train: int) -> OptimizerChoice:
    """YOLOv8's rule for optimizer='auto': AdamW with an lr fitted to the class count for runs
    under 10k nominal iterations, else SGD; Adam gets no warm-up bias lr (it would overshoot).

    One departure: the short-run AdamW recipe uses a nominal batch of 16, not 64, and twice the
    lr, unless config.nbs says otherwise. A few thousand images for a few epochs give YOLOv8's
    recipe only ~150 optimizer steps in all; four times as many steps reach the same mAP in half
    the epochs, and the larger lr gets further in them.
    """
    if config.optimizer != "auto":
        return OptimizerChoice(
            config.optimizer, config.lr0, config.momentum, config.warmup_bias_lr, config.nbs or YOLOV8_NBS
        )
    iterations = math.ceil(n_train / max(config.batch, YOLOV8_NBS)) * config.epochs
    if iterations > AUTO_SGD_MIN_ITERATIONS:
        return OptimizerChoice("SGD", 0.01, 0.9, config.warmup_bias_lr, config.nbs or YOLOV8_NBS)
    if config.nbs is not None:  # the nominal batch pinned (nbs=64: Ultralytics' recipe exactly)
        return OptimizerChoice("AdamW", round(0.002 * 5 / (4 + nc), 6), 0.9, 0.0, config.nbs)
    return OptimizerChoice("AdamW", round(SHORT_RUN_LR_GAIN * 0.002 * 5 / (4 + nc), 6), 0.9, 0.0, SHORT_RUN_NBS)


def accumulation_steps(batch: int, nbs: int) -> int:
    """Batches whose gradients are summed before a step, so each step sees ~nbs images."""
    return max(round(nbs / batch), 1)


def scaled_weight_decay(config: TrainConfig, nbs: int) -> float:
    """Weight decay is applied once per step, so it scales with the images per step."""
    return config.weight_decay * config.batch * accumulation_steps(config.batch, nbs) / nbs


def parameter_groups(model: nn.Module) -> tuple[list, list, list]:
    """(biases, decayed weights, normalization weights), in YOLOv8's group order pg0, pg1, pg2."""
    norm_types = tuple(v for k, v in vars(nn).items() if "Norm" in k and isinstance(v, type))
    biases, weights, norm_weights = [], [], []
    for module_name, module in model.named_modules():
        for param_name, param in module.named_parameters(recurse=False):
            if "bias" in param_name:
                biases.append(param)
            elif isinstance(module, norm_types):
                norm_weights.append(param)
            else:
                weights.append(param)
    return biases, weights, norm_weights


def build_optimizer(model: nn.Module, choice: OptimizerChoice, weight_decay: float) -> torch.optim.Optimizer:
    """Three groups: only conv/linear weights decay; biases and norm weights would be pulled to
    zero for no gain."""
    biases, weights, norm_weights = parameter_groups(model)
    if choice.name == "AdamW":
        optimizer = torch.optim.AdamW(biases, lr=choice.lr0, betas=(choice.momentum, 0.999), weight_decay=0.0)
    else:
        optimizer = torch.optim.SGD(biases, lr=choice.lr0, momentum=choice.momentum, nesterov=True)
    optimizer.add_param_group({"params": weights, "weight_decay": weight_decay})
    optimizer.add_param_group({"params": norm_weights, "weight_decay": 0.0})
    return optimizer


def lr_factor(epoch: int, epochs: int, lrf: float, cosine: bool) -> float:
    """Multiplier of lr0 for an epoch: falls from 1 to lrf, linearly or along a half cosine."""
    if cosine:
        return ((1 - math.cos(epoch * math.pi / epochs)) / 2) * (lrf - 1) + 1
    return max(1 - epoch / epochs, 0) * (1.0 - lrf) + lrf


def build_scheduler(
    optimizer: torch.optim.Optimizer, factor: Callable[[int], float]
) -> torch.optim.lr_scheduler.LambdaLR:
    # `factor` must be a plain function (a lambda): LambdaLR.state_dict() then stores None for it
    # instead of trying to copy a callable object's attributes.
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda=factor)


def warmup_iterations(config: TrainConfig, iters_per_epoch: int) -> int:
    """Iterations of warm-up (at least 100, so tiny data sets still warm up), or -1 for none."""
    if config.warmup_epochs <= 0:
        return -1
    return max(round(config.warmup_epochs * iters_per_epoch), MIN_WARMUP_ITERATIONS)


def apply_warmup(
    optimizer: torch.optim.Optimizer,
    iteration: int,
    n_warmup: int,
    epoch_factor: float,
    choice: OptimizerChoice,
    config: TrainConfig,
) -> int:
    """Set lr and momentum for a warm-up iteration and return the accumulation to use.

    Bias lr falls from warmup_bias_lr while the other lrs rise from 0, all towards the epoch's
    scheduled lr; accumulation ramps from 1 to its nominal value so the first steps come early.
    """
    span = [0, n_warmup]
    accumulate = max(1, int(np.interp(iteration, span, [1, choice.nbs / config.batch]).round()))
    for index, group in enumerate(optimizer.param_groups):
        start = choice.warmup_bias_lr if index == 0 else 0.0
        # float(): numpy scalars in param_groups would leak into state_dict and break JSON.
        group["lr"] = float(np.interp(iteration, span, [start, group["initial_lr"] * epoch_factor]))
        if "momentum" in group:
            group["momentum"] = float(np.interp(iteration, span, [config.warmup_momentum, choice.momentum]))
    return accumulate


class ModelEMA:
    """Exponential moving average of weights and float buffers; its decay ramps up from 0 with
    the number of updates, so early (random) weights are forgotten fast."""

    def __init__(self, model: nn.Module, decay: float = 0.9999, tau: float = 2000.0, updates: int = 0):
        self.ema = deepcopy(model).eval()
        self.decay_max, self.tau, self.updates = decay, tau, updates
        for param in self.ema.parameters():
            param.requires_grad_(False)

    def decay(self) -> float:
        return self.decay_max * (1 - math.exp(-self.updates / self.tau))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        weight = 1 - self.decay()
        source = model.state_dict()
        pairs = [(v, source[k]) for k, v in self.ema.state_dict().items() if v.dtype.is_floating_point]
        targets = [target for target, _ in pairs]
        torch._foreach_lerp_(targets, [value.detach() for _, value in pairs], weight)

    def state_dict(self) -> dict[str, Any]:
        return {"model": self.ema.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.ema.load_state_dict(state["model"])
        self.updates = int(state["updates"])
