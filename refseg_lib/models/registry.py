"""One model interface and one registry (timm-style): ``build_model(name, **cfg)``.

Every model of the course is an ``nn.Module`` whose forward is
``model(images (B, 3, H, W), tokens (B, T) long, lengths (B,) long) -> ModelOutput``.
``mask_logits`` may come at any resolution (a model at stride 8 returns H/8 x W/8); the engine
resizes it bilinearly to the mask it is scored against. Ablations are configuration of one
registered builder, never a copied class.

This module holds the registry alone; importing ``refseg_lib.models`` (which any import of
``refseg_lib.models.<module>`` does first) registers the course's models, whose modules import
``register_model`` from here, never the reverse.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable

from torch import nn

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}
_CONFIGS: dict[str, type] = {}  # name -> the dataclass of the model's settings


def register_model(name: str, config: type | None = None
                   ) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator: ``@register_model("lstm_cnn", LSTMCNNConfig)`` over a builder
    ``(**cfg) -> nn.Module``; ``config``: the dataclass whose fields are the model's settings
    (``model_settings``)."""

    def add(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is already registered")
        _REGISTRY[name] = builder
        if config is not None:
            _CONFIGS[name] = config
        return builder

    return add


def list_models() -> list[str]:
    return sorted(_REGISTRY)


def build_model(name: str, **cfg) -> nn.Module:
    """The registered model ``name`` built with ``cfg`` (e.g. ``vocab_size=..., variant=...``)."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; registered: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name](**cfg)


def model_settings(name: str) -> list[str]:
    """The settings ``build_model(name, ...)`` takes by name (its config's fields; other keys go
    to the backbone), sorted; empty for a model registered without a config."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; registered: {', '.join(sorted(_REGISTRY))}")
    config = _CONFIGS.get(name)
    return sorted(f.name for f in dataclasses.fields(config)) if config else []


def model_takes(name: str, argument: str) -> bool:
    """Whether the builder registered as ``name`` declares ``argument`` (e.g. ``words``: the
    vocabulary's words, which a pretrained word encoder needs)."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; registered: {', '.join(sorted(_REGISTRY))}")
    return argument in inspect.signature(_REGISTRY[name]).parameters
