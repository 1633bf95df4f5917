"""Training on several processes under torchrun: the process group and what the trainer needs of it.

torchrun starts one process per device and tells each its place through the environment
(RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR/PORT). A World is that place; every
collective the rest of artifactkit uses goes through it, and each is a no-op for one process, so
the single-process path runs exactly the code it ran before DDP existed.

Roles: every rank trains its shard of each global batch (DistributedDataParallel averages the
gradients); rank 0 alone keeps the EMA, validates and writes (checkpoints, run records, trackers),
while the others wait for it at a barrier.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Callable, Iterator, TypeVar

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from artifactkit.errors import ArtifactkitError, InvalidInput, PeerFailed

TIMEOUT_ENV = "ARTIFACTKIT_DDP_TIMEOUT"
_PR_SET_PDEATHSIG = 1  # linux/prctl.h
# Longest wait at one collective before a rank gives up (torch's own default for gloo). It has
# to outlast rank 0's validation and checkpoint copy, which the other ranks wait for.
DEFAULT_TIMEOUT_S = 1800.0
_ENV_KEYS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE")
T = TypeVar("T")


@dataclass(frozen=True)
class World:
    """This process's place among the training processes; World() is a lone process."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    local_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @classmethod
    def from_env(cls, environ: Any = None) -> "World":
        """What torchrun put in the environment (a lone process when WORLD_SIZE is unset)."""
        environ = os.environ if environ is None else environ
        if "WORLD_SIZE" not in environ:
            return cls()
        defaults = {"RANK": "0", "LOCAL_RANK": "0", "LOCAL_WORLD_SIZE": environ["WORLD_SIZE"]}
        values = {}
        for key in _ENV_KEYS:
            raw = environ.get(key, defaults.get(key))
            try:
                values[key] = int(raw)
            except ValueError:
                raise InvalidInput(f"environment variable {key}={raw!r} is not an integer") from None
        world = cls(values["RANK"], values["WORLD_SIZE"], values["LOCAL_RANK"], values["LOCAL_WORLD_SIZE"])
        if not (0 <= world.rank < world.size and 0 <= world.local_rank < world.local_size):
            raise InvalidInput(f"torchrun environment is inconsistent: {world}")
        return world

    @classmethod
    def current(cls) -> "World":
        """The process group this process has joined (a lone process when none)."""
        if not (dist.is_available() and dist.is_initialized()):
            return cls()
        rank, size = dist.get_rank(), dist.get_world_size()
        return cls(rank, size, int(os.environ.get("LOCAL_RANK", rank)), int(os.environ.get("LOCAL_WORLD_SIZE", size)))

    # ------------------------------------------------------------ collectives (no-ops alone)

    def lead(self, work: Callable[[], T]) -> T | None:
        """Rank 0 runs work() (e.g. creating the run) while the others wait; None on them. If it
        raises an ArtifactkitError the others raise PeerFailed, so a bad input ends the job with
        rank 0's one-line error rather than a lost connection on every other rank."""
        if not self.distributed:
            return work()
        if not self.is_main:
            failure = self.broadcast(None)
            if failure is not None:
                raise PeerFailed(f"rank 0 failed: {failure}")
            return None
        try:
            result = work()
        except ArtifactkitError as error:
            self.broadcast(str(error))
            raise
        self.broadcast(None)
        return result

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def broadcast(self, value: Any) -> Any:
        """Rank 0's value (plain picklable data) on every rank."""
        if not self.distributed:
            return value
        box = [value if self.is_main else None]
        dist.broadcast_object_list(box, src=0, device=torch.device("cpu"))
        return box[0]

    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        if self.distributed:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def broadcast_state(self, state: Any) -> Any:
        """Rank 0's nested training state (dicts, lists, tuples, tensors, plain values) on every
        rank, bit for bit: the structure as one object, all tensor bytes as one buffer."""
        if not self.distributed:
            return state
        tensors: list[torch.Tensor] = []
        skeleton = _strip(state, tensors) if self.is_main else None
        layout = [(t.dtype, tuple(t.shape)) for t in tensors]
        skeleton, layout = self.broadcast((skeleton, layout))
        sizes = [
            int(np.prod(shape, dtype=np.int64)) * torch.empty((), dtype=dtype).element_size() for dtype, shape in layout
        ]
        if self.is_main:
            buffer = torch.cat([_as_bytes(t) for t in tensors]) if tensors else torch.empty(0, dtype=torch.uint8)
        else:
            buffer = torch.empty(sum(sizes), dtype=torch.uint8)
        dist.broadcast(buffer, src=0)
        if self.is_main:
            return state
        parts = torch.split(buffer, sizes) if sizes else ()
        # clone(): a part's offset in the buffer need not be aligned for its dtype
        received = [part.clone().view(dtype).reshape(shape) for part, (dtype, shape) in zip(parts, layout)]
        return _fill(skeleton, received)


