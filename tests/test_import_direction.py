"""The package's layers import downwards only, and no modules import each other in a circle.

Layers, bottom to top: units, scenario and economics, model, measures, experiments and datasets, reporting and viz,
cli.
Every ``import`` in a module counts, those inside functions included (they run too, only later). The package's
``__init__`` is its public face and may name any layer.
"""

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "loyaltysim"
LAYERS = {"version": 0, "units": 0, "scenario": 0, "economics": 0, "model": 1, "measures": 2, "experiments": 3,
          "datasets": 3, "reporting": 4, "viz": 4, "cli": 5}


def _module(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _type_checking_only(tree: ast.AST) -> set[ast.AST]:
    """The nodes inside ``if TYPE_CHECKING:`` blocks (imports for type hints, never run)."""
    return {sub for node in ast.walk(tree) if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING"
            for stmt in node.body for sub in ast.walk(stmt)}


def _imports(path: Path, typing_too: bool = True) -> set[str]:
    """The loyaltysim modules ``path`` imports (``from a import b`` counts ``a.b`` when that is a module), with or
    without those imported for type hints only."""
    package = _module(path) if path.name == "__init__.py" else _module(path).rsplit(".", 1)[0]
    tree = ast.parse(path.read_text())
    skip = set() if typing_too else _type_checking_only(tree)
    found = set()
    for node in ast.walk(tree):
        if node in skip:
            continue
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: up from the module's package
                parents = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parents, base] if base else parents)
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.add(sub if _is_module(sub) else base)
    return {m for m in found if m == "loyaltysim" or m.startswith("loyaltysim.")}


def _is_module(name: str) -> bool:
    path = SRC.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _layer(module: str) -> int | None:
    parts = module.split(".")
    return LAYERS.get(parts[1]) if len(parts) > 1 else None


MODULES = {_module(p): p for p in sorted(PACKAGE.rglob("*.py"))}
GRAPH = {name: _imports(path) for name, path in MODULES.items()}
RUN_GRAPH = {name: _imports(path, typing_too=False) for name, path in MODULES.items()}


@pytest.mark.parametrize("module", [m for m in MODULES if m != "loyaltysim"])
def test_imports_point_down(module):
    mine = _layer(module)
    assert mine is not None, f"{module} belongs to no layer; add it to LAYERS"
    upward = sorted(m for m in GRAPH[module] if (_layer(m) or 0) > mine)
    assert not upward, f"{module} (layer {mine}) imports upward: {upward}"


def test_no_import_circles():
    """Among the imports that run (type-hint imports left out)."""
    seen: dict[str, int] = {}  # 1 on the current path, 2 done

    def visit(module: str, path: list[str]) -> None:
        seen[module] = 1
        for target in sorted(RUN_GRAPH.get(module, ())):
            if target == "loyaltysim" or target not in RUN_GRAPH:
                continue
            assert seen.get(target) != 1, "import circle: " + " -> ".join([*path, module, target])
            if target not in seen:
                visit(target, [*path, module])
        seen[module] = 2

    for module in RUN_GRAPH:
        if module not in seen:
            visit(module, [])


def test_a_sweeps_worker_does_not_import_the_registrys_database_libraries():
    """A worker process imports the worker's module and what a run needs (the registry is the coordinator's): not
    SQLAlchemy or SQLModel, half a second of every worker's start-up."""
    code = ("import sys, loyaltysim.experiments.worker, loyaltysim.experiments.run; "
            "print(sorted(m for m in ('sqlalchemy', 'sqlmodel', 'loyaltysim.experiments.storage') "
            "if m in sys.modules))")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
