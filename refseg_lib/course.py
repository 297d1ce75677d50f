"""The first cell of every notebook: the library, the saved results, the trained models.

A notebook opened in a clone of the repository (``make reproduce``, JupyterLab) finds all three
in the checkout. Opened alone, on Colab or in a fresh environment, its first cell
(:func:`setup_cell`, the same text in every notebook) installs the library from the repository
at this version's tag when it is missing, then calls :func:`setup`, which fetches the saved
results (``reports/``: the runs' scores, the tables, the trained models the figures show) from
the same tag when they are not here. Offline, :func:`setup` says so and the lessons still run;
only the cells that read saved results stop, with a message that says how to get them.

The repository's address is kept in one place, ``[project.urls]`` of ``pyproject.toml``,
read here from the installed package's metadata.
"""

from __future__ import annotations

import io
import os
import shutil
import tempfile
import urllib.request
import zipfile
from importlib import metadata
from pathlib import Path

from refseg_lib.paths import reports_dir

PACKAGE = "refseg_lib"
# What the setup cell installs when the runtime has no torch: the CPU build unless a GPU is
# there (Colab's GPU runtimes already have a CUDA torch, which is kept).
TORCH = ("torch==2.13.0", "torchvision==0.28.0")
CPU_INDEX = "https://download.pytorch.org/whl/cpu"


def repository() -> str:
    """The repository's URL, from ``[project.urls] Repository`` of the installed package."""
    for entry in metadata.metadata(PACKAGE).get_all("Project-URL") or []:
        label, _, url = entry.partition(",")
        if label.strip().lower() == "repository":
            return url.strip()
    raise RuntimeError(f"{PACKAGE} has no 'Repository' URL: reinstall it from the repository")


def tag() -> str:
    """The git tag of this version, which the setup cell installs and fetches results from."""
    return f"v{metadata.version(PACKAGE)}"


def results_url() -> str:
    """The archive the saved results are fetched from (``REFSEG_RESULTS_URL`` overrides it)."""
    return os.environ.get("REFSEG_RESULTS_URL", f"{repository()}/archive/refs/tags/{tag()}.zip")


def cache_dir() -> Path:
    """Where fetched results are kept: ``REFSEG_CACHE``, else ``~/.cache/refseg``."""
    return Path(os.environ.get("REFSEG_CACHE", Path.home() / ".cache" / "refseg"))


def setup_cell() -> str:
    """The text of every notebook's first code cell."""
    torch_line = ", ".join(f'"{spec}"' for spec in TORCH)
    return f'''\
# Setup. On Colab or in a fresh environment, install the course's library (once per runtime);
# in a clone of the repository (`make env`) this only checks that it is there.
import importlib.util, shutil, subprocess, sys
if importlib.util.find_spec("{PACKAGE}") is None:
    pip = [sys.executable, "-m", "pip", "install", "-q"]
    if importlib.util.find_spec("torch") is None:  # a GPU runtime gets PyPI's CUDA build
        cpu = [] if shutil.which("nvidia-smi") else ["--index-url", "{CPU_INDEX}"]
        subprocess.check_call(pip + [{torch_line}] + cpu)
    subprocess.check_call(pip + ["{PACKAGE} @ git+{repository()}@{tag()}"])
from {PACKAGE}.course import setup
setup()  # the saved results and trained models: here, or fetched from the repository'''


class MissingResults(FileNotFoundError):
    """Saved results are needed and neither here nor fetched."""


def missing_results_message(where: Path) -> str:
    return (f"the saved results are not here ({where} does not exist): run the notebook's "
            f"first cell online to fetch them, clone {_repository_or_none() or 'the repository'}"
            " and work in the clone, or point REFSEG_REPORTS at a copy of its reports/ folder. "
            "To produce them yourself: `make reproduce` in a clone (about an hour on a CPU).")


def setup(*, fetch: bool = True) -> bool:
    """Make the saved results available; True when they are. Prints one line on what it did."""
    runs = reports_dir() / "runs"
    if runs.is_dir():
        print("Saved results: found.")
        return True
    if fetch:
        try:
            fetched = fetch_results()
        except (OSError, zipfile.BadZipFile, ValueError) as error:
            print(f"Saved results: not here, and fetching {results_url()} failed ({error}). "
                  "The lessons and the training runs work; the cells that read saved results "
                  "will stop and say how to get them.")
            return False
        os.environ["REFSEG_REPORTS"] = str(fetched)
        print(f"Saved results: fetched from the repository ({tag()}) into {fetched}.")
        return True
    print("Saved results: not here; " + missing_results_message(runs))
    return False


