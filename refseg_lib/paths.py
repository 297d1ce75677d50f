"""Where data and reports live: environment variables first, then the repository's folders.

``REFSEG_DATA`` points at the datasets root (see data/README.md), ``REFSEG_REPORTS`` at the
reports folder and ``REFSEG_CHECKPOINTS`` at where training runs keep their checkpoints.
Without them, the folders of the checkout this package was imported from are used (an
editable install), or ``./data``, ``./reports`` and ``./checkpoints`` when the package is
installed elsewhere.
"""

from __future__ import annotations

import os
from pathlib import Path

_CHECKOUT = Path(__file__).resolve().parents[1]
REPO_ROOT = _CHECKOUT if (_CHECKOUT / "pyproject.toml").is_file() else Path.cwd()


def data_root() -> Path:
    return Path(os.environ.get("REFSEG_DATA", REPO_ROOT / "data"))


def reports_dir() -> Path:
    return Path(os.environ.get("REFSEG_REPORTS", REPO_ROOT / "reports"))


def checkpoints_dir() -> Path:
    return Path(os.environ.get("REFSEG_CHECKPOINTS", REPO_ROOT / "checkpoints"))


def notebooks_dir() -> Path:
    return REPO_ROOT / "notebooks"
