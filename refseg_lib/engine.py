"""Training and evaluation of every model of the course: ``fit``, ``evaluate``, ``predict``.

One loop serves all five papers. It never special-cases a model: a model is called as
``model(batch.images, batch.tokens, batch.lengths)`` and returns a ``ModelOutput``; a loss is
``loss_fn(output, batch) -> (loss, parts)`` (``refseg_lib.losses``).

What the loop takes care of:

- **Devices and precision.** ``pick_device`` prefers CUDA, then Apple MPS, then the CPU. With
  ``amp="auto"`` training and evaluation run under bf16 autocast on CUDA GPUs that support it
  and fp16 + ``GradScaler`` on older ones; on CPU and MPS they stay in float32.
- **Schedules of the papers.** ``"step"`` (MCN: x0.1 at epochs 30/35/40, given in steps),
  ``"poly"`` (CMSA: power 0.9 down to a floor), ``"plateau"`` (DMN: ReduceLROnPlateau,
  patience 2, x0.1, on ``1 - val overall IoU`` at each evaluation), ``"constant"``.
- **Reproducibility.** The data order is a pure function of ``(seed, epoch)``
  (``make_loader``). On CPU deterministic algorithms are switched on for the duration of
  ``fit``, and a run resumed from a checkpoint ends bit-identical to an uninterrupted one.
- **Checkpoints.** Written atomically every ``checkpoint_every`` steps and at the end; they hold
  only tensors and plain Python data, so ``torch.load(path, weights_only=True)`` reads them
  (no pickled objects, nothing executed on load). If the checkpoint file exists, ``fit``
  resumes from it: weights, optimizer, scheduler, scaler, random generators, the position
  inside the epoch (the batches already consumed are skipped, not re-read) and the history.
- **Scale-out.** Under ``torchrun --nproc_per_node=N`` (``WORLD_SIZE`` > 1) ``fit`` joins the
  process group (gloo on CPU, NCCL on CUDA), wraps the model in ``DistributedDataParallel``
  and gives every rank its own shard of each epoch. Only rank 0 shows progress, evaluates
  and writes checkpoints (see ``fit``).
"""

from __future__ import annotations

import contextlib
import math
import os
import random
import time
from bisect import bisect_right
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, DistributedSampler
from tqdm.auto import tqdm

from refseg_lib.data.types import Batch
from refseg_lib.losses import mask_bce, resize_instances, resize_logits
from refseg_lib.metrics import PRIMARY_THRESHOLD, InstanceMeter, SegmentationMeter
from refseg_lib.models.registry import ModelOutput
from refseg_lib.records import atomic_write, dataclass_from_dict

__all__ = [
    "AMP_MODES", "OPTIMIZERS", "SCHEDULES", "CheckpointError", "DistributedEnv", "EvalResult",
    "ResumableSampler", "TrainConfig", "TrainProgress", "TrainResult", "autocast_dtype",
    "build_optimizer", "build_scheduler", "deterministic_algorithms", "distributed_env",
    "epochs_to_steps",
    "evaluate", "fit", "load_checkpoint", "load_model_weights", "make_loader", "pick_device",
    "predict", "seed_everything", "set_loader_epoch", "steps_per_epoch",
]

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("constant", "step", "poly", "plateau")
AMP_MODES = ("auto", "off", "bf16", "fp16")
CHECKPOINT_FORMAT = "refseg-checkpoint-v1"
# Fields that may change between a run and its resumption without changing its trajectory
# (max_steps extends or shortens a run; note that it also sets the length of a poly schedule).
RESUMABLE_CHANGES = frozenset({"max_steps", "eval_every", "checkpoint_every", "log_every",
                               "num_workers", "eval_batch_size"})

