"""Checkpoints of ``fit``: written atomically, holding only tensors and plain data (``torch.load
(path, weights_only=True)`` reads them), with the random states that make a resumed run
bit-identical to an uninterrupted one; loading weights into a model, or starting one model
from another's weights (DMN's two stages).
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from refseg_lib.engine.config import TrainConfig

CHECKPOINT_FORMAT = "refseg-checkpoint-v1"
# Fields that may change between a run and its resumption without changing its trajectory
# (max_steps extends or shortens a run; note that it also sets the length of a poly schedule).
RESUMABLE_CHANGES = frozenset({"max_steps", "eval_every", "checkpoint_every", "log_every",
                               "num_workers", "eval_batch_size"})


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be read or does not fit the model / configuration at hand."""


def rng_state() -> dict[str, Any]:
    version, internal, gauss_next = random.getstate()
    _, keys, pos, has_gauss, cached_gaussian = np.random.get_state()
    return {
        "python": {"version": version, "internal": list(internal), "gauss_next": gauss_next},
        "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached_gaussian)},
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def restore_rng_state(state: dict[str, Any]) -> None:
    python = state["python"]
    random.setstate((python["version"], tuple(python["internal"]), python["gauss_next"]))
    numpy = state["numpy"]
    np.random.set_state(("MT19937", numpy["keys"].numpy().astype(np.uint32), numpy["pos"],
                         numpy["has_gauss"], numpy["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if torch.cuda.is_available():
        for index, cuda_state in enumerate(state["cuda"][: torch.cuda.device_count()]):
            torch.cuda.set_rng_state(cuda_state, index)


CHECKPOINT_KEYS = frozenset({"format", "model", "optimizer", "scheduler", "scaler", "rng",
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
    missing = CHECKPOINT_KEYS - set(checkpoint)
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


def check_resumable(checkpoint: dict[str, Any], path: Path, config: TrainConfig,
                    world_size: int) -> None:
    """Refuse to resume from a checkpoint of another process count or configuration
    (fields other than ``RESUMABLE_CHANGES``), with the differences spelled out."""
    if checkpoint["world_size"] != world_size:
        raise CheckpointError(
            f"checkpoint {path} was written by a run on {checkpoint['world_size']} "
            f"process(es); this run has {world_size}: the data shards would differ"
        )
    current, stored = config.to_dict(), checkpoint["config"]
    changed = [
        f"{name}: {stored.get(name)!r} -> {value!r}" for name, value in current.items()
        if name not in RESUMABLE_CHANGES and _plain(stored.get(name)) != _plain(value)
    ]
    if changed:
        raise CheckpointError(
            f"checkpoint {path} was written with another configuration ({'; '.join(changed)})."
            " Resume with the same configuration, or pass another checkpoint_path."
        )


def _plain(value: Any) -> Any:
    """Tuples as lists, so that a configuration compares equal after a save/load round trip."""
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
