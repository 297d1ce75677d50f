"""Make ``import timm`` work with a CPU-only torch.

PyPI publishes only CUDA builds of torchvision. Installed beside the CPU wheel of torch, its
compiled ops (``torchvision/_C.so``) fail to load, and ``import torchvision`` then dies in
``_meta_registrations.py`` with ``operator torchvision::nms does not exist``: it registers
fake kernels for two operators whose schemas only the compiled library defines. timm imports
torchvision, so timm dies with it.

``ensure_torchvision_importable`` runs before anything imports torchvision. If the compiled
ops load, it does nothing. If they do not, it defines the two missing schemas (no kernels),
so the import succeeds; torchvision's Python code (transforms, models) works, and only its
compiled ops (``torchvision.ops.nms``, ``roi_align`` ...) are unavailable, which this course
never calls. Nothing in site-packages is edited.
"""

from __future__ import annotations

import importlib.util
import pathlib
import sys

import torch

# Keeps the schema registrations alive: a ``torch.library.Library`` unregisters on deletion.
_SHIM_LIBRARY: torch.library.Library | None = None

_MISSING_SCHEMAS = (
    "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
)


def torchvision_ops_available() -> bool:
    """True if torchvision's compiled ops load in this environment (False without torchvision)."""
    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        return False
    libraries = sorted(pathlib.Path(spec.submodule_search_locations[0]).glob("_C*.so")) + sorted(
        pathlib.Path(spec.submodule_search_locations[0]).glob("_C*.pyd")
    )
    if not libraries:
        return False
    try:
        torch.ops.load_library(str(libraries[0]))
    except (OSError, RuntimeError):
        return False
    return True


def ensure_torchvision_importable() -> bool:
    """Register the schemas torchvision needs at import time if its compiled ops cannot load.

    Returns True when the shim was installed (compiled ops unavailable), False otherwise.
    Must run before the first ``import torchvision``; afterwards it is a no-op.
    """
    global _SHIM_LIBRARY
    if _SHIM_LIBRARY is not None or "torchvision" in sys.modules:
        return _SHIM_LIBRARY is not None
    if importlib.util.find_spec("torchvision") is None or torchvision_ops_available():
        return False
    library = torch.library.Library("torchvision", "DEF")
    for schema in _MISSING_SCHEMAS:
        library.define(schema)
    _SHIM_LIBRARY = library
    return True