LossFn = Callable[[ModelOutput, Batch], tuple[torch.Tensor, dict[str, float]]]
Callback = Callable[[int, dict[str, Any]], None]


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be read or does not fit the model / configuration at hand."""


# ---------------------------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------------------------


@dataclass
class TrainConfig:
    """Everything that decides a training run. Steps are the one unit of time: derive them from
    epochs with ``epochs_to_steps`` (and MCN's epoch milestones the same way)."""

    max_steps: int = 1000
    """Optimizer steps to train for (one step = one batch on every rank)."""
    batch_size: int = 8
    """Samples per step and per rank (the global batch is ``batch_size x world_size``)."""
    lr: float = 1e-3
    """Base learning rate (DMN 1e-5, CMSA 2.5e-4, MCN 1e-3)."""
    weight_decay: float = 0.0
    """L2 penalty added to the gradients (Adam/SGD) or decoupled decay (AdamW); CMSA 5e-4."""
    optimizer: str = "adam"
    """``"adam"``, ``"adamw"`` or ``"sgd"`` (with ``momentum``); the three papers use Adam."""
    momentum: float = 0.9
    """SGD momentum (ignored by Adam/AdamW)."""
    bias_lr_factor: float = 1.0
    """Learning-rate multiplier of biases and other 1-D parameters (CMSA: 2.0)."""
    decay_biases: bool = True
    """Whether biases and other 1-D parameters get ``weight_decay`` (CMSA: False)."""
    schedule: str = "constant"
    """``"constant"``, ``"step"`` (x ``gamma`` at each of ``milestones``), ``"poly"``
    (``(1 - step / max_steps) ** poly_power`` down to ``min_lr``), ``"plateau"``."""
    milestones: tuple[int, ...] = ()
    """Steps after which the ``"step"`` schedule multiplies the lr by ``gamma`` (MCN)."""
    gamma: float = 0.1
    """Factor of the ``"step"`` schedule."""
    poly_power: float = 0.9
    """Power of the ``"poly"`` schedule (CMSA, DeepLab)."""
    min_lr: float = 0.0
    """Floor of the ``"poly"`` schedule, reached at ``max_steps`` (CMSA: 1e-5)."""
    plateau_patience: int = 2
    """``"plateau"``: evaluations without improvement before the lr drops (DMN: 2)."""
    plateau_factor: float = 0.1
    """``"plateau"``: factor applied to the lr on a plateau of ``1 - val overall IoU``."""
    grad_clip: float | None = None
    """Clip the global gradient norm to this value; None leaves gradients alone."""
    amp: str = "auto"
    """Mixed precision: ``"auto"`` (bf16 on CUDA where supported, else fp16 with a
    GradScaler; off on CPU and MPS), ``"off"``, ``"bf16"`` or ``"fp16"`` (CUDA only)."""
    seed: int = 0
    """Seeds python, numpy and torch at the start of ``fit``, and the data order."""
    deterministic: bool = True
    """Use deterministic algorithms on CPU (``torch.use_deterministic_algorithms``) during fit."""
    eval_every: int | None = None
    """Evaluate on ``val_set`` every this many steps (and always at the end); None: at the end."""
    eval_thresholds: tuple[float, ...] = (PRIMARY_THRESHOLD,)
    """Binarisation thresholds of the evaluations (0.5 always; add MCN's 0.35)."""
    eval_batch_size: int = 32
    """Batch size of the evaluations."""
    checkpoint_every: int | None = None
    """Write the checkpoint every this many steps (and always at the end); None: at the end."""
    log_every: int = 10
    """Append the mean loss of the last steps to the history every this many steps."""
    num_workers: int = 0
    """DataLoader worker processes (0 = load in the training process)."""
    ddp_find_unused_parameters: bool = False
    """Passed to DistributedDataParallel: set it for models with parameters a variant skips."""

    def __post_init__(self) -> None:
        self.milestones = tuple(int(m) for m in self.milestones)
        self.eval_thresholds = tuple(float(t) for t in self.eval_thresholds)
        _check_choice("optimizer", self.optimizer, OPTIMIZERS)
        _check_choice("schedule", self.schedule, SCHEDULES)
        _check_choice("amp", self.amp, AMP_MODES)
        for name in ("max_steps", "batch_size", "log_every", "eval_batch_size"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("eval_every", "checkpoint_every", "grad_clip"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"{name} must be positive or None, got {value}")
        if list(self.milestones) != sorted(self.milestones) or any(m < 1 for m in self.milestones):
            raise ValueError(f"milestones must be increasing positive steps, got {self.milestones}")
        if self.schedule == "poly" and not 0 <= self.min_lr <= self.lr:
            raise ValueError(f"min_lr must lie in [0, lr={self.lr}], got {self.min_lr}")
        if self.num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {self.num_workers}")

    def to_dict(self) -> dict[str, Any]:
        """Plain data (for checkpoints and run records)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        return dataclass_from_dict(cls, data, "TrainConfig")


def _check_choice(name: str, value: str, choices: Sequence[str]) -> None:
    if value not in choices:
        raise ValueError(f"unknown {name} {value!r}; choose one of {', '.join(choices)}")


def steps_per_epoch(num_samples: int, batch_size: int, *, world_size: int = 1,
                    drop_last: bool = True) -> int:
    """Optimizer steps in one pass over ``num_samples`` samples split across ``world_size`` ranks
    (what ``make_loader`` yields per epoch)."""
    per_rank = num_samples // world_size if drop_last else math.ceil(num_samples / world_size)
    return per_rank // batch_size if drop_last else math.ceil(per_rank / batch_size)


def epochs_to_steps(epochs: float, num_samples: int, batch_size: int, *, world_size: int = 1,
                    drop_last: bool = True) -> int:
    """``epochs`` expressed in optimizer steps, e.g. MCN's milestones at epochs 30, 35, 40."""
    spe = steps_per_epoch(num_samples, batch_size, world_size=world_size, drop_last=drop_last)
    return round(epochs * spe)


# ---------------------------------------------------------------------------------------------
# Devices, seeds, precision
# ---------------------------------------------------------------------------------------------


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
    _check_choice("amp", amp, AMP_MODES)
    if amp == "off" or (amp == "auto" and device.type != "cuda"):
        return None
    if amp == "fp16" and device.type != "cuda":
        raise ValueError(f"amp='fp16' needs a CUDA device, got {device}; use 'bf16' or 'off'")
    if amp == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if amp == "bf16" else torch.float16


def _autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def _model_device(model: nn.Module) -> torch.device:
    parameter = next(model.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")


@contextlib.contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
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


def _world() -> tuple[int, int]:
    """(world size, rank) of the initialised process group, (1, 0) without one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size(), dist.get_rank()
    return 1, 0


def _training_device(device: str | torch.device | None, env: DistributedEnv) -> torch.device:
    """``pick_device(device)``; under torchrun on GPUs, the GPU of this process's local rank."""
    chosen = pick_device(device)
    if env.enabled and chosen.type == "cuda" and chosen.index is None:
        chosen = torch.device("cuda", env.local_rank)
    if chosen.type == "cuda":
        torch.cuda.set_device(chosen)
    return chosen


def _join_process_group(env: DistributedEnv, device: torch.device) -> bool:
    """Initialise the process group if torchrun started us and nobody did; True if we did."""
    if not env.enabled or dist.is_initialized():
        return False
    dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return True


def _mean_across_ranks(values: dict[str, float], device: torch.device) -> dict[str, float]:
    """Average each value over the ranks (identity in a single process)."""
    if _world()[0] == 1 or not values:
        return values
    keys = sorted(values)
    stacked = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(stacked)
    stacked /= _world()[0]
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
        num_replicas, rank = _world()
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


# ---------------------------------------------------------------------------------------------
# Optimizer and learning-rate schedules
# ---------------------------------------------------------------------------------------------


def build_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """Adam / AdamW / SGD over the trainable parameters, biases in their own group when
    ``bias_lr_factor`` or ``decay_biases`` asks for it (CMSA: 2x lr, no decay)."""
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the model has no trainable parameters")
    if config.bias_lr_factor == 1.0 and config.decay_biases:
        groups = [{"params": params}]
    else:
        weights = [p for p in params if p.ndim > 1]
        biases = [p for p in params if p.ndim <= 1]
        bias_decay = config.weight_decay if config.decay_biases else 0.0
        groups = [{"params": weights},
                  {"params": biases, "lr": config.lr * config.bias_lr_factor,
                   "weight_decay": bias_decay}]
        groups = [g for g in groups if g["params"]]
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum,
                               weight_decay=config.weight_decay)
    optimizer_class = torch.optim.Adam if config.optimizer == "adam" else torch.optim.AdamW
    return optimizer_class(groups, lr=config.lr, weight_decay=config.weight_decay)


def _lr_factor(config: TrainConfig) -> Callable[[int], float]:
    """Multiplier of the base lr after ``s`` completed steps, for the per-step schedules."""
    if config.schedule == "step":
        # MCN: lr * gamma ** (number of milestones passed)
        return lambda s: config.gamma ** bisect_right(config.milestones, s)
    if config.schedule == "poly":
        # CMSA: lr_s = min_lr + (lr - min_lr) * (1 - s / max_steps) ** power
        floor = config.min_lr / config.lr if config.lr > 0 else 0.0
        return lambda s: floor + (1 - floor) * max(0.0, 1 - s / config.max_steps) ** (
            config.poly_power)
    return lambda s: 1.0


def build_scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig):
    """A ``LambdaLR`` stepped after every optimizer step (constant, step, poly), or DMN's
    ``ReduceLROnPlateau`` stepped with ``1 - val overall IoU`` after every evaluation."""
    if config.schedule == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="min", factor=config.plateau_factor, patience=config.plateau_patience)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_factor(config))


