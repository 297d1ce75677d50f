"""Command line: ``python -m refseg_lib {reproduce,execute-notebooks}``.

``reproduce`` is the main job of the repository: it re-executes every lesson notebook with
papermill in the chosen profile (each notebook writes its tables and figures under
``reports/``) and keeps the executed copies in ``reports/executed/``.
``execute-notebooks`` re-executes the committed notebooks in place with their default
parameters, which is what nbval checks and what readers see.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from refseg_lib.paths import notebooks_dir, reports_dir


def _notebooks(selection: list[str] | None) -> list[Path]:
    found = sorted(notebooks_dir().glob("[0-9][0-9]_*.ipynb"))
    if selection:
        found = [nb for nb in found if any(nb.name.startswith(s) for s in selection)]
    if not found:
        sys.exit(f"no notebooks match {selection} in {notebooks_dir()}")
    return found


def reproduce(profile: str, selection: list[str] | None) -> None:
    import papermill

    executed = reports_dir() / "executed"
    executed.mkdir(parents=True, exist_ok=True)
    for notebook in _notebooks(selection):
        start = time.perf_counter()
        print(f"[reproduce] {notebook.name} (profile={profile})", flush=True)
        papermill.execute_notebook(
            str(notebook), str(executed / notebook.name), parameters={"profile": profile},
            cwd=str(notebook.parent), kernel_name="python3", progress_bar=True,
        )
        elapsed = time.perf_counter() - start
        print(f"[reproduce] {notebook.name} done in {elapsed:.0f} s", flush=True)
    print(f"[reproduce] reports in {reports_dir()}")


def execute_in_place(selection: list[str] | None, timeout: int) -> None:
    import nbformat
    from nbclient import NotebookClient

    for notebook in _notebooks(selection):
        start = time.perf_counter()
        nb = nbformat.read(notebook, as_version=4)
        NotebookClient(nb, timeout=timeout, kernel_name="python3",
                       resources={"metadata": {"path": str(notebook.parent)}}).execute()
        nbformat.write(nb, notebook)
        print(f"{notebook.name}: executed in {time.perf_counter() - start:.0f} s", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m refseg_lib", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    rep = commands.add_parser("reproduce", help="papermill every notebook, regenerate reports/")
    rep.add_argument("--profile", choices=("quick", "paper"), default="quick")
    rep.add_argument("--only", nargs="*", help="notebook number prefixes, e.g. 00 02")
    exe = commands.add_parser("execute-notebooks", help="execute committed notebooks in place")
    exe.add_argument("--only", nargs="*", help="notebook number prefixes, e.g. 00 02")
    exe.add_argument("--timeout", type=int, default=900, help="per-cell timeout in seconds")
    args = parser.parse_args(argv)
    if args.command == "reproduce":
        reproduce(args.profile, args.only)
    else:
        execute_in_place(args.only, args.timeout)


if __name__ == "__main__":
    main()
