"""One model interface and one registry (timm-style): ``build_model(name, **cfg)``.

Every model of the course is an ``nn.Module`` whose forward is
``model(images (B, 3, H, W), tokens (B, T) long, lengths (B,) long) -> ModelOutput``.
``mask_logits`` may come at any resolution (a model at stride 8 returns H/8 x W/8); the engine
resizes it bilinearly to the mask it is scored against. Ablations are configuration of one
registered builder, never a copied class.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn


@dataclass
class ModelOutput:
    """Named outputs; ``mask_logits`` always, the rest where a model has them."""

    mask_logits: torch.Tensor  # (B, h, w) logits of the referent's mask
    box: torch.Tensor | None = None  # (B, 4) xyxy pixels of the input image (REC heads)
    confidence: torch.Tensor | None = None  # (B,) or (B, K)
    # (B, K, h, w) logits, one per unrolled step; with confidence (B, K) and aux["emitted"] (B,)
    instances: torch.Tensor | None = None
    attention: dict[str, torch.Tensor] = field(default_factory=dict)  # maps for visualisation
    aux: dict[str, torch.Tensor] = field(default_factory=dict)  # model-specific loss inputs


_REGISTRY: dict[str, Callable[..., nn.Module]] = {}


def register_model(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator: ``@register_model("lstm_cnn")`` over a builder ``(**cfg) -> nn.Module``."""

    def add(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is already registered")
        _REGISTRY[name] = builder
        return builder

    return add


def list_models() -> list[str]:
    _import_builtin_models()
    return sorted(_REGISTRY)


def build_model(name: str, **cfg) -> nn.Module:
    """The registered model ``name`` built with ``cfg`` (e.g. ``vocab_size=..., variant=...``)."""
    _import_builtin_models()
    if name not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; registered: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name](**cfg)


def model_takes(name: str, argument: str) -> bool:
    """Whether the builder registered as ``name`` declares ``argument`` (e.g. ``words``: the
    vocabulary's words, which a pretrained word encoder needs)."""
    _import_builtin_models()
    if name not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; registered: {', '.join(sorted(_REGISTRY))}")
    return argument in inspect.signature(_REGISTRY[name]).parameters


def _import_builtin_models() -> None:
    """Import the model modules so that their ``@register_model`` decorators run."""
    import refseg_lib.models.baselines  # noqa: F401
    import refseg_lib.models.cmsa  # noqa: F401
    import refseg_lib.models.dmn  # noqa: F401
    import refseg_lib.models.m3att  # noqa: F401
    import refseg_lib.models.mcn  # noqa: F401
    import refseg_lib.models.ris  # noqa: F401
