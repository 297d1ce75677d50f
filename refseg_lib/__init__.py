"""refseg_lib: the one copy of every component the refseg course notebooks build.

Importing the package first makes timm importable on CPU-only machines (see ``_compat``).
"""

from refseg_lib._compat import ensure_torchvision_importable

ensure_torchvision_importable()

__version__ = "0.1.0"
