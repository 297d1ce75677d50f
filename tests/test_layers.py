"""The library's layers import one way only: no import circle, no import of a higher layer.

The graph is read from the source (every ``import`` and ``from ... import``, those inside
functions too), not from ``sys.modules``, so a circle that an import deferred into a function
hides at run time still counts.
"""

import ast
import shutil
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "refseg_lib"

# Lowest first; a module may import its own package and the layers below it.
LAYERS = (
    ("paths", "_compat", "paper_numbers"),
    ("course",),
    ("data", "records"),
    ("nn", "metrics", "viz"),
    ("losses", "postprocess", "reference"),
    ("models",),
    ("engine",),
    ("experiments",),
    ("reports", "demo"),
    ("timing",),
    ("plan",),
    ("cli",),
    ("__main__", "__init__"),
)
LAYER_OF = {part: rank for rank, parts in enumerate(LAYERS) for part in parts}


def modules(package: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every module of ``package`` (packages by __init__)."""
    found = {}
    for path in package.rglob("*.py"):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def import_graph(package: Path) -> dict[str, set[str]]:
    """Module -> the package's modules it imports (a name imported from a package counts as
    the submodule of that name when there is one, else as the package)."""
    known = modules(package)
    graph = {}
    for name, path in known.items():
        own_package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = own_package.split(".")[: len(own_package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, *([node.module] if node.module else [])])
                for alias in node.names:
                    child = f"{base}.{alias.name}"
                    targets.add(child if child in known else base)
        graph[name] = {t for t in targets if t in known and t != name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle as [a, b, ..., a], or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                return [*path[path.index(target):], target]
            if target not in state and (cycle := visit(target)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def _part(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def test_the_library_has_no_import_circle():
    cycle = find_cycle(import_graph(PACKAGE))
    assert cycle is None, "import circle: " + " -> ".join(cycle)


def test_every_import_goes_down_the_layers():
    graph = import_graph(PACKAGE)
    unknown = sorted({_part(m) for m in graph} - set(LAYER_OF))
    assert not unknown, f"place {unknown} in LAYERS"
    upward = [f"{m} -> {t}" for m, targets in graph.items() for t in sorted(targets)
              if _part(m) != _part(t) and LAYER_OF[_part(t)] >= LAYER_OF[_part(m)]]
    assert not upward, "imports of a layer that is not below: " + "; ".join(upward)


@pytest.mark.parametrize("low, high", [("refseg_lib/data/types.py", "refseg_lib.engine"),
                                       ("refseg_lib/reports/tables.py", "refseg_lib.reports")])
def test_a_planted_circle_is_found(tmp_path, low, high):
    copy = tmp_path / "refseg_lib"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    planted = tmp_path / low
    planted.write_text(planted.read_text() + f"\n\ndef _late():\n    import {high}  # noqa\n")
    cycle = find_cycle(import_graph(copy))
    assert cycle is not None and cycle[0] == cycle[-1]
    assert low.removesuffix(".py").replace("/", ".") in cycle
