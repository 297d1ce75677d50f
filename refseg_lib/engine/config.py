"""The configuration of a training run (``TrainConfig``) and the conversion of epochs to steps,
the one unit of time of the engine.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from refseg_lib.metrics import PRIMARY_THRESHOLD
from refseg_lib.records import dataclass_from_dict

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("constant", "step", "poly", "cosine", "plateau")
AMP_MODES = ("auto", "off", "bf16", "fp16")


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
    (``(1 - step / max_steps) ** poly_power`` down to ``min_lr``), ``"cosine"`` (half a
    cosine from ``lr`` down to ``min_lr`` at ``max_steps``), ``"plateau"``."""
    warmup_steps: int = 0
    """Steps over which the lr rises linearly from ``lr / warmup_steps`` to the schedule's value
    (multiplies the per-step schedules; 0: none)."""
    milestones: tuple[int, ...] = ()
    """Steps after which the ``"step"`` schedule multiplies the lr by ``gamma`` (MCN)."""
    gamma: float = 0.1
    """Factor of the ``"step"`` schedule."""
    poly_power: float = 0.9
    """Power of the ``"poly"`` schedule (CMSA, DeepLab)."""
    min_lr: float = 0.0
    """Floor of the ``"poly"`` and ``"cosine"`` schedules, reached at ``max_steps`` (CMSA: 1e-5)."""
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
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        check_choice("schedule", self.schedule, SCHEDULES)
        check_choice("amp", self.amp, AMP_MODES)
        for name in ("max_steps", "batch_size", "log_every", "eval_batch_size"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("eval_every", "checkpoint_every", "grad_clip"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"{name} must be positive or None, got {value}")
        if list(self.milestones) != sorted(self.milestones) or any(m < 1 for m in self.milestones):
            raise ValueError(f"milestones must be increasing positive steps, got {self.milestones}")
        if self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {self.warmup_steps}")
        if self.schedule in ("poly", "cosine") and not 0 <= self.min_lr <= self.lr:
            raise ValueError(f"min_lr must lie in [0, lr={self.lr}], got {self.min_lr}")
        if self.num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {self.num_workers}")

    def to_dict(self) -> dict[str, Any]:
        """Plain data (for checkpoints and run records)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        return dataclass_from_dict(cls, data, "TrainConfig")


def check_choice(name: str, value: str, choices: Sequence[str]) -> None:
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
