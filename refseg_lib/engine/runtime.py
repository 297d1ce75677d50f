"""Where and how a run executes: the device, seeds and deterministic algorithms, autocast
precision, the DDP process group, and the loaders whose data order is a pure function of
``(seed, epoch)`` (so that a resumed run skips exactly the batches already consumed).
"""

from __future__ import annotations

import contextlib
import os
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from refseg_lib.data.types import Batch
from refseg_lib.engine.config import AMP_MODES, check_choice


def pick_device(preference: str | torch.device | None = None) -> torch.device:
    """The device to train on: ``preference`` if given (checked), else CUDA > MPS > CPU."""
    if preference is not None:
        device = torch.device(preference)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError(f"device {device} was asked for but CUDA is not available")
        if device.type == "mps" and not torch.backends.mps.is_available():
            raise RuntimeError("device 'mps' was asked for but MPS is not available")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def seed_everything(seed: int) -> None:
    """Seed python's ``random``, numpy's global generator and torch (CPU and every GPU)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@contextlib.contextmanager
def deterministic_algorithms(enabled: bool = True) -> Iterator[None]:
    """Switch ``torch.use_deterministic_algorithms`` on inside the block, then restore it."""
    previous = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    if enabled:
        torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous, warn_only=warn_only)


def autocast_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``amp`` on ``device``; None means full float32."""
    check_choice("amp", amp, AMP_MODES)
    if amp == "off" or (amp == "auto" and device.type != "cuda"):
        return None
    if amp == "fp16" and device.type != "cuda":
        raise ValueError(f"amp='fp16' needs a CUDA device, got {device}; use 'bf16' or 'off'")
    if amp == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if amp == "bf16" else torch.float16


def autocast_context(device: torch.device, dtype: torch.dtype | None
                     ) -> contextlib.AbstractContextManager:
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def model_device(model: nn.Module) -> torch.device:
    parameter = next(model.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """``model.eval()`` and no gradients inside the block; the previous mode is restored."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(was_training)


# ---------------------------------------------------------------------------------------------
# Distributed environment
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DistributedEnv:
    """Where this process sits in a ``torchrun`` launch (1 process, rank 0 otherwise)."""

    world_size: int = 1
    rank: int = 0
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def distributed_env() -> DistributedEnv:
    """Read ``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK`` as set by ``torchrun``."""
    return DistributedEnv(world_size=int(os.environ.get("WORLD_SIZE", "1")),
                          rank=int(os.environ.get("RANK", "0")),
                          local_rank=int(os.environ.get("LOCAL_RANK", "0")))


def world_size_and_rank() -> tuple[int, int]:
    """(world size, rank) of the initialised process group, (1, 0) without one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size(), dist.get_rank()
    return 1, 0


def training_device(device: str | torch.device | None, env: DistributedEnv) -> torch.device:
    """``pick_device(device)``; under torchrun on GPUs, the GPU of this process's local rank."""
    chosen = pick_device(device)
    if env.enabled and chosen.type == "cuda" and chosen.index is None:
        chosen = torch.device("cuda", env.local_rank)
    if chosen.type == "cuda":
        torch.cuda.set_device(chosen)
    return chosen


def join_process_group(env: DistributedEnv, device: torch.device) -> bool:
    """Initialise the process group if torchrun started us and nobody did; True if we did."""
    if not env.enabled or dist.is_initialized():
        return False
    dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return True


def mean_across_ranks(values: dict[str, float], device: torch.device) -> dict[str, float]:
    """Average each value over the ranks (identity in a single process)."""
    if world_size_and_rank()[0] == 1 or not values:
        return values
    keys = sorted(values)
    stacked = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(stacked)
    stacked /= world_size_and_rank()[0]
    return dict(zip(keys, stacked.tolist(), strict=True))


# ---------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------


class ResumableSampler(DistributedSampler):
    """``DistributedSampler`` that can start part-way into an epoch.

    The order of an epoch is a pure function of ``(seed, epoch)`` (and of the rank's shard);
    ``set_epoch(epoch, start)`` skips the first ``start`` indices of this rank, so a resumed
    run reads exactly the batches the interrupted one had not reached, without loading the
    others. With one process it is a plain (shuffled or sequential) sampler.
    """

    def __init__(self, dataset: Dataset, *, shuffle: bool, seed: int, drop_last: bool):
        num_replicas, rank = world_size_and_rank()
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle,
                         seed=seed, drop_last=drop_last)
        self.start = 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        super().set_epoch(epoch)
        self.start = start

    def __iter__(self) -> Iterator[int]:
        indices = list(super().__iter__())
        return iter(indices[self.start:])

    def __len__(self) -> int:
        return max(0, self.num_samples - self.start)


def _seed_worker(worker_id: int) -> None:
    """Seed numpy in a DataLoader worker from torch's per-worker seed (torch seeds the rest)."""
    np.random.seed(torch.initial_seed() % 2**32)


def make_loader(dataset: Dataset, batch_size: int, collate_fn: Callable[[list], Batch], *,
                shuffle: bool, seed: int, drop_last: bool, num_workers: int = 0,
                pin_memory: bool = False) -> DataLoader:
    """A DataLoader whose order is a pure function of ``(seed, epoch)``.

    It samples with a ``ResumableSampler`` (a ``DistributedSampler``: one shard per rank under
    torchrun, everything in a single process) and draws worker seeds from its own generator,
    so iterating never touches the global random state. Call ``set_loader_epoch(loader,
    epoch)`` before each epoch.
    """
    sampler = ResumableSampler(dataset, shuffle=shuffle, seed=seed, drop_last=drop_last)
    loader = DataLoader(dataset, batch_size=batch_size, sampler=sampler, collate_fn=collate_fn,
                        drop_last=drop_last, num_workers=num_workers, pin_memory=pin_memory,
                        worker_init_fn=_seed_worker, generator=torch.Generator())
    set_loader_epoch(loader, 0)
    return loader


def set_loader_epoch(loader: DataLoader, epoch: int, start_batch: int = 0) -> None:
    """Set the epoch of a ``make_loader`` loader, skipping its first ``start_batch`` batches."""
    sampler = loader.sampler
    if not isinstance(sampler, ResumableSampler):
        raise TypeError("set_loader_epoch needs a loader built by make_loader")
    sampler.set_epoch(epoch, start_batch * loader.batch_size)
    loader.generator.manual_seed(sampler.seed + epoch)