@dataclass(frozen=True)
class _Slot:
    index: int  # where a tensor was, in a skeleton sent to the other ranks


def _strip(value: Any, tensors: list[torch.Tensor]) -> Any:
    if isinstance(value, torch.Tensor):
        tensors.append(value)
        return _Slot(len(tensors) - 1)
    if isinstance(value, dict):
        return {key: _strip(item, tensors) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_strip(item, tensors) for item in value)
    return value


def _fill(value: Any, tensors: list[torch.Tensor]) -> Any:
    if isinstance(value, _Slot):
        return tensors[value.index]
    if isinstance(value, dict):
        return {key: _fill(item, tensors) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_fill(item, tensors) for item in value)
    return value


def _as_bytes(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.detach().to("cpu").contiguous().reshape(-1).view(torch.uint8)


# ------------------------------------------------------------------ joining and leaving


def timeout_s() -> float:
    raw = os.environ.get(TIMEOUT_ENV)
    if raw is None:
        return DEFAULT_TIMEOUT_S
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if value <= 0:
        raise InvalidInput(f"environment variable {TIMEOUT_ENV}={raw!r}: expected seconds > 0")
    return value


@contextmanager
def process_group() -> Iterator[World]:
    """Join torchrun's process group for the duration and leave it at the end; yields this
    process's World. A lone process (or one whose group the caller already set up) joins
    nothing. Errors raised inside name the rank, since every rank prints to the same console."""
    world = World.from_env()
    if not world.distributed or dist.is_initialized():
        yield World.current() if dist.is_initialized() else world
        return
    if "TORCHELASTIC_RUN_ID" in os.environ:
        _die_with_agent()
    if torch.cuda.is_available():
        torch.cuda.set_device(world.local_rank)  # NCCL's collectives run on this rank's GPU
    # gloo carries CPU tensors (and object broadcasts, barriers); NCCL the CUDA gradients.
    backend = "cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo"
    dist.init_process_group(backend, timeout=timedelta(seconds=timeout_s()))
    try:
        yield world
    except ArtifactkitError as error:
        raise type(error)(f"rank {world.rank}: {error}") from error
    finally:
        dist.destroy_process_group()


def _die_with_agent() -> None:
    """torchrun starts each worker in a session of its own, so a SIGKILL to torchrun (or to its
    process group) would leave the workers training on, unsupervised, still writing to the store
    (seen with torch 2.13). Linux can kill a process when its parent dies: ask for that."""
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) != 0:
        return  # best effort: without it the job still ends when a rank fails
    if os.getppid() == 1:  # the agent died before we asked: we were already orphaned
        os.kill(os.getpid(), signal.SIGKILL)


# ------------------------------------------------------------------ what the trainer asks


def rank_seed(seed: int, rank: int) -> int:
    """Rank 0 keeps the run's seed (so one process trains exactly as before); the other ranks
    get independent streams derived from (seed, rank)."""
    if rank == 0:
        return seed
    return int(np.random.SeedSequence([seed, rank]).generate_state(1)[0])


def rank_batch(batch: int, world: World) -> int:
    """This rank's share of the global batch."""
    if batch % world.size:
        raise InvalidInput(
            f"train config key 'batch' (--batch): {batch} is the global batch and must split evenly "
            f"over {world.size} processes; use a multiple of {world.size}"
        )
    return batch // world.size


def rank_device(device: torch.device, world: World) -> torch.device:
    """Under torchrun each process drives the GPU of its local rank."""
    if not world.distributed or device.type != "cuda":
        return device
    if device.index is not None and device.index != world.local_rank:
        raise InvalidInput(
            f"train config key 'device': {device} names one GPU, but under torchrun each process "
            "uses cuda:LOCAL_RANK; pass --device cuda (choose GPUs with CUDA_VISIBLE_DEVICES)"
        )
    return torch.device("cuda", world.local_rank)


def sync_batchnorm(model: nn.Module, device: torch.device) -> nn.Module:
    """BatchNorm statistics over the global batch instead of each rank's share."""
    if device.type != "cuda":
        raise InvalidInput("train config key 'sync_bn' (--sync-bn): SyncBatchNorm runs on CUDA devices only")
    return nn.SyncBatchNorm.convert_sync_batchnorm(model)


def wrap(model: nn.Module, world: World, device: torch.device) -> nn.Module:
    """The module to call for training steps: DDP around the model when there are several ranks."""
    if not world.distributed:
        return model
    device_ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=device_ids)
