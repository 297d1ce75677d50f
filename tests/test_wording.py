"""The repository speaks for itself: no file outside it, no remark on how it was produced, and
no internal jargon in what readers see.

Scanned: every notebook cell, every module docstring of the package, the benchmarks and the
tests, and every Markdown file of the repository. Lesson prose (a notebook's Markdown cells,
outside code spans and code blocks) is held to a stricter list: the words of the tooling and of
the run bookkeeping have reader-facing names there.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Markdown files the repository has: a reference to any other is to a file outside it.
_OWN_MARKDOWN = sorted({p.stem for p in ROOT.rglob("*.md")
                        if not {".venv", ".git", "node_modules"} & set(p.parts)})
# (pattern, what to write instead). Anywhere: notebooks, docstrings, Markdown files.
EVERYWHERE = [
    (r"(?<![\w.])\.\./[\w.-]|(?<![\w:/.])/(home|root|mnt|tmp|work)/",
     "a path outside the repository: cite the paper (section, equation, table) or the official "
     "repository (URL and commit)"),
    (r"(?<![\w.-])(?!(?:" + "|".join(map(re.escape, _OWN_MARKDOWN)) + r")\.md\b)[\w-]+\.md\b",
     "a Markdown file the repository does not have: cite the paper or the official repository"),
    (r"\b(this|our) (machine|computer)\b|\b(2|two)[- ]cores?\b|\b(our|internal) notes\b",
     "say what was measured, not where or how the repository was produced"),
]
# Lesson prose only (notebook Markdown cells without code spans and blocks).
PROSE = [
    (r"\blive[- ]runs?\b", "'the run in this notebook' or 'train it yourself'"),
    (r"\brun records?\b|\brecorded runs?\b|\bof record\b|\brecords\b", "'saved results'"),
    (r"\border [01]\b", "'first seed' / 'second seed'"),
    (r"\bnbval\b|\bpapermill\b", "how the notebooks are tested or executed belongs in README"),
    (r"\bprofiles?\b", "'the quick settings' / 'the paper's settings' (the `profile` parameter)"),
]

_CODE = re.compile(r"```.*?```|`[^`\n]*`", re.S)
_MARKDOWN = [p for p in ROOT.rglob("*.md") if not {".venv", ".git", "node_modules",
                                                    "checkpoints", "data"} & set(p.parts)]
_MODULES = sorted(p for folder in ("refseg_lib", "benchmarks", "tests")
                  for p in (ROOT / folder).rglob("*.py"))
_NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def offences(text: str, rules) -> list[str]:
    return [f"{m.group(0)!r} (write instead: {advice})"
            for pattern, advice in rules for m in re.finditer(pattern, text, re.I)]


def notebook_offences(notebook: dict) -> list[str]:
    found = []
    for i, cell in enumerate(notebook["cells"]):
        source = "".join(cell["source"])
        hits = offences(source, EVERYWHERE)
        if cell["cell_type"] == "markdown":
            hits += offences(_CODE.sub("", source), PROSE)
        found += [f"cell {i}: {hit}" for hit in hits]
    return found


def docstrings(path: Path) -> str:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    nodes = [tree, *(n for n in ast.walk(tree)
                     if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)))]
    return "\n".join(ast.get_docstring(n) or "" for n in nodes)


@pytest.mark.parametrize("path", _NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_wording(path):
    found = notebook_offences(json.loads(path.read_text(encoding="utf-8")))
    assert not found, f"{path.name}:\n  " + "\n  ".join(found)


def test_docstrings_and_markdown_wording():
    found = [f"{p.relative_to(ROOT)}: {hit}" for p in _MODULES
             if p.name != Path(__file__).name for hit in offences(docstrings(p), EVERYWHERE)]
    found += [f"{p.relative_to(ROOT)}: {hit}" for p in _MARKDOWN
              for hit in offences(p.read_text(encoding="utf-8"), EVERYWHERE)]
    assert not found, "\n  ".join(found)


def test_scan_catches_a_planted_word():
    clean = {"cells": [{"cell_type": "markdown", "source": ["The model in `profile='quick'`.\n"]},
                       {"cell_type": "code", "source": ["x = 1  # saved results (README.md)\n"]}]}
    assert notebook_offences(clean) == []
    for cell, word in [(0, "See NOTES.md for the details."), (0, "The live run learns."),
                       (0, "Read the run records."), (1, "# measured on our computer"),
                       (0, "as in ../design/PLAN.txt"), (1, "# from /home/me/papers")]:
        planted = json.loads(json.dumps(clean))
        planted["cells"][cell]["source"].append(word)
        assert notebook_offences(planted), word
    assert not offences("reports/CLAIMS.md and the weights are shared by all pixels", EVERYWHERE)
