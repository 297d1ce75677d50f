"""The training loop (``fit``): optimizer and schedule, one step, logging, evaluation during
training, checkpoints and resumption, callbacks, DDP.
"""

from __future__ import annotations

import math
import time
from bisect import bisect_right
from collections.abc import Callable, Iterable, Mapping
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from refseg_lib.data.types import Batch, ModelOutput
from refseg_lib.engine.checkpoints import (
    CHECKPOINT_FORMAT,
    CheckpointError,
    check_resumable,
    checkpoint_lock,
    load_checkpoint,
    restore_rng_state,
    rng_state,
)
from refseg_lib.engine.config import TrainConfig
from refseg_lib.engine.evaluation import evaluate
from refseg_lib.engine.runtime import (
    autocast_context,
    autocast_dtype,
    deterministic_algorithms,
    distributed_env,
    join_process_group,
    make_loader,
    mean_across_ranks,
    seed_everything,
    set_loader_epoch,
    training_device,
    world_size_and_rank,
)
from refseg_lib.losses import mask_bce
from refseg_lib.paths import atomic_write

LossFn = Callable[[ModelOutput, Batch], tuple[torch.Tensor, dict[str, float]]]
Callback = Callable[[int, dict[str, Any]], None]

# A checkpoint at least this often during training (besides every ``checkpoint_every`` steps),
# so that a killed run loses a few minutes at most; single-process runs (under DDP every rank
# would have to agree on the moment: ``checkpoint_every`` alone).
CHECKPOINT_MINUTES = 5.0


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
    """Multiplier of the base lr after ``s`` completed steps, for the per-step schedules, times
    the linear warm-up over the first ``warmup_steps``."""
    floor = config.min_lr / config.lr if config.lr > 0 else 0.0
    if config.schedule == "step":
        # MCN: lr * gamma ** (number of milestones passed)
        def factor(s: int) -> float:
            return config.gamma ** bisect_right(config.milestones, s)
    elif config.schedule == "poly":
        # CMSA: lr_s = min_lr + (lr - min_lr) * (1 - s / max_steps) ** power
        def factor(s: int) -> float:
            return floor + (1 - floor) * max(0.0, 1 - s / config.max_steps) ** config.poly_power
    elif config.schedule == "cosine":
        # lr_s = min_lr + (lr - min_lr) * (1 + cos(pi * s / max_steps)) / 2
        def factor(s: int) -> float:
            done = min(1.0, s / config.max_steps)
            return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * done))
    else:
        def factor(s: int) -> float:
            return 1.0
    if config.warmup_steps == 0:
        return factor
    return lambda s: factor(s) * min(1.0, (s + 1) / config.warmup_steps)


def build_scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig):
    """A ``LambdaLR`` stepped after every optimizer step (constant, step, poly), or DMN's
    ``ReduceLROnPlateau`` stepped with ``1 - val overall IoU`` after every evaluation."""
    if config.schedule == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="min", factor=config.plateau_factor, patience=config.plateau_patience)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_factor(config))


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
        progress: bool = True, callbacks: Iterable[Callback] = (),
        settings: Mapping[str, Any] | None = None,
        checkpoint_minutes: float | None = CHECKPOINT_MINUTES) -> TrainResult:
    """Train ``model`` on ``train_set`` for ``config.max_steps`` steps; resume if
    ``checkpoint_path`` exists.

    Each step: forward under autocast, ``loss_fn(output, batch)``, backward (scaled for
    fp16), optional gradient clipping, optimizer step, per-step schedule. Every ``log_every``
    steps the mean loss goes to the history; every ``eval_every`` steps and at the end the
    model is evaluated on ``val_set`` (``evaluate``; the plateau schedule steps on
    ``1 - overall_iou``); every ``checkpoint_every`` steps and at the end the checkpoint is
    written atomically, and also whenever ``checkpoint_minutes`` have passed since the last one
    (one process). ``callbacks`` are called as ``callback(step, state)`` at the very end
    of each step, ``state`` holding step, epoch, loss, lr, parts, batch, model, optimizer and
    val (the latest validation summary); an exception raised there stops the run, as a kill
    would.

    Resuming restores everything the checkpoint holds and skips the batches of the current
    epoch already consumed: on CPU (``num_workers=0`` or deterministic datasets) a run
    killed at any step and resumed ends with the same weights, bit for bit, as one that was
    never interrupted. The configuration must match, except ``RESUMABLE_CHANGES``, and so must
    ``settings``: plain data on what else decides the run (``run_experiment`` gives the model,
    its configuration and the data), stored in the checkpoint. While it trains, the run holds
    the checkpoint's lock (``checkpoint_lock``): a second process training into the same
    checkpoint is refused.

    Under torchrun (DDP) every rank runs ``fit`` with the same arguments: ranks start from
    rank 0's weights (DDP broadcasts them), train on their own shard and average gradients.
    All ranks share one seed, so a checkpoint's random state (rank 0's) is right for every
    rank. The simplest correct evaluation is used: rank 0 evaluates the whole validation
    set with the unwrapped model while the others wait, then broadcasts the summary so that
    every rank takes the same plateau decision. Only rank 0 writes checkpoints and shows
    progress; logged losses are averaged over ranks.
    """
    env = distributed_env()
    device = training_device(device, env)
    created_group = join_process_group(env, device)
    locked = checkpoint_path is not None and env.is_main
    try:
        with (checkpoint_lock(checkpoint_path) if locked else nullcontext(),
              deterministic_algorithms(config.deterministic and device.type == "cpu")):
            run = _TrainingRun(model, train_set, collate_fn, config, loss_fn=loss_fn,
                               val_set=val_set, checkpoint_path=checkpoint_path, device=device,
                               progress=progress, callbacks=tuple(callbacks),
                               settings=settings, checkpoint_minutes=checkpoint_minutes)
            return run.train()
    finally:
        if created_group:
            dist.destroy_process_group()