# ---------------------------------------------------------------------------------------------
# Random states and checkpoints (tensors and plain data only: weights_only=True loads them)
# ---------------------------------------------------------------------------------------------


def _rng_state() -> dict[str, Any]:
    version, internal, gauss_next = random.getstate()
    _, keys, pos, has_gauss, cached_gaussian = np.random.get_state()
    return {
        "python": {"version": version, "internal": list(internal), "gauss_next": gauss_next},
        "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached_gaussian)},
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def _set_rng_state(state: dict[str, Any]) -> None:
    python = state["python"]
    random.setstate((python["version"], tuple(python["internal"]), python["gauss_next"]))
    numpy = state["numpy"]
    np.random.set_state(("MT19937", numpy["keys"].numpy().astype(np.uint32), numpy["pos"],
                         numpy["has_gauss"], numpy["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if torch.cuda.is_available():
        for index, cuda_state in enumerate(state["cuda"][: torch.cuda.device_count()]):
            torch.cuda.set_rng_state(cuda_state, index)


_CHECKPOINT_KEYS = frozenset({"format", "model", "optimizer", "scheduler", "scaler", "rng",
                              "config", "progress", "world_size"})


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a ``fit`` checkpoint with ``weights_only=True``; a clear error names a bad file."""
    path = Path(path)
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises RuntimeError, UnpicklingError, EOFError ...
        raise CheckpointError(
            f"cannot read checkpoint {path} ({type(error).__name__}, details above): the file "
            "is truncated, corrupt, or holds more than tensors and plain data, which "
            "weights_only=True refuses. Delete it (or pass another checkpoint_path) to train "
            "from scratch."
        ) from error
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not a refseg checkpoint (format {CHECKPOINT_FORMAT})")
    missing = _CHECKPOINT_KEYS - set(checkpoint)
    if missing:
        raise CheckpointError(f"checkpoint {path} lacks {sorted(missing)}; it is incomplete")
    return checkpoint


def load_model_weights(model: nn.Module, path: str | Path) -> dict[str, Any]:
    """Load the weights of a ``fit`` checkpoint into ``model``; returns the checkpoint."""
    checkpoint = load_checkpoint(path)
    try:
        model.load_state_dict(checkpoint["model"])
    except RuntimeError as error:
        raise CheckpointError(f"checkpoint {path} does not match this model: {error}") from error
    return checkpoint


def init_weights_from(model: nn.Module, path: str | Path) -> list[str]:
    """Start ``model`` from the weights of another run where names and shapes match.

    For staged training (DMN trains at low resolution, then adds its upsampling module):
    the tensors the checkpoint lacks keep their initialisation. Returns the names loaded;
    raises if none matches, which means the checkpoint is of another model.
    """
    weights = load_checkpoint(path)["model"]
    own = model.state_dict()
    matched = {k: v for k, v in weights.items() if k in own and own[k].shape == v.shape}
    if not matched:
        raise CheckpointError(f"no tensor of {path} matches this model: is it another model's?")
    model.load_state_dict(matched, strict=False)
    return sorted(matched)


# ---------------------------------------------------------------------------------------------
# Evaluation
# ---------------------------------------------------------------------------------------------


@dataclass
class EvalResult:
    """Metrics of one split: ``summary`` (``SegmentationMeter.summary``: n, overall_iou,
    mean_iou, Pr@0.5..0.9, ``@t`` for extra thresholds), one row per sample, one per tag (with
    the "category only" row of ``metrics.breakdown_by_tag``)."""

    summary: dict[str, float]
    per_sample: pd.DataFrame
    by_tag: pd.DataFrame
    eval_time_s: float
    samples_per_s: float


def evaluate(model: nn.Module, dataset: Dataset, collate_fn: Callable[[list], Batch], *,
             batch_size: int = 32, thresholds: Sequence[float] = (PRIMARY_THRESHOLD,),
             device: str | torch.device | None = None, progress: bool = True,
             amp: str = "auto", num_workers: int = 0,
             refine: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None
             ) -> EvalResult:
    """Score ``model`` on every sample of ``dataset``, in order.

    The model runs in eval mode without gradients (its mode is restored afterwards), under
    the same autocast as training; its logits are resized to each mask and binarised at 0.5
    and at every extra threshold. ``device=None`` keeps the model where it is; a device moves
    it there. Box metrics (Acc@0.5, IE) are added when the model predicts boxes, instance
    metrics (``InstanceMeter``: count accuracy, |DiC|, SBD, best overlap, AP@0.5, against each
    sample's ``instance_masks``) when it emits instances (``ModelOutput.instances``,
    ``confidence`` and ``aux["emitted"]``, the count its stopping rule keeps). ``refine``
    maps (images, logits at mask size) to refined logits (``postprocess.crf_refine``).
    """
    device = _model_device(model) if device is None else pick_device(device)
    model.to(device)
    dtype = autocast_dtype(amp, device)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate_fn,
                        num_workers=num_workers, generator=torch.Generator())
    meter = SegmentationMeter(thresholds)
    instances = InstanceMeter()
    ids: dict[str, list[str]] = {"sample_id": [], "image_id": [], "sentence": []}
    start = time.perf_counter()
    bar = tqdm(loader, desc="evaluate", disable=not progress, leave=False, unit="batch")
    with _eval_mode(model), bar:
        for batch in bar:
            batch = batch.to(device, non_blocking=True)
            with _autocast(device, dtype):
                output = model(batch.images, batch.tokens, batch.lengths)
            logits = resize_logits(output.mask_logits.float(), batch.masks.shape[-2:])
            if refine is not None:
                logits = refine(batch.images, logits)
            has_box = output.box is not None
            meter.update(logits, batch.masks, batch.tags,
                         pred_boxes=output.box.float() if has_box else None,
                         gt_boxes=batch.boxes if has_box else None)
            if output.instances is not None:
                _update_instances(instances, output, batch)
            ids["sample_id"] += batch.sample_ids
            ids["image_id"] += batch.image_ids
            ids["sentence"] += batch.sentences
    elapsed = time.perf_counter() - start
    if not len(meter):
        raise ValueError(f"cannot evaluate on an empty dataset ({dataset!r})")
    per_sample = pd.concat([pd.DataFrame(ids), meter.per_sample()], axis=1)
    summary = {**meter.summary(), **(instances.summary() if len(instances) else {})}
    return EvalResult(summary=summary, per_sample=per_sample,
                      by_tag=meter.by_tag(category_only=True), eval_time_s=elapsed,
                      samples_per_s=len(meter) / max(elapsed, 1e-9))


def _update_instances(meter: InstanceMeter, output: ModelOutput, batch: Batch) -> None:
    """Score each image's emitted instances, binarised at ``PRIMARY_THRESHOLD``."""
    cut = math.log(PRIMARY_THRESHOLD / (1 - PRIMARY_THRESHOLD))
    masks = resize_instances(output.instances.float(), batch.masks.shape[-2:]) > cut
    for b, targets in enumerate(batch.instance_masks):  # (B, K, H, W) bool
        meter.update(masks[b].cpu(), output.confidence[b].float().cpu(),
                     int(output.aux["emitted"][b]), targets.cpu())


def predict(model: nn.Module, images: torch.Tensor, tokens: torch.Tensor,
            lengths: torch.Tensor, *, amp: str = "auto") -> torch.Tensor:
    """Mask probabilities ``(B, H, W)`` at the resolution of ``images (B, 3, H, W)``.

    Runs on the model's device, in eval mode without gradients; returns a CPU float tensor.
    """
    if images.ndim != 4:
        raise ValueError(f"images must be (B, 3, H, W), got {tuple(images.shape)}")
    device = _model_device(model)
    with _eval_mode(model), _autocast(device, autocast_dtype(amp, device)):
        output = model(images.to(device), tokens.to(device), lengths.to(device))
    logits = resize_logits(output.mask_logits.float(), images.shape[-2:])  # (B, H, W)
    return torch.sigmoid(logits).cpu()


# ---------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------


@dataclass
class TrainProgress:
    """Where a run stands; stored in its checkpoint as plain data."""

    step: int = 0  # optimizer steps done
    epoch: int = 0  # current epoch
    batch_in_epoch: int = 0  # batches of the current epoch already consumed
    samples_seen: int = 0  # over all ranks
    train_time_s: float = 0.0  # wall time of the steps (data loading included, evaluation not)
    eval_time_s: float = 0.0  # wall time of the evaluations during training
    history: list[dict[str, float]] = field(default_factory=list)
    val_history: list[dict[str, float]] = field(default_factory=list)


@dataclass
class TrainResult:
    """What ``fit`` returns. ``history``: one row per ``log_every`` steps (step, epoch, mean
    loss and loss parts over those steps, lr); ``val_history``: one row per evaluation."""

    history: list[dict[str, float]]
    val_history: list[dict[str, float]]
    steps: int
    epochs: float
    train_time_s: float
    eval_time_s: float
    samples_per_s: float
    resumed_from: int | None  # the step the run resumed at, None when it started afresh
    checkpoint_path: Path | None
    config: TrainConfig

    @property
    def final_val(self) -> dict[str, float] | None:
        """The last validation metrics, None without a validation set."""
        return self.val_history[-1] if self.val_history else None

    def history_frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.history)

    def val_frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.val_history)


def fit(model: nn.Module, train_set: Dataset, collate_fn: Callable[[list], Batch],
        config: TrainConfig, *, loss_fn: LossFn = mask_bce, val_set: Dataset | None = None,
        checkpoint_path: str | Path | None = None, device: str | torch.device | None = None,
        progress: bool = True, callbacks: Iterable[Callback] = ()) -> TrainResult:
    """Train ``model`` on ``train_set`` for ``config.max_steps`` steps; resume if
    ``checkpoint_path`` exists.

    Each step: forward under autocast, ``loss_fn(output, batch)``, backward (scaled for
    fp16), optional gradient clipping, optimizer step, per-step schedule. Every ``log_every``
    steps the mean loss goes to the history; every ``eval_every`` steps and at the end the
    model is evaluated on ``val_set`` (``evaluate``; the plateau schedule steps on
    ``1 - overall_iou``); every ``checkpoint_every`` steps and at the end the checkpoint is
    written atomically. ``callbacks`` are called as ``callback(step, state)`` at the very end
    of each step, ``state`` holding step, epoch, loss, lr, parts, batch, model, optimizer and
    val (the latest validation summary); an exception raised there stops the run, as a kill
    would.

    Resuming restores everything the checkpoint holds and skips the batches of the current
    epoch already consumed: on CPU (``num_workers=0`` or deterministic datasets) a run
    killed at any step and resumed ends with the same weights, bit for bit, as one that was
    never interrupted. The configuration must match, except ``RESUMABLE_CHANGES``.

    Under torchrun (DDP) every rank runs ``fit`` with the same arguments: ranks start from
    rank 0's weights (DDP broadcasts them), train on their own shard and average gradients.
    All ranks share one seed, so a checkpoint's random state (rank 0's) is right for every
    rank. The simplest correct evaluation is used: rank 0 evaluates the whole validation
    set with the unwrapped model while the others wait, then broadcasts the summary so that
    every rank takes the same plateau decision. Only rank 0 writes checkpoints and shows
    progress; logged losses are averaged over ranks.
    """
    env = distributed_env()
    device = _training_device(device, env)
    created_group = _join_process_group(env, device)
    try:
        with deterministic_algorithms(config.deterministic and device.type == "cpu"):
            run = _TrainingRun(model, train_set, collate_fn, config, loss_fn=loss_fn,
                               val_set=val_set, checkpoint_path=checkpoint_path, device=device,
                               progress=progress, callbacks=tuple(callbacks))
            return run.train()
    finally:
        if created_group:
            dist.destroy_process_group()


class _TrainingRun:
    """The state of one ``fit`` call: model, optimizer, schedule, loader and progress."""

    def __init__(self, model: nn.Module, train_set: Dataset, collate_fn: Callable, config:
                 TrainConfig, *, loss_fn: LossFn, val_set: Dataset | None,
                 checkpoint_path: str | Path | None, device: torch.device, progress: bool,
                 callbacks: tuple[Callback, ...]):
        if config.schedule == "plateau" and (val_set is None or config.eval_every is None):
            raise ValueError("schedule='plateau' steps on validation IoU after each evaluation: "
                             "give a val_set and set eval_every")
        self.config, self.loss_fn, self.val_set = config, loss_fn, val_set
        self.collate_fn, self.device, self.callbacks = collate_fn, device, callbacks
        self.checkpoint_path = Path(checkpoint_path) if checkpoint_path is not None else None
        self.world_size, self.rank = _world()
        self.progress = progress and self.rank == 0

        seed_everything(config.seed)
        self.model = model.to(device)
        self.trained = self._wrap(self.model)
        self.amp_dtype = autocast_dtype(config.amp, device)
        self.optimizer = build_optimizer(self.model, config)
        self.scheduler = build_scheduler(self.optimizer, config)
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.amp_dtype == torch.float16)
        self.loader = make_loader(train_set, config.batch_size, collate_fn, shuffle=True,
                                  seed=config.seed, drop_last=True,
                                  num_workers=config.num_workers,
                                  pin_memory=device.type == "cuda")
        self.steps_per_epoch = len(self.loader)
        if self.steps_per_epoch == 0:
            raise ValueError(
                f"the training set ({len(train_set)} samples over {self.world_size} rank(s)) "
                f"does not fill one batch of {config.batch_size}; lower batch_size"
            )
        self.state = TrainProgress()
        self.resumed_from: int | None = None
        if self.checkpoint_path is not None and self.checkpoint_path.exists():
            self._restore(self.checkpoint_path)
        self.last_val: dict[str, float] | None = (
            self.state.val_history[-1] if self.state.val_history else None)

    def _wrap(self, model: nn.Module) -> nn.Module:
        if self.world_size == 1:
            return model
        device_ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(
            model, device_ids=device_ids,
            find_unused_parameters=self.config.ddp_find_unused_parameters)

    # -- checkpoints ------------------------------------------------------------------------

    def _checkpoint(self) -> dict[str, Any]:
        return {
            "format": CHECKPOINT_FORMAT,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": _rng_state(),
            "config": self.config.to_dict(),
            "progress": asdict(self.state),
            "world_size": self.world_size,
        }

    def _save(self) -> None:
        if self.rank == 0:
            checkpoint = self._checkpoint()
            atomic_write(self.checkpoint_path, lambda f: torch.save(checkpoint, f))
        if self.world_size > 1:
            dist.barrier()

    def _restore(self, path: Path) -> None:
        checkpoint = load_checkpoint(path)
        self._check_compatible(checkpoint, path)
        try:
            self.model.load_state_dict(checkpoint["model"])
            self.optimizer.load_state_dict(checkpoint["optimizer"])
            self.scheduler.load_state_dict(checkpoint["scheduler"])
            self.scaler.load_state_dict(checkpoint["scaler"])
        except (RuntimeError, ValueError, KeyError) as error:
            raise CheckpointError(
                f"checkpoint {path} does not match this model or optimizer: {error}. Delete it "
                "or pass another checkpoint_path to train from scratch."
            ) from error
        self.state = TrainProgress(**checkpoint["progress"])
        _set_rng_state(checkpoint["rng"])
        self.resumed_from = self.state.step

    def _check_compatible(self, checkpoint: dict[str, Any], path: Path) -> None:
        if checkpoint["world_size"] != self.world_size:
            raise CheckpointError(
                f"checkpoint {path} was written by a run on {checkpoint['world_size']} "
                f"process(es); this run has {self.world_size}: the data shards would differ"
            )
        current, stored = self.config.to_dict(), checkpoint["config"]
        changed = [
            f"{name}: {stored.get(name)!r} -> {value!r}" for name, value in current.items()
            if name not in RESUMABLE_CHANGES and _plain(stored.get(name)) != _plain(value)
        ]
        if changed:
            raise CheckpointError(
                f"checkpoint {path} was written with another configuration ({'; '.join(changed)})."
                " Resume with the same configuration, or pass another checkpoint_path."
            )

    # -- one step ---------------------------------------------------------------------------

    def _train_step(self, batch: Batch) -> tuple[float, dict[str, float], float]:
        """Forward, backward, update; returns (loss, parts, lr used)."""
        batch = batch.to(self.device, non_blocking=True)
        self.trained.train()
        with _autocast(self.device, self.amp_dtype):
            output = self.trained(batch.images, batch.tokens, batch.lengths)
            loss, parts = self.loss_fn(output, batch)
        loss_value = float(loss.detach())
        if not math.isfinite(loss_value):
            raise FloatingPointError(
                f"the loss is {loss_value} at step {self.state.step + 1}; lower the learning "
                "rate, set grad_clip, or check the data"
            )
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.config.grad_clip is not None:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip)
        lr = float(self.optimizer.param_groups[0]["lr"])
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if self.config.schedule != "plateau":
            self.scheduler.step()
        return loss_value, {k: float(v) for k, v in parts.items()}, lr

    def _advance(self, batch_size: int) -> None:
        state = self.state
        state.step += 1
        state.batch_in_epoch += 1
        state.samples_seen += batch_size * self.world_size
        if state.batch_in_epoch == self.steps_per_epoch:
            state.epoch, state.batch_in_epoch = state.epoch + 1, 0

    def _log(self, window: list[tuple[float, dict[str, float]]], lr: float) -> dict[str, float]:
        """Mean loss and parts over the window (and over ranks), appended to the history."""
        means = {"loss": sum(loss for loss, _ in window) / len(window)}
        for name in window[-1][1]:
            means[name] = sum(parts.get(name, 0.0) for _, parts in window) / len(window)
        means = _mean_across_ranks(means, self.device)
        row = {"step": self.state.step, "epoch": self.state.step / self.steps_per_epoch,
               "loss": means.pop("loss"), "lr": lr, **means}
        self.state.history.append(row)
        return row

    def _validate(self) -> dict[str, float]:
        """Rank 0 evaluates the whole validation set; every rank gets the summary."""
        start = time.perf_counter()
        summary = None
        if self.rank == 0:
            summary = evaluate(self.model, self.val_set, self.collate_fn,
                               batch_size=self.config.eval_batch_size,
                               thresholds=self.config.eval_thresholds, device=self.device,
                               progress=self.progress, amp=self.config.amp,
                               num_workers=self.config.num_workers).summary
        if self.world_size > 1:
            box = [summary]
            dist.broadcast_object_list(box, src=0)
            summary = box[0]
        self.state.eval_time_s += time.perf_counter() - start
        if self.config.schedule == "plateau":
            self.scheduler.step(1.0 - summary["overall_iou"])  # DMN: plateau of 1 - val IoU
        row = {"step": self.state.step, "epoch": self.state.step / self.steps_per_epoch,
               **summary}
        self.state.val_history.append(row)
        return summary

    def _after_step(self, batch: Batch, loss: float, parts: dict[str, float], lr: float,
                    window: list, bar: tqdm) -> None:
        """Logging, evaluation, checkpoint and callbacks due after the step just taken."""
        config, step = self.config, self.state.step
        last = step == config.max_steps
        if step % config.log_every == 0 or last:
            row = self._log(window, lr)
            window.clear()
            bar.set_postfix(loss=f"{row['loss']:.4f}", lr=f"{lr:.2e}")
        if self.val_set is not None and (last or (config.eval_every and
                                                  step % config.eval_every == 0)):
            self.last_val = self._validate()
        if self.checkpoint_path is not None and (last or (config.checkpoint_every and
                                                          step % config.checkpoint_every == 0)):
            self._save()
        state = {"step": step, "epoch": self.state.epoch, "loss": loss, "lr": lr,
                 "parts": parts, "batch": batch, "model": self.model,
                 "optimizer": self.optimizer, "val": self.last_val}
        for callback in self.callbacks:
            callback(step, state)

    # -- the loop ---------------------------------------------------------------------------

    def train(self) -> TrainResult:
        state, config = self.state, self.config
        window: list[tuple[float, dict[str, float]]] = []
        with tqdm(total=config.max_steps, initial=min(state.step, config.max_steps),
                  desc="train", disable=not self.progress, unit="step") as bar:
            while state.step < config.max_steps:
                set_loader_epoch(self.loader, state.epoch, state.batch_in_epoch)
                tic = time.perf_counter()
                for batch in self.loader:
                    loss, parts, lr = self._train_step(batch)
                    self._advance(len(batch))
                    window.append((loss, parts))
                    state.train_time_s += time.perf_counter() - tic
                    bar.update(1)
                    self._after_step(batch, loss, parts, lr, window, bar)
                    if state.step >= config.max_steps:
                        break
                    tic = time.perf_counter()
        return self._result()

    def _result(self) -> TrainResult:
        state = self.state
        return TrainResult(
            history=list(state.history), val_history=list(state.val_history),
            steps=state.step, epochs=state.step / self.steps_per_epoch,
            train_time_s=state.train_time_s, eval_time_s=state.eval_time_s,
            samples_per_s=state.samples_seen / max(state.train_time_s, 1e-9),
            resumed_from=self.resumed_from, checkpoint_path=self.checkpoint_path,
            config=self.config,
        )


def _plain(value: Any) -> Any:
    """Tuples as lists, so that a configuration compares equal after a save/load round trip."""
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
