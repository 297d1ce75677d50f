"""The notebooks open on Colab or in a fresh environment: the setup cell, fetching the saved
results, and every notebook's first cells run against the built wheel alone (no clone)."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from refseg_lib import course
from refseg_lib.records import load_run_records

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
# The step counts a reader would lower to try a notebook quickly (as `papermill -p` would):
# enough for a training loss to fall, which the notebooks assert.
FEW_STEPS = {"live_steps": 40, "live_low_res_steps": 30, "live_upsampling_steps": 10,
             "live_curriculum_steps": 10}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_notebook_starts_with_the_badge_and_the_setup_cell(path):
    notebook = json.loads(path.read_text(encoding="utf-8"))
    assert course.colab_badge(path.name) in "".join(notebook["cells"][0]["source"])
    code = [c for c in notebook["cells"] if c["cell_type"] == "code"]
    assert "".join(code[0]["source"]) == course.setup_cell(), (
        "run `python -m refseg_lib setup-cells`, then execute the notebook again")
    assert "parameters" in code[1]["metadata"].get("tags", [])
    assert not course.sync_notebook(notebook, path.name)  # nothing left to change


def test_the_repository_url_lives_in_pyproject():
    text = (ROOT / "pyproject.toml").read_text()
    assert f'Repository = "{course.repository()}"' in text
    assert course.tag() == f"v{course.metadata.version('refseg_lib')}"
    assert course.results_url().endswith(f"/archive/refs/tags/{course.tag()}.zip")


def _archive(path: Path, members: dict[str, bytes]) -> str:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path.as_uri()


def test_fetch_results_keeps_reports_once_and_refuses_bad_archives(tmp_path):
    good = _archive(tmp_path / "good.zip", {"refseg-0.1.0/README.md": b"x",
                                            "refseg-0.1.0/reports/runs/a.json": b"{}",
                                            "refseg-0.1.0/reports/t.md": b"| t |"})
    fetched = course.fetch_results(good, tmp_path / "cache")
    assert sorted(p.relative_to(fetched).as_posix() for p in fetched.rglob("*") if p.is_file()) \
        == ["runs/a.json", "t.md"]
    (tmp_path / "good.zip").unlink()
    assert course.fetch_results(good, tmp_path / "cache") == fetched  # reused, not refetched

    escape = _archive(tmp_path / "escape.zip", {"r-1/reports/runs/a.json": b"{}",
                                                "r-1/reports/../../evil.txt": b"x"})
    with pytest.raises(ValueError, match="unsafe path"):
        course.fetch_results(escape, tmp_path / "c2")
    empty = _archive(tmp_path / "empty.zip", {"r-1/README.md": b"x"})
    with pytest.raises(ValueError, match="no reports/runs/"):
        course.fetch_results(empty, tmp_path / "c3")
    assert not (tmp_path / "evil.txt").exists()
    assert [p.name for p in (tmp_path / "c2").iterdir()] == []  # nothing half-written kept


def test_setup_offline_says_so_and_records_say_how_to_get_them(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("REFSEG_REPORTS", str(tmp_path / "nowhere"))
    monkeypatch.setenv("REFSEG_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("REFSEG_RESULTS_URL", (tmp_path / "missing.zip").as_uri())
    assert course.setup() is False
    printed = capsys.readouterr().out
    assert "fetching" in printed and "failed" in printed and "lessons" in printed
    with pytest.raises(course.MissingResults, match="REFSEG_REPORTS.*make reproduce"):
        load_run_records()
    assert load_run_records(tmp_path).empty  # an explicit folder may be empty

    reports = tmp_path / "r.zip"
    _archive(reports, {"refseg-0.1.0/reports/runs/a.json": b"{}"})
    monkeypatch.setenv("REFSEG_RESULTS_URL", reports.as_uri())
    assert course.setup() is True
    assert Path(os.environ["REFSEG_REPORTS"]) == tmp_path / "cache" / course.tag() / "reports"
    assert "fetched" in capsys.readouterr().out


def _fresh_environment(where: Path) -> Path:
    """A new virtual environment holding the wheel built from the repository; the packages it
    depends on are seen from this environment's site-packages (read-only, no .pth processed
    there, so the editable install of the checkout is not visible)."""
    source = where / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "refseg_lib", source / "refseg_lib",
                    ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                    "--no-build-isolation", "-w", str(where / "dist"), str(source)], check=True)
    wheel = next((where / "dist").glob("refseg_lib-*.whl"))
    env = where / "env"
    venv.create(env, with_pip=False)
    python = env / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q",
                    "--no-deps", "--no-index", str(wheel)], check=True)
    purelib = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()"
                              "['purelib'])"], capture_output=True, text=True, check=True)
    Path(purelib.stdout.strip(), "dependencies.pth").write_text(
        sysconfig.get_paths()["purelib"] + "\n")
    return python


def test_each_notebook_opened_alone_runs_its_first_cells_from_the_wheel(tmp_path, monkeypatch):
    python = _fresh_environment(tmp_path)
    reports = io.BytesIO()
    with zipfile.ZipFile(reports, "w") as archive:  # the repository archive, served locally
        for path in (ROOT / "reports").rglob("*"):
            if path.is_file() and "executed" not in path.parts:
                archive.write(path, f"refseg-{course.tag()}/{path.relative_to(ROOT).as_posix()}")
    (tmp_path / "archive.zip").write_bytes(reports.getvalue())
    kernels = tmp_path / "jupyter" / "kernels" / "fresh"
    kernels.mkdir(parents=True)
    (kernels / "kernel.json").write_text(json.dumps({
        "argv": [str(python), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "fresh", "language": "python",
        "env": {"REFSEG_RESULTS_URL": (tmp_path / "archive.zip").as_uri(),
                "REFSEG_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1",
                "HF_HUB_OFFLINE": "1", "MPLBACKEND": "agg"}}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    for path in NOTEBOOKS:
        alone = tmp_path / path.stem
        alone.mkdir()
        notebook = nbformat.read(path, as_version=4)
        code = [c for c in notebook.cells if c.cell_type == "code"]
        parameters = code[1]
        lowered = [f"{name} = {steps}" for name, steps in FEW_STEPS.items()
                   if f"\n{name} =" in "\n" + parameters.source]
        parameters.source += "\n" + "\n".join(lowered)
        check = nbformat.v4.new_code_cell("import refseg_lib; print(refseg_lib.__file__)")
        notebook.cells = [*code[:4], check]  # setup, parameters, imports, the first lesson
        NotebookClient(notebook, kernel_name="fresh", timeout=600,
                       resources={"metadata": {"path": str(alone)}}).execute()
        setup_output = "".join(o.get("text", "") for o in notebook.cells[0].outputs)
        assert "Saved results:" in setup_output, (path.name, setup_output)
        where = "".join(o.get("text", "") for o in notebook.cells[-1].outputs)
        assert where.startswith(str(tmp_path / "env")), (path.name, where)
    assert (tmp_path / "cache" / course.tag() / "reports" / "runs").is_dir()
