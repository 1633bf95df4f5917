"""The training loop: YOLOv8's recipe in one readable class.

Saving, logging and trackers live outside, in callbacks. The loop's promise is reproducibility:
on CPU the same config gives the same weights, and a run stopped after any batch and continued
from state_dict() in a fresh process ends bit-identical to one that never stopped. A stop is asked
for with request_stop() (a signal handler may call it): the loop stops at the next batch boundary,
calls the callbacks' on_stop (which save the state) and raises Stopped.

Under torchrun (see distributed.py) every rank trains its share of each global batch through
DistributedDataParallel; rank 0 alone keeps the EMA, validates and calls the callbacks.
"""

import logging
import random
import time
from dataclasses import dataclass
from typing import Any, Callable, Protocol, Sequence

import numpy as np
import torch

from artifactkit.detector import distributed, optim
from artifactkit.detector.config import TrainConfig, augment_config
from artifactkit.detector.data import build_dataloader, effective_workers, load_split
from artifactkit.detector.loss import DetectionLoss
from artifactkit.detector.model import YOLO
from artifactkit.detector.pretrained import load_pretrained
from artifactkit.detector.state import (
    capture_rng,
    check_state_keys,
    optimizer_state_from_plain,
    restore_rng,
    warn_config_changes,
)
from artifactkit.detector.validation import (
    Evaluator,
    ValidationResult,
    autocast,
    fitness,
    metric_prefix,
    to_model_input,
)
from artifactkit.errors import InvalidInput, Stopped
from artifactkit.yolo import load_data_config

logger = logging.getLogger(__name__)

LOSS_NAMES = ("box", "cls", "dfl")


class Callback(Protocol):
    """What a trainer calls. Every method is optional: only those a callback defines are called.
    Exceptions raised by a callback stop training (they are never swallowed). Under torchrun only
    rank 0 calls them, so they alone write."""

    def on_train_start(self, trainer: "Trainer") -> None: ...

    def on_batch_end(self, trainer: "Trainer", progress: "BatchProgress") -> None: ...

    def on_validation(self, trainer: "Trainer", epoch: int, result: ValidationResult) -> None: ...

    def on_epoch_end(self, trainer: "Trainer", epoch: int, metrics: dict[str, float]) -> None: ...

    def on_stop(self, trainer: "Trainer") -> None: ...  # a stop was requested: save state_dict() now

    def on_train_end(self, trainer: "Trainer", metrics: dict[str, float]) -> None: ...


