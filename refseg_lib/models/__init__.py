"""Models of the course behind one interface: see ``registry``."""

from refseg_lib.models.registry import ModelOutput, build_model, list_models, register_model

__all__ = ["ModelOutput", "build_model", "list_models", "register_model"]
