"""Run records: one JSON file per (model, variant, dataset, split, profile) under reports/runs/.

Every training or evaluation a notebook runs ends with ``write_run_record``; the comparison
tables of ``reports`` are a pure function of these files (``load_run_records``). The file
name is a stable function of the record's key, so re-running a notebook overwrites its
record instead of adding a second one. Files are written atomically: a reader never sees a
half-written record, even if the writer is killed. A file that is no valid record is skipped by
``load_run_records`` with a ``RecordWarning`` that names it and says what is wrong.
"""

from __future__ import annotations

import base64
import json
import math
import os
import platform
import re
import subprocess
import warnings
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from refseg_lib.paths import REPO_ROOT, atomic_write_text, reports_dir

KEY_FIELDS = ("model", "variant", "dataset", "style", "split", "profile")
SCALAR_FIELDS = ("train_time_s", "eval_time_s", "samples_per_s", "params", "git_revision",
                 "created", "source")


# ---------------------------------------------------------------------------------------------
# What a record says about where it ran
# ---------------------------------------------------------------------------------------------


def dataclass_from_dict(cls: type, data: Mapping[str, Any], what: str) -> Any:
    """``cls(**data)``, refusing keys that are not fields of the dataclass ``cls``."""
    known = {f.name for f in fields(cls)}
    unknown = set(data) - known
    if unknown:
        raise ValueError(f"unknown {what} fields {sorted(unknown)}; known: {sorted(known)}")
    return cls(**data)


def git_revision(repo: str | Path = REPO_ROOT) -> str:
    """``git rev-parse --short HEAD`` of the checkout, or ``"unknown"`` outside a git checkout."""
    try:
        done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=repo,
                              capture_output=True, text=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return done.stdout.strip() or "unknown"