@dataclass(frozen=True)
class BatchProgress:
    """Where an epoch stands after a training batch (for progress bars and logs)."""

    epoch: int  # the epoch being trained, from 1
    epochs: int
    batch: int  # batches done in this epoch
    batches: int
    images: int  # images trained this epoch, over every rank
    seconds: float  # since the epoch started
    losses: Callable[[], dict[str, float]]  # the epoch's running mean losses; reads the device: call it sparingly


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise InvalidInput(f"train config key 'device': {name} requested but CUDA is not available")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class Trainer:
    """Trains a YOLO detector on one data set. fit() runs from self.epoch to config.epochs.
    `world` is this process's place under torchrun (default: the joined process group, if any).
    `weights` (a YOLO state_dict, named by `weights_from` in errors) starts the model from trained
    weights instead of random ones; `pretrained_note` then says if the head was re-initialised.
    Under torchrun rank 0 alone needs them: DDP copies rank 0's weights to the others."""

    def __init__(
        self,
        config: TrainConfig,
        callbacks: Sequence[Any] = (),
        world: distributed.World | None = None,
        weights: dict[str, torch.Tensor] | None = None,
        weights_from: str = "weights",
    ):
        self.config = config
        self.callbacks = list(callbacks)
        self.world = world or distributed.World.current()
        if config.threads is not None:
            torch.set_num_threads(config.threads)
        self.device = distributed.rank_device(resolve_device(config.device), self.world)
        rank_batch = distributed.rank_batch(config.batch, self.world)
        self.data = load_data_config(config.data)
        for split in ("train", *config.val_splits):
            if split not in self.data.splits:
                raise InvalidInput(f"train config key 'val_splits': split '{split}' is not in {config.data}")
        self.train_set = load_split(
            self.data,
            "train",
            imgsz=config.imgsz,
            augment=True,
            hyp=augment_config(config),
            seed=config.seed,
            cache=config.cache,
        )
        # The sampler's order depends on (seed, epoch) alone; each rank takes its shard of it.
        workers, _ = effective_workers(config.workers, len(self.train_set), rank_batch)
        self.train_loader = build_dataloader(
            self.train_set,
            rank_batch,
            workers,
            shuffle=True,
            seed=config.seed,
            rank=self.world.rank,
            world_size=self.world.size,
        )
        self.batches = len(self.train_loader)  # per epoch
        self.evaluator = Evaluator(self.data, config.imgsz, rank_batch * 2, config.workers, self.device, config.cache)
        if self.world.is_main:  # read (and check) the validation labels now, not after the first epoch
            for split in config.val_splits:
                self.evaluator.loader(split)
        seed_everything(config.seed)  # right before init: the weights depend on nothing else
        # channels_last: oneDNN (CPU) and cuDNN (CUDA) both run it without per-layer reorders.
        self.model = YOLO(nc=len(self.data.names), scale=config.model).to(
            self.device, memory_format=torch.channels_last
        )
        # Before the EMA copies the model and the optimizer groups its parameters.
        self.pretrained_note = load_pretrained(self.model, weights, weights_from) if weights is not None else None
        if config.sync_bn and self.world.distributed:
            self.model = distributed.sync_batchnorm(self.model, self.device)
        self.loss = DetectionLoss(self.model)
        self.ema = optim.ModelEMA(self.model) if self.world.is_main else None  # only rank 0 validates and saves
        self._lr_from: tuple[int, float] | None = None  # (epoch, lr factor) a change of length set (set_epochs)
        self.schedule_note: str | None = None  # what set_epochs() did to the schedule, in words
        self.choice = optim.choose_optimizer(config, len(self.data.names), len(self.train_set))
        self._build_optimizer()
        parallel = distributed.wrap(self.model, self.world, self.device)
        self.forward = torch.compile(parallel) if config.compile else parallel
        self.epoch = 0  # epochs completed
        self.step = 0  # training iterations (batches) completed
        self.batch = 0  # batches done of the epoch under way (0: at an epoch boundary)
        self._sums: _EpochSums | None = None  # the epoch under way's running sums (its metrics row)
        self._resumed_sums: _EpochSums | None = None  # loaded by load_state_dict for the epoch to continue
        self._stop: tuple[str, int] | None = None  # (reason, signum) asked by request_stop()
        self.last_opt_step = -1  # iteration of the last optimizer step: the accumulation phase
        self.best_fitness = 0.0
        self.best_epoch = 0  # the epoch that reached best_fitness (early stopping counts from it)
        self.is_best = False
        self.stop_reason: str | None = None  # set when early stopping ends the run before config.epochs
        self.metrics: dict[str, float] = {}

    def _build_optimizer(self) -> None:
        self.optimizer = optim.build_optimizer(
            self.model, self.choice, optim.scaled_weight_decay(self.config, self.choice.nbs)
        )
        # A lambda reading self.config, so set_epochs() reshapes the schedule in place.
        self.scheduler = optim.build_scheduler(self.optimizer, lambda epoch: self._lr_factor(epoch))

    def _lr_factor(self, epoch: int) -> float:
        if self._lr_from is not None and epoch >= self._lr_from[0]:  # the run's length changed at that epoch
            start, factor = self._lr_from
            span = max(self.config.epochs - start, 1)
            return factor + (self.config.lrf - factor) * min(epoch - start, span) / span
        return optim.lr_factor(epoch, self.config.epochs, self.config.lrf, self.config.cos_lr)

    # ---------------------------------------------------------------- the loop

    def fit(self) -> dict[str, float]:
        """Train epochs self.epoch .. config.epochs - 1 and return the last epoch's metrics."""
        self._call("on_train_start", self)
        for epoch in range(self.epoch, self.config.epochs):
            start = time.perf_counter()
            train_metrics = self._train_epoch(epoch)
            self.batch = 0
            learning_rates = {f"lr/pg{j}": group["lr"] for j, group in enumerate(self.optimizer.param_groups)}
            self.scheduler.step()
            self.epoch = epoch + 1
            if self.world.is_main:
                self._end_epoch(train_metrics, learning_rates, start)
            else:
                self.metrics = {"epoch": self.epoch, **train_metrics, **learning_rates}
            # The other ranks wait while rank 0 validates and copies the state it saves, so none
            # runs ahead into the next epoch's collectives meanwhile; rank 0's early stop is theirs.
            self.stop_reason = self.world.broadcast(self.stop_reason)
            if self.stop_reason:
                break
            self._stop_if_asked(epoch + 1, 0, 0)
        if not self.metrics and self.world.is_main:  # nothing left to train (e.g. a finished run loaded)
            val_metrics, score = self._validate_splits()
            self.metrics = {"epoch": self.epoch, **val_metrics, "fitness": score}
        self._call("on_train_end", self, self.metrics)
        return self.metrics

    def _end_epoch(self, train_metrics: dict[str, float], learning_rates: dict[str, float], start: float) -> None:
        val_metrics, score = self._validate_splits()
        self.is_best = score >= self.best_fitness
        self.best_fitness = max(score, self.best_fitness)
        if self.is_best:
            self.best_epoch = self.epoch
        patience = self.config.patience
        if patience and self.epoch < self.config.epochs and self.epoch - self.best_epoch >= patience:
            # decided before on_epoch_end, so this epoch's callbacks save it as the last one
            self.stop_reason = (
                f"no improvement in {patience} epochs (best fitness {self.best_fitness:.4f} at epoch {self.best_epoch})"
            )
        self.metrics = {
            "epoch": self.epoch,
            **train_metrics,
            **val_metrics,
            **learning_rates,
            "time/epoch_s": time.perf_counter() - start,
            "fitness": score,
        }
        logger.info("epoch %d/%d %s", self.epoch, self.config.epochs, _summary(self.metrics))
        self._call("on_epoch_end", self, self.epoch, self.metrics)

    def _train_epoch(self, epoch: int) -> dict[str, float]:
        self._prepare_epoch(epoch)
        self.model.train()
        sampler = self.train_loader.sampler
        sampler.start = 0
        n_batches = len(self.train_loader)
        n_warmup = optim.warmup_iterations(self.config, n_batches)
        sums, self._resumed_sums = self._resumed_sums, None
        if sums is None:  # a fresh epoch (else one continued from a mid-epoch checkpoint)
            sums = _EpochSums(
                torch.zeros(len(LOSS_NAMES), device=self.device),
                0,
                0.0,
                optim.accumulation_steps(self.config.batch, self.choice.nbs),
            )
        self._sums = sums
        first = self.batch  # batches of this epoch already trained (before a resume)
        sampler.start = first * self.train_loader.batch_size  # samples are (seed, epoch, index) alone
        start = time.perf_counter() - sums.seconds
        try:
            for i, batch in enumerate(self.train_loader, start=first):
                self._train_batch(epoch, i, n_batches, n_warmup, batch, sums, start)
                self._stop_if_asked(epoch, i + 1, n_batches)
        finally:
            sampler.start = 0
        iteration = n_batches * (epoch + 1) - 1  # the epoch's last
        loss_sums, n_images = sums.losses, sums.images
        if n_batches and self.last_opt_step < iteration:
            # Step on the epoch's last partial accumulation instead of carrying it over (YOLOv8)
            # or dropping it (a few % of the data): an epoch boundary leaves no gradient behind,
            # so it is a clean point to stop and resume, and every image counts.
            self._optimizer_step()
            self.last_opt_step = iteration
        self.step = n_batches * (epoch + 1)
        self._sums = None
        return self._train_metrics(loss_sums, n_images, n_batches, time.perf_counter() - start)

    def _train_batch(
        self, epoch: int, i: int, n_batches: int, n_warmup: int, batch: dict[str, Any], sums: "_EpochSums", start: float
    ) -> None:
        iteration = i + n_batches * epoch
        if iteration <= n_warmup:
            sums.accumulate = optim.apply_warmup(
                self.optimizer, iteration, n_warmup, self._lr_factor(epoch), self.choice, self.config
            )
        loss, items = self._forward_loss(batch)
        if self.world.distributed:
            # DDP averages gradients over ranks; scaled as YOLOv8 does, the update is the sum
            # over the global batch that one process would have computed.
            loss = loss * self.world.size
        loss.backward()
        sums.losses += torch.stack([items[name].detach() for name in LOSS_NAMES])
        if iteration - self.last_opt_step >= sums.accumulate:
            self._optimizer_step()
            self.last_opt_step = iteration
        sums.images += batch["img"].shape[0]
        self.batch, self.step = i + 1, iteration + 1
        sums.seconds = time.perf_counter() - start
        if self.world.is_main:
            self._call(
                "on_batch_end",
                self,
                BatchProgress(
                    epoch + 1,
                    self.config.epochs,
                    i + 1,
                    n_batches,
                    sums.images * self.world.size,
                    sums.seconds,
                    lambda n=i + 1, losses=sums.losses: dict(zip(LOSS_NAMES, (losses / n).tolist())),
                ),
            )

    def request_stop(self, reason: str, signum: int = 0) -> None:
        """Stop at the next batch boundary: on_stop callbacks save, then fit() raises Stopped.
        Safe to call from a signal handler (it only sets a flag)."""
        if self._stop is None:
            self._stop = (reason, signum)

    def _stop_if_asked(self, epoch: int, batch: int, batches: int) -> None:
        """At a batch boundary: stop if asked (under torchrun: if any rank was, every rank stops)."""
        asked = self._stop is not None
        if self.world.distributed:  # one tiny collective per batch: every rank stops at the same one
            asked = bool(self.world.all_reduce_sum(torch.tensor([float(asked)], device=self.device)).item())
        if not asked:
            return
        reason, signum = self._stop or ("another rank stopped", 0)
        self._call("on_stop", self)
        where = f"epoch {epoch + 1}, batch {batch}/{batches}" if batch else f"the end of epoch {epoch}"
        raise Stopped(f"{reason}: stopped at {where}", signum, saved=True)

    def _train_metrics(
        self, loss_sums: torch.Tensor, n_images: int, n_batches: int, seconds: float
    ) -> dict[str, float]:
        """Mean losses and throughput over every rank's batches: one collective (none alone)."""
        totals = self.world.all_reduce_sum(torch.cat([loss_sums, loss_sums.new_tensor([n_images, n_batches])]))
        *means, images = torch.cat([totals[:-2] / totals[-1].clamp(min=1), totals[-2:-1]]).tolist()  # one device sync
        return {
            **{f"train/{name}_loss": value for name, value in zip(LOSS_NAMES, means)},
            "speed/train_img_s": images / seconds if seconds > 0 else 0.0,
        }

    def _prepare_epoch(self, epoch: int) -> None:
        # Reseeding from (seed, epoch) makes global RNG use (e.g. DataLoader worker seeds) depend
        # on nothing that happened before, whether in this process or one that was resumed; each
        # rank draws its own stream of it.
        seed_everything(distributed.rank_seed(self.config.seed * 1_000_003 + epoch, self.world.rank))
        if epoch >= self.config.epochs - self.config.mosaic_off_epochs():
            self.train_set.close_mosaic()
        self.train_set.set_epoch(epoch)
        sampler = getattr(self.train_loader, "sampler", None)
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)

    def _forward_loss(self, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        images = to_model_input(batch["img"], self.device)
        targets = batch["targets"].to(self.device, non_blocking=True)
        with autocast(self.device):
            outputs = self.forward(images)
        # The assigner and IoU terms need float32; only the network runs in bf16.
        return self.loss([o.float() for o in outputs], targets)

    def _optimizer_step(self) -> None:
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), max_norm=optim.GRAD_CLIP_NORM)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        if self.ema is not None:
            self.ema.update(self.model)

    # ---------------------------------------------------------------- validation

    def validate(self, split: str = "val", model: YOLO | None = None) -> tuple[dict[str, float], ValidationResult]:
        """Score `model` (default: the EMA weights) on one split of the data set."""
        return self.evaluator.evaluate(self.ema.ema if model is None else model, split)

    def _validate_splits(self) -> tuple[dict[str, float], float]:
        """Metrics of every configured split, and the fitness of 'val' (or the first split)."""
        metrics: dict[str, float] = {}
        for split in self.config.val_splits:
            split_metrics, result = self.validate(split)
            metrics.update(split_metrics)
            self._call("on_validation", self, self.epoch, result)
        first = "val" if "val" in self.config.val_splits else self.config.val_splits[0]
        prefix = metric_prefix(first)
        scores = {"mAP50": metrics[f"{prefix}/mAP50"], "mAP50-95": metrics[f"{prefix}/mAP50-95"]}
        return metrics, fitness(scores)

    # ---------------------------------------------------------------- state

    def set_epochs(self, epochs: int) -> None:
        """Change the planned length (e.g. extend a finished run). The learning rate does not jump:
        it goes on from where it is now and falls linearly to lr0 * lrf at the new last epoch (an
        extended finished run, already at lrf, stays there). schedule_note says so in words."""
        if epochs < self.epoch:
            raise InvalidInput(f"train config key 'epochs': {epochs} is below the {self.epoch} epochs already done")
        old = self.config.epochs
        if epochs == old:
            return
        factor = self._lr_factor(self.epoch)
        self._lr_from = (self.epoch, factor)
        self.config = self.config.replace(epochs=epochs)
        for group in self.optimizer.param_groups:
            group["lr"] = group["initial_lr"] * factor
        self.scheduler._last_lr = [group["lr"] for group in self.optimizer.param_groups]
        lr0 = self.optimizer.param_groups[0]["initial_lr"]
        self.schedule_note = (
            f"epochs {old} -> {epochs}: the learning rate goes on from {lr0 * factor:.3g} and "
            f"falls linearly to {lr0 * self.config.lrf:.3g} at epoch {epochs} "
            "(the schedule does not restart)"
        )

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue bit-exactly. Like nn.Module.state_dict(), the tensors are
        the live ones, on the training device: copy them (checkpoint.flatten makes the one CPU
        copy) before training goes on. The rest is plain data; tuples and int keys may come back
        as lists and strings after JSON, which load_state_dict() accepts."""
        return {
            "batch": self.batch,
            "partial": self._partial_state() if self.batch else None,
            "model": self.model.state_dict(),
            "ema": self.ema.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "epoch": self.epoch,
            "step": self.step,
            "last_opt_step": self.last_opt_step,
            "best_fitness": float(self.best_fitness),
            "best_epoch": self.best_epoch,
            "config": self.config.model_dump(mode="json"),
            "optimizer_choice": self.choice.to_dict(),
            "rng": capture_rng(),
            "lr_from": list(self._lr_from) if self._lr_from else None,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore state_dict() output (also after a JSON round trip); fit() then continues."""
        check_state_keys(state)
        warn_config_changes(self.config, state["config"])
        choice = optim.OptimizerChoice(**state["optimizer_choice"])
        if choice != self.choice:  # e.g. more epochs now would make 'auto' pick another optimizer
            self.choice = choice
            self._build_optimizer()
        self.model.load_state_dict(state["model"])
        if self.ema is not None:  # under torchrun only rank 0 keeps one
            self.ema.load_state_dict(state["ema"])
        self.optimizer.load_state_dict(optimizer_state_from_plain(state["optimizer"]))
        self.scheduler.load_state_dict(dict(state["scheduler"]))
        self.epoch = int(state["epoch"])
        self.step = int(state["step"])
        self.last_opt_step = int(state["last_opt_step"])
        self.best_fitness = float(state["best_fitness"])
        self.best_epoch = int(state.get("best_epoch", self.epoch))  # older checkpoints: count from here
        restore_rng(state["rng"])
        batch = state.get("batch") or 0  # checkpoints from before mid-epoch saves: 0
        if type(batch) is not int or not 0 <= batch <= self.batches:  # read from a store: untrusted
            raise InvalidInput(
                f"training state: batch {batch!r} is not one of this epoch's 0..{self.batches} "
                "(a different --batch or dataset?)"
            )
        self.batch = batch
        if self.batch:
            self._load_partial(state["partial"])
        lr_from = state.get("lr_from")
        if lr_from is not None and not (
            isinstance(lr_from, (list, tuple))
            and len(lr_from) == 2
            and type(lr_from[0]) is int
            and isinstance(lr_from[1], float)
        ):
            raise InvalidInput(f"training state: lr_from {lr_from!r} is not [epoch, lr factor]")
        self._lr_from = (lr_from[0], lr_from[1]) if lr_from else None
        planned = int(state["config"]["epochs"])
        if planned != self.config.epochs:  # resumed with another --epochs: the schedule from here on
            epochs, self.config = self.config.epochs, self.config.replace(epochs=planned)
            self.set_epochs(epochs)

    def _partial_state(self) -> dict[str, Any]:
        """The epoch under way: its running sums, and the gradients summed since the last
        optimizer step (None after a step), which the next batches add to."""
        sums = self._sums
        return {
            "losses": sums.losses,
            "images": sums.images,
            "seconds": sums.seconds,
            "accumulate": sums.accumulate,
            "grads": [p.grad for p in self.model.parameters()],
        }

    def _load_partial(self, partial: Any) -> None:
        params = list(self.model.parameters())
        if not (
            isinstance(partial, dict)
            and isinstance(partial.get("grads"), list)
            and len(partial["grads"]) == len(params)
            and isinstance(partial.get("losses"), torch.Tensor)
            and partial["losses"].shape == (len(LOSS_NAMES),)
            and type(partial.get("images")) is int
            and type(partial.get("accumulate")) is int
            and partial["accumulate"] >= 1
            and isinstance(partial.get("seconds"), (int, float))
        ):
            raise InvalidInput("training state: a mid-epoch checkpoint without the epoch's running sums and gradients")
        for p, grad in zip(params, partial["grads"]):
            # empty_like keeps the parameter's memory format: a norm sums in the same order
            p.grad = None if grad is None else torch.empty_like(p).copy_(torch.as_tensor(grad))
        self._resumed_sums = _EpochSums(
            partial["losses"].to(self.device),
            int(partial["images"]),
            float(partial["seconds"]),
            int(partial["accumulate"]),
        )

    def _call(self, event: str, *args: Any) -> None:
        if not self.world.is_main:
            return
        for callback in self.callbacks:
            method = getattr(callback, event, None)
            if method is not None:
                method(*args)


@dataclass
class _EpochSums:
    """What an epoch accumulates batch by batch: loss sums, images, seconds, and the current
    accumulation length (warm-up changes it); saved in a mid-epoch checkpoint."""

    losses: torch.Tensor
    images: int
    seconds: float
    accumulate: int


def _summary(metrics: dict[str, float]) -> str:
    keys = ("train/box_loss", "train/cls_loss", "metrics/mAP50", "metrics/mAP50-95", "speed/train_img_s")
    return " ".join(f"{k}={metrics[k]:.4g}" for k in keys if k in metrics)
