"""What every model of the course shares: input checks, configs from a profile, a sentence
encoding.

- ``check_inputs``: the shapes and dtypes of ``model(images, tokens, lengths)``, checked with a
  clear message at the start of every forward.
- ``build_config``: a model's config dataclass for ``profile="quick"`` (its ``quick()``) or
  ``"paper"`` (the paper's defaults), with overrides; other keyword arguments go to the backbone.
- ``encode_words``: one vector per sentence from a recurrent encoder (the state after its last
  real word).
- ``start_at_prior``: the mask logit's bias set to the foreground prior (the quick profile).
"""

from __future__ import annotations

import dataclasses
import math

import torch
from torch import nn

from refseg_lib.nn.sru import last_step, run_recurrent


def check_inputs(images: torch.Tensor, tokens: torch.Tensor, lengths: torch.Tensor) -> None:
    """Raise a clear error unless images (B, 3, H, W), tokens (B, T) and lengths (B,) agree."""
    batch = images.shape[0]
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be (B, 3, H, W), got {tuple(images.shape)}")
    if tokens.ndim != 2 or tokens.shape[0] != batch or tokens.dtype != torch.long:
        raise ValueError(f"tokens must be ({batch}, T) long, got {tuple(tokens.shape)} "
                         f"{tokens.dtype}")
    if tuple(lengths.shape) != (batch,):
        raise ValueError(f"lengths must be ({batch},), got {tuple(lengths.shape)}")


def build_config(config_class, profile: str, cfg: dict):
    """The ``profile``'s config with overrides; keys that are not fields go to the backbone."""
    names = {f.name for f in dataclasses.fields(config_class)}
    overrides = {k: v for k, v in cfg.items() if k in names}
    backbone_kwargs = {k: v for k, v in cfg.items() if k not in names}
    if profile == "quick":
        config = config_class.quick(**overrides)
    elif profile == "paper":
        config = config_class(**overrides)
    else:
        raise ValueError(f"unknown profile {profile!r}; choose 'quick' or 'paper'")
    config.backbone_kwargs = {**config.backbone_kwargs, **backbone_kwargs}
    return config


def encode_words(rnn: nn.Module, words: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """The last layer's output after each sequence's last real word: (B, hidden).

    ``rnn`` is a time-first ``nn.LSTM`` or ``SRU``; ``words`` (B, T, E). Neither reads the
    padding (``run_recurrent``).
    """
    return last_step(run_recurrent(rnn, words.transpose(0, 1), lengths), lengths)


def start_at_prior(model: nn.Module, prior: float) -> list[str]:
    """Set the biases that offset ``model``'s mask logits (the names in its class attribute
    ``MASK_LOGIT_BIASES``, those it has) to log(prior / (1 - prior)), so that training starts
    predicting the foreground fraction ``prior`` everywhere instead of 0.5 (focal loss's
    initialisation, Lin et al., 2017, sec. 4.1). Returns the names set; a model without the
    attribute is left alone."""
    if not 0 < prior < 1:
        raise ValueError(f"prior must lie in (0, 1), got {prior}")
    named = dict(model.named_parameters())
    chosen = [n for n in getattr(model, "MASK_LOGIT_BIASES", ()) if n in named]
    with torch.no_grad():
        for name in chosen:
            named[name].fill_(math.log(prior / (1 - prior)))
    return chosen