def hardware_info(device: torch.device | str | None = None) -> dict[str, Any]:
    """Device name, CPU count, torch version and threads: enough to read a timing.

    ``device=None`` describes the device ``fit`` would pick (CUDA, else MPS, else CPU).
    """
    if device is None:
        device = "cuda" if torch.cuda.is_available() else (
            "mps" if torch.backends.mps.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    elif device.type == "mps":
        name = f"Apple MPS ({platform.machine()})"
    else:
        name = _cpu_name()
    return {
        "device": device.type,
        "device_name": name,
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def _cpu_name() -> str:
    """The CPU model ("model name" of /proc/cpuinfo on Linux), else what platform knows."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "cpu"


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of scalar parameters of ``model`` (all, or only those with ``requires_grad``)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# ---------------------------------------------------------------------------------------------
# The record
# ---------------------------------------------------------------------------------------------


@dataclass
class RunRecord:
    """What one training/evaluation run produced, and where and how it ran.

    The key (``model``, ``variant``, ``dataset``, ``style``, ``split``, ``profile``) names the
    file; ``style`` is ShapeRef's expression style (``""`` for REFER datasets).
    """

    model: str  # registry name, e.g. "dmn"
    variant: str  # ablation / configuration name, e.g. "full" or "no_dynamic_filters"
    dataset: str  # "shapes", "refcoco", ...
    style: str  # ShapeRef style ("refshape", "refshape+", "refshape-g"), "" otherwise
    split: str  # the split the metrics were computed on
    profile: str  # "quick" or "paper"
    config: dict = field(default_factory=dict)  # TrainConfig.to_dict() and model config
    metrics: dict = field(default_factory=dict)  # SegmentationMeter.summary() and friends
    train_time_s: float | None = None
    eval_time_s: float | None = None
    samples_per_s: float | None = None  # training throughput
    params: int | None = None  # count_parameters(model)
    hardware: dict = field(default_factory=hardware_info)
    git_revision: str = field(default_factory=git_revision)
    created: str = field(default_factory=_now)  # ISO 8601, UTC
    source: str = ""  # the notebook or script that produced the run
    # predicted masks of a few evaluation samples, sample id -> pack_mask(mask) (notebook 09's
    # qualitative grid, drawn from the records alone)
    examples: dict = field(default_factory=dict)
    # the learning curve: validation metrics at points of training, one dict per evaluation
    # (step, overall_iou, mean_iou, ...), on the first ``Profile.curve_samples`` val samples
    curve: list = field(default_factory=list)

    def __post_init__(self) -> None:
        for name in (*KEY_FIELDS[:3], *KEY_FIELDS[4:]):  # style may be ""
            if not getattr(self, name):
                raise ValueError(f"a run record needs a non-empty {name!r}")

    @property
    def file_name(self) -> str:
        """``<model>__<variant>__<dataset>-<style>__<split>__<profile>.json``."""
        data = f"{self.dataset}-{self.style}" if self.style else self.dataset
        parts = (self.model, self.variant, data, self.split, self.profile)
        return "__".join(safe_part(p) for p in parts) + ".json"

    def to_dict(self) -> dict[str, Any]:
        return _jsonable(asdict(self))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunRecord:
        return dataclass_from_dict(cls, data, "run record")


def pack_mask(mask: torch.Tensor) -> str:
    """A boolean ``(H, W)`` mask as text for a JSON record: ``"HxW:"`` + base64 of its bits."""
    if mask.ndim != 2:
        raise ValueError(f"pack_mask takes one (H, W) mask, got shape {tuple(mask.shape)}")
    bits = np.packbits(mask.detach().cpu().numpy().astype(bool).ravel())
    return f"{mask.shape[0]}x{mask.shape[1]}:" + base64.b64encode(bits.tobytes()).decode("ascii")


def unpack_mask(text: str) -> torch.Tensor:
    """The ``(H, W)`` bool mask ``pack_mask`` wrote."""
    shape, _, data = text.partition(":")
    height, width = (int(v) for v in shape.split("x"))
    bits = np.unpackbits(np.frombuffer(base64.b64decode(data), dtype=np.uint8))
    return torch.from_numpy(bits[: height * width].reshape(height, width).astype(bool))


# The characters a key part keeps in a file name (``safe_part``; ``experiments.check_name``).
NAME_CHARACTERS = "A-Za-z0-9._+-"


def safe_part(part: str) -> str:
    """A file-name-safe version of a key part (letters, digits, ``. _ + -`` kept)."""
    return re.sub(f"[^{NAME_CHARACTERS}]", "-", str(part))


def _jsonable(value: Any) -> Any:
    """Plain JSON data: tensors and numpy scalars to numbers, tuples to lists, NaN/inf to None."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, torch.Tensor):
        return _jsonable(value.tolist())
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        return _jsonable(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot store a {type(value).__name__} in a run record: {value!r}")


def _runs_dir(runs_dir: str | Path | None) -> Path:
    return Path(runs_dir) if runs_dir is not None else reports_dir() / "runs"


def write_run_record(record: RunRecord, runs_dir: str | Path | None = None) -> Path:
    """Write ``record`` atomically to ``runs_dir / record.file_name`` (default
    ``reports/runs/``), overwriting a previous run with the same key. Returns the path."""
    text = json.dumps(record.to_dict(), sort_keys=True, indent=1, allow_nan=False) + "\n"
    return atomic_write_text(_runs_dir(runs_dir) / record.file_name, text)


class RecordWarning(UserWarning):
    """A record file ``load_run_records`` skipped: the message names the file, says what is
    wrong with it and what to do."""


_FIX = "fix or delete the file, or run its experiment again to rewrite it"
# The DataFrame columns of ``load_run_records`` besides the metrics, which no metric may shadow.
_COLUMNS = (*KEY_FIELDS, *SCALAR_FIELDS, "device_name", "config", "hardware", "examples",
            "curve", "path")
_JSON_TYPES = {dict: "an object", list: "an array", str: "a string", bool: "true or false",
               int: "a number", float: "a number", type(None): "null"}
_TYPES = {**dict.fromkeys((*KEY_FIELDS, "git_revision", "created", "source"), (str,)),
          **dict.fromkeys(("config", "metrics", "hardware", "examples"), (dict,)),
          "curve": (list,),
          **dict.fromkeys(("train_time_s", "eval_time_s", "samples_per_s", "params"),
                          (int, float, type(None)))}


def _kind(value: Any) -> str:
    """What a JSON value is, in words: "a string", "an array" ..."""
    return _JSON_TYPES.get(type(value), type(value).__name__)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _parse_record(data: bytes) -> RunRecord:
    """The record in the bytes of a record file; a ``ValueError`` says what is wrong (without
    the file's name, which the callers add)."""
    if not data.strip():
        raise ValueError("the file is empty")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ValueError(f"not UTF-8 text (byte 0x{data[error.start]:02x} at offset "
                         f"{error.start})") from None
    try:
        stored = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"not valid JSON (line {error.lineno} column {error.colno}: "
                         f"{error.msg})") from None
    if not isinstance(stored, dict):
        raise ValueError(f"the file holds {_kind(stored)}, not a JSON object of record fields")
    missing = [name for name in KEY_FIELDS if name not in stored]
    if missing:
        raise ValueError(f"no {', '.join(map(repr, missing))} field; a record names its run by "
                         f"{', '.join(KEY_FIELDS)}")
    for name, value in stored.items():
        allowed = _TYPES.get(name)
        if allowed and (not isinstance(value, allowed) or isinstance(value, bool)):
            wanted = " or ".join(dict.fromkeys(_JSON_TYPES[t] for t in allowed))
            raise ValueError(f"{name!r} is {_kind(value)}, not {wanted}")
    for name, value in stored.get("metrics", {}).items():
        if not (_is_number(value) or value is None):
            raise ValueError(f"metric {name!r} is {_kind(value)}, not a number or null")
    clash = sorted(set(stored.get("metrics", {})) & set(_COLUMNS))
    if clash:
        raise ValueError(f"metric names {clash} are names of record fields; rename the metrics")
    for point in stored.get("curve", []):
        if not isinstance(point, dict):
            raise ValueError(f"'curve' holds {_kind(point)}, not an object of metrics per point")
    return RunRecord.from_dict(stored)


def read_run_record(path: str | Path) -> RunRecord:
    """The record stored in ``path``; a ``ValueError`` names the file and what is wrong with it
    (not JSON, not UTF-8, unknown or missing fields, a field of the wrong type)."""
    path = Path(path)
    try:
        return _parse_record(path.read_bytes())
    except (ValueError, TypeError) as error:
        raise ValueError(f"{path} is not a valid run record: {error}; {_FIX}") from error


def load_run_records(runs_dir: str | Path | None = None) -> pd.DataFrame:
    """Every record of ``runs_dir`` (default ``reports/runs/``) as one row of a DataFrame.

    Columns: the key fields, the scalar fields, ``device_name`` (from ``hardware``), the
    ``config``, ``hardware`` and ``examples`` dicts and the ``curve`` list as they are,
    ``path``, and one column per metric under its own name (``overall_iou``, ``mean_iou``,
    ``Pr@0.5`` ...), NaN where a run lacks it.
    A file that is no valid record (``read_run_record``) or cannot be read is skipped with a
    ``RecordWarning`` naming it and the problem; the other records are loaded.
    No records give an empty DataFrame with the fixed columns; without ``runs_dir`` and
    without a saved results folder, :class:`refseg_lib.course.MissingResults` says how to get one.
    """
    folder = _runs_dir(runs_dir)
    if runs_dir is None and not folder.is_dir():
        from refseg_lib.course import MissingResults, missing_results_message

        raise MissingResults(missing_results_message(folder))
    rows = []
    for path in sorted(folder.glob("*.json")):
        try:
            record = _parse_record(path.read_bytes())
        except OSError as error:
            _skip(path, f"it cannot be read ({error.strerror or error})")
            continue
        except (ValueError, TypeError) as error:
            _skip(path, str(error))
            continue
        row = {name: getattr(record, name) for name in (*KEY_FIELDS, *SCALAR_FIELDS)}
        row.update(device_name=record.hardware.get("device_name"), config=record.config,
                   hardware=record.hardware, examples=record.examples, curve=record.curve,
                   path=str(path))
        row.update(record.metrics)
        rows.append(row)
    if not rows:
        return pd.DataFrame(columns=list(_COLUMNS))
    return pd.DataFrame(rows)


def _skip(path: Path, problem: str) -> None:
    warnings.warn(f"skipped {path}: {problem}; {_FIX}", RecordWarning, stacklevel=3)
