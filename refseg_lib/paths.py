"""Where data and reports live: environment variables first, then the repository's folders.

``REFSEG_DATA`` points at the datasets root (see data/README.md), ``REFSEG_REPORTS`` at the
reports folder and ``REFSEG_CHECKPOINTS`` at where training runs keep their checkpoints.
Without them, the folders of the checkout this package was imported from are used (an
editable install), or ``./data``, ``./reports`` and ``./checkpoints`` when the package is
installed elsewhere.

``atomic_write`` and ``atomic_write_text`` write every file the course keeps (checkpoints,
run records, reports, notebooks): a reader sees the old file or the new one, never half of one.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import IO

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


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], None]) -> Path:
    """Write ``path`` atomically: ``write(f)`` fills a temporary file in the same directory,
    which is flushed, fsync'ed and then renamed over ``path`` (``os.replace``).

    Readers see either the old file or the complete new one, never a partial file. If
    ``write`` raises, the temporary file is removed and ``path`` is left untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_directory(path.parent)
    return path


def atomic_write_text(path: str | Path, text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically (``atomic_write``), its newlines as given: no
    platform translation, so the same text gives the same bytes everywhere."""
    data = text.encode(encoding)
    return atomic_write(path, lambda f: f.write(data))


def _fsync_directory(directory: Path) -> None:
    """Make the rename itself durable (POSIX); a no-op where directories cannot be opened."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
