"""Checkpoints of ``fit``: written atomically, holding only tensors and plain data (``torch.load
(path, weights_only=True)`` reads them), with the random states that make a resumed run
bit-identical to an uninterrupted one and the settings it was trained with (a resume with other
settings is refused); a lock that keeps two runs off one checkpoint; loading weights into a
model, or starting one model from another's weights (DMN's two stages).
"""

from __future__ import annotations

import os
import random
import socket
import sys
import time
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
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


# What to do when a checkpoint cannot be resumed with the settings at hand.
START_OVER = ("To train with these settings, start over (--restart on the command line, "
              "resume=False in Python, or delete the file) or train under another variant name "
              "(--variant NAME, variant=), which keeps its own checkpoint; to resume, give the "
              "settings it was trained with")


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
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}" + (
            " (a folder)" if path.is_dir() else "") + ": give the .pt file a training run "
            "wrote (checkpoints/<model>__<variant>__<benchmark>__<profile>.pt)")
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


def load_model_weights(model: nn.Module, path: str | Path,
                       checkpoint: dict[str, Any] | None = None) -> dict[str, Any]:
    """Load the weights of a ``fit`` checkpoint into ``model``; returns the checkpoint
    (``checkpoint``: the one ``load_checkpoint(path)`` already read)."""
    checkpoint = load_checkpoint(path) if checkpoint is None else checkpoint
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
                    world_size: int, settings: Mapping[str, Any] | None = None) -> None:
    """Refuse to resume from a checkpoint of another process count, configuration (fields
    other than ``RESUMABLE_CHANGES``) or run settings (``settings``: the model, its
    configuration and the data, as ``fit`` stored them), or one already trained past
    ``config.max_steps``, with the differences and the ways on spelled out."""
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
    stored_settings = checkpoint.get("settings")
    if settings is not None and "settings" not in checkpoint:
        warnings.warn(f"checkpoint {path} was written before checkpoints kept their run's "
                      "settings: resumed without checking its model and data against this run's",
                      stacklevel=3)
    if settings is not None and stored_settings is not None:
        changed += [f"{name}: {_plain(stored_settings.get(name))!r} -> {_plain(value)!r}"
                    for name, value in settings.items()
                    if _plain(stored_settings.get(name)) != _plain(value)]
    if changed:
        raise CheckpointError(
            f"checkpoint {path} was trained with other settings ({'; '.join(changed)}): "
            f"resuming would mix two runs in one. {START_OVER}."
        )
    done = checkpoint["progress"]["step"]
    if done > config.max_steps:
        raise CheckpointError(
            f"checkpoint {path} has already trained {done} steps, more than the "
            f"{config.max_steps} asked for: ask for {done} or more to resume it, or start over "
            "(--restart on the command line, resume=False in Python, or delete the file)"
        )


def _plain(value: Any) -> Any:
    """Tuples as lists, so that a configuration compares equal after a save/load round trip."""
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


_HELD: dict[Path, int] = {}  # checkpoints this process holds the lock of, and how many times


@contextmanager
def checkpoint_lock(path: str | Path) -> Iterator[None]:
    """Keep every other process off the checkpoint ``path`` while this one trains into it (and
    writes the run's records): an exclusive lock (``fcntl.flock``) on ``<path>.lock``, a file
    that names the holder and is removed when the run ends. The system releases the lock when
    its holder dies, killed or not, so a lock is never left held; the same process may take it
    again (``run_experiment`` around ``fit``). Another process gets a ``CheckpointError`` naming
    the holder. Without ``fcntl`` (Windows) nothing is locked."""
    path = Path(path).resolve()
    if path in _HELD:
        _HELD[path] += 1
        try:
            yield
        finally:
            _HELD[path] -= 1
        return
    try:
        import fcntl
    except ImportError:
        yield
        return
    lock = path.with_name(path.name + ".lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    while True:  # until the file locked is the one at ``lock`` (a holder removes it on release)
        handle = open(lock, "a+", encoding="utf-8")  # noqa: SIM115 (held until the run ends)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise CheckpointError(
                f"another run is training into checkpoint {path} ({holder}): two runs on one "
                "checkpoint would overwrite each other's checkpoint and records. Wait until it "
                "ends, or train this one under another variant name (--variant NAME, variant=)"
            ) from None
        try:
            if os.stat(lock).st_ino == os.fstat(handle.fileno()).st_ino:
                break
        except FileNotFoundError:
            pass
        handle.close()
    try:
        handle.seek(0)
        handle.truncate()
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime())
        handle.write(f"pid {os.getpid()} on {socket.gethostname()} since {since}: "
                     f"{' '.join(sys.argv)}\n")
        handle.flush()
        _HELD[path] = 1
        yield
    finally:
        _HELD.pop(path, None)
        lock.unlink(missing_ok=True)  # before the release: a waiter then locks a new file
        handle.close()  # releases the lock
