"""Models of the course behind one interface: ``build_model(name, **cfg)``.

- ``registry``: ``register_model``, ``build_model``, ``list_models``, ``model_settings``,
  ``model_takes``.
- ``common``: what every model shares (input checks, a config from a profile, a sentence
  encoding).
- ``baselines`` (Only VM, LSTM-CNN), ``dmn``, ``cmsa``, ``mcn``, ``m3att``, ``ris``: one module
  per paper, each registering its builder.

The output type, ``ModelOutput``, lives in ``refseg_lib.data.types`` (the losses and the engine
read it too) and is re-exported here.
"""

from refseg_lib.data.types import ModelOutput
from refseg_lib.models import baselines, cmsa, dmn, m3att, mcn, ris  # noqa: F401  (registers them)
from refseg_lib.models.registry import (
    build_model,
    list_models,
    model_settings,
    model_takes,
    register_model,
)

__all__ = ["ModelOutput", "build_model", "list_models", "model_settings", "model_takes",
           "register_model"]