def fetch_results(url: str | None = None, into: Path | None = None) -> Path:
    """Download the repository archive at ``url`` and keep its ``reports/`` folder in ``into``
    (default: the cache, one folder per tag). Returns the ``reports`` folder. Done once: a
    complete earlier fetch is reused; a failed one leaves nothing behind."""
    url = url or results_url()
    into = Path(into or cache_dir() / tag())
    target = into / "reports"
    if (target / "runs").is_dir():
        return target
    with urllib.request.urlopen(url, timeout=60) as response:  # noqa: S310 (http/https/file)
        archive = zipfile.ZipFile(io.BytesIO(response.read()))
    into.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=into, prefix=".fetch-"))
    try:
        kept = 0
        for member in archive.infolist():
            parts = Path(member.filename).parts  # <repository>-<tag>/reports/...
            if len(parts) < 3 or parts[1] != "reports" or member.is_dir():
                continue
            if any(part in ("..", "") for part in parts) or Path(member.filename).is_absolute():
                raise ValueError(f"unsafe path in the archive: {member.filename!r}")
            destination = staging.joinpath(*parts[1:])
            destination.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(member) as source, destination.open("wb") as out:
                shutil.copyfileobj(source, out)
            kept += 1
        if not (staging / "reports" / "runs").is_dir():
            raise ValueError(f"{url} holds no reports/runs/ folder ({kept} report files)")
        shutil.rmtree(target, ignore_errors=True)
        (staging / "reports").rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _repository_or_none() -> str | None:
    try:
        return repository()
    except (RuntimeError, metadata.PackageNotFoundError):
        return None


def colab_url(notebook: str) -> str:
    """Where Colab opens ``notebook`` (a file name in ``notebooks/``) at this version's tag."""
    path = repository().removeprefix("https://github.com/")
    return f"https://colab.research.google.com/github/{path}/blob/{tag()}/notebooks/{notebook}"


def colab_badge(notebook: str) -> str:
    return ("[![Open in Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
            f"({colab_url(notebook)})")


def sync_notebook(notebook: dict, name: str) -> bool:
    """Put the Colab badge under the title and :func:`setup_cell` first among the code cells of
    ``notebook`` (a notebook's JSON); True when something changed."""
    cells = notebook["cells"]
    before = repr(cells)
    title = cells[0]
    lines = "".join(title["source"]).split("\n")
    lines = [line for line in lines if "colab-badge.svg" not in line]
    lines.insert(1, colab_badge(name))
    title["source"] = _lines("\n".join(lines))
    code = [i for i, cell in enumerate(cells) if cell["cell_type"] == "code"]
    setup_source = _lines(setup_cell())
    if code and "".join(cells[code[0]]["source"]).startswith("# Setup."):
        cells[code[0]]["source"] = setup_source
    else:
        cells.insert(code[0] if code else len(cells), {
            "cell_type": "code", "execution_count": None, "id": "course-setup",
            "metadata": {}, "outputs": [], "source": setup_source})
    return repr(cells) != before


def sync_notebooks(folder: Path | None = None) -> list[Path]:
    """:func:`sync_notebook` on every notebook of ``folder`` (default: the repository's
    ``notebooks/``); returns the files it changed (their setup cells need executing)."""
    import json

    from refseg_lib.paths import atomic_write_text, notebooks_dir

    changed = []
    for path in sorted(Path(folder or notebooks_dir()).glob("*.ipynb")):
        notebook = json.loads(path.read_text(encoding="utf-8"))
        if sync_notebook(notebook, path.name):
            atomic_write_text(path, json.dumps(notebook, indent=1, ensure_ascii=False) + "\n")
            changed.append(path)
    return changed


def _lines(text: str) -> list[str]:
    lines = text.split("\n")
    return [line + "\n" for line in lines[:-1]] + ([lines[-1]] if lines[-1] else [])