class _TrainingRun:
    """The state of one ``fit`` call: model, optimizer, schedule, loader and progress."""

    def __init__(self, model: nn.Module, train_set: Dataset, collate_fn: Callable, config:
                 TrainConfig, *, loss_fn: LossFn, val_set: Dataset | None,
                 checkpoint_path: str | Path | None, device: torch.device, progress: bool,
                 callbacks: tuple[Callback, ...], settings: Mapping[str, Any] | None,
                 checkpoint_minutes: float | None):
        if config.schedule == "plateau" and (val_set is None or config.eval_every is None):
            raise ValueError("schedule='plateau' steps on validation IoU after each evaluation: "
                             "give a val_set and set eval_every")
        self.config, self.loss_fn, self.val_set = config, loss_fn, val_set
        self.collate_fn, self.device, self.callbacks = collate_fn, device, callbacks
        if checkpoint_minutes is not None and checkpoint_minutes <= 0:
            raise ValueError(f"checkpoint_minutes must be positive or None, got "
                             f"{checkpoint_minutes}")
        self.settings = None if settings is None else dict(settings)
        self.checkpoint_minutes = checkpoint_minutes
        self.last_saved = time.monotonic()
        self.checkpoint_path = Path(checkpoint_path) if checkpoint_path is not None else None
        self.world_size, self.rank = world_size_and_rank()
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
            "rng": rng_state(),
            "config": self.config.to_dict(),
            "settings": self.settings,
            "progress": asdict(self.state),
            "world_size": self.world_size,
        }

    def _save(self) -> None:
        if self.rank == 0:
            checkpoint = self._checkpoint()
            atomic_write(self.checkpoint_path, lambda f: torch.save(checkpoint, f))
        self.last_saved = time.monotonic()
        if self.world_size > 1:
            dist.barrier()

    def _restore(self, path: Path) -> None:
        checkpoint = load_checkpoint(path)
        check_resumable(checkpoint, path, self.config, self.world_size, self.settings)
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
        restore_rng_state(checkpoint["rng"])
        self.resumed_from = self.state.step

    # -- one step ---------------------------------------------------------------------------

    def _train_step(self, batch: Batch) -> tuple[float, dict[str, float], float]:
        """Forward, backward, update; returns (loss, parts, lr used)."""
        batch = batch.to(self.device, non_blocking=True)
        self.trained.train()
        with autocast_context(self.device, self.amp_dtype):
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
        means = mean_across_ranks(means, self.device)
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
        due = last or bool(config.checkpoint_every and step % config.checkpoint_every == 0)
        if not due and self.checkpoint_minutes is not None and self.world_size == 1:
            due = time.monotonic() - self.last_saved >= 60 * self.checkpoint_minutes
        if self.checkpoint_path is not None and due:
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
