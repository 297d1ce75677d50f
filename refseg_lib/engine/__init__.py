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
- **Checkpoints.** Written atomically every ``checkpoint_every`` steps, every few minutes
  and at the end; they hold only tensors and plain Python data, so ``torch.load(path,
  weights_only=True)`` reads them (no pickled objects, nothing executed on load). If the
  checkpoint file exists, ``fit`` resumes from it: weights, optimizer, scheduler, scaler,
  random generators, the position inside the epoch (the batches already consumed are skipped,
  not re-read) and the history. A checkpoint keeps the settings it was trained with, and
  resuming with others is refused; a lock keeps a second process from training into the same
  checkpoint.
- **Scale-out.** Under ``torchrun --nproc_per_node=N`` (``WORLD_SIZE`` > 1) ``fit`` joins the
  process group (gloo on CPU, NCCL on CUDA), wraps the model in ``DistributedDataParallel``
  and gives every rank its own shard of each epoch. Only rank 0 shows progress, evaluates
  and writes checkpoints (see ``fit``).

Modules: ``config`` (``TrainConfig``, epochs to steps), ``runtime`` (devices, seeds,
precision, DDP, loaders), ``training`` (``fit``, optimizers, schedules), ``checkpoints``
(writing, reading and resuming), ``evaluation`` (``evaluate``, ``predict``). Everything public
is importable from ``refseg_lib.engine``.
"""

from refseg_lib.engine.checkpoints import (
    CHECKPOINT_FORMAT,
    CHECKPOINT_KEYS,
    RESUMABLE_CHANGES,
    CheckpointError,
    checkpoint_lock,
    init_weights_from,
    load_checkpoint,
    load_model_weights,
)
from refseg_lib.engine.config import (
    AMP_MODES,
    OPTIMIZERS,
    SCHEDULES,
    TrainConfig,
    epochs_to_steps,
    steps_per_epoch,
)
from refseg_lib.engine.evaluation import EvalResult, evaluate, predict
from refseg_lib.engine.runtime import (
    DistributedEnv,
    ResumableSampler,
    autocast_dtype,
    deterministic_algorithms,
    distributed_env,
    make_loader,
    pick_device,
    seed_everything,
    set_loader_epoch,
)
from refseg_lib.engine.training import (
    TrainProgress,
    TrainResult,
    build_optimizer,
    build_scheduler,
    fit,
)

__all__ = [
    "AMP_MODES", "CHECKPOINT_FORMAT", "CHECKPOINT_KEYS", "CheckpointError", "DistributedEnv",
    "EvalResult", "OPTIMIZERS", "RESUMABLE_CHANGES", "ResumableSampler", "SCHEDULES",
    "TrainConfig", "TrainProgress", "TrainResult", "autocast_dtype", "build_optimizer",
    "build_scheduler", "checkpoint_lock", "deterministic_algorithms", "distributed_env",
    "epochs_to_steps", "evaluate", "fit", "init_weights_from", "load_checkpoint",
    "load_model_weights", "make_loader", "pick_device", "predict", "seed_everything",
    "set_loader_epoch", "steps_per_epoch",
]
