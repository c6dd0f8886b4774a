"""Module layers point down (design.md, "The dataflow"): cli -> runtime -> operators / eval / export -> models /
sources / sinks -> config, parts, frames, errors, metrics, registry.

* The static import graph of the ``streamad`` modules (module-level imports, read with ``ast``; imports inside
  functions and under ``if TYPE_CHECKING:`` do not run at import time and are left out) has no cycle.
* The layer rule holds for every import a module writes, wherever it stands (a lazy import inside a function is a
  dependency all the same).
* Each top-level subpackage imports on its own in a fresh interpreter.
* Every Prometheus metric is declared in ``streamad/metrics.py``: no other module imports a metric class.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from image_fixtures import DATA

PACKAGE = Path(__file__).resolve().parents[2] / "streamad"

#: who may not import whom: modules under a prefix on the left never import a module under a prefix on the right
LAYER_RULES: dict[str, tuple[str, ...]] = {
    "streamad.models": ("streamad.runtime", "streamad.operators", "streamad.eval", "streamad.export", "streamad.cli"),
    "streamad.sources": ("streamad.runtime", "streamad.operators", "streamad.eval", "streamad.export", "streamad.cli"),
    "streamad.sinks": ("streamad.runtime", "streamad.operators", "streamad.eval", "streamad.export", "streamad.cli"),
    "streamad.operators": ("streamad.runtime", "streamad.cli"),
    "streamad.eval": ("streamad.runtime", "streamad.cli"),
    "streamad.export": ("streamad.runtime", "streamad.cli"),
    "streamad.runtime": ("streamad.cli",),
    "streamad.registry": ("streamad",),  # a leaf: nothing of streamad
}

SUBPACKAGES = ("streamad.models", "streamad.operators", "streamad.sinks", "streamad.sources", "streamad.runtime",
               "streamad.eval", "streamad.cli", "streamad.config")


@dataclass(frozen=True)
class Import:
    """One ``streamad`` module named by an import statement of ``module`` (``line`` in its file)."""

    module: str
    target: str
    line: int
    top_level: bool  # runs when the module is imported (not in a function, not under TYPE_CHECKING)


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(module: str, path: Path, known: set[str]) -> list[Import]:
    """Every import of a ``streamad`` module in ``path``: ``from a.b import c`` names ``a.b.c`` when that is a
    module, else ``a.b``; relative imports are resolved against ``module``'s package."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: list[Import] = []

    def resolve(node: ast.ImportFrom) -> str:
        if not node.level:
            return node.module or ""
        base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
        return ".".join(base + ([node.module] if node.module else []))

    def add(target: str, node: ast.stmt, top_level: bool) -> None:
        if target == "streamad" or target.startswith("streamad."):
            found.append(Import(module, target, node.lineno, top_level))

    def visit(node: ast.AST, top_level: bool) -> None:
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name, node, top_level)
        elif isinstance(node, ast.ImportFrom):
            base = resolve(node)
            for alias in node.names:
                add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base, node, top_level)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            for child in ast.iter_child_nodes(node):
                visit(child, False)  # runs when called, not when the module is imported
        elif isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.body:
                visit(child, False)
            for child in node.orelse:
                visit(child, top_level)
        else:  # module and class bodies, if / try / with / for blocks run at import time
            for child in ast.iter_child_nodes(node):
                visit(child, top_level)

    visit(ast.parse(path.read_text(encoding="utf-8"), str(path)), True)
    return found


def _all_imports() -> list[Import]:
    modules = _modules()
    return [i for name, path in modules.items() for i in _imports(name, path, set(modules))]


def import_graph() -> dict[str, set[str]]:
    """``module -> modules it imports when it is imported``. Importing ``a.b.c`` also runs the packages ``a``
    and ``a.b``, so those are edges too (except the importer's own enclosing packages, already running)."""
    modules = _modules()
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for imp in _all_imports():
        if not imp.top_level:
            continue
        parts = imp.target.split(".")
        for i in range(1, len(parts) + 1):
            target = ".".join(parts[:i])
            if target in modules and target != imp.module and not imp.module.startswith(target + "."):
                graph[imp.module].add(target)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as ``[a, b, ..., a]``, or ``None`` (depth-first search, deterministic order)."""
    state: dict[str, int] = {}  # 1 on the current path, 2 done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)) is not None:
                return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)) is not None:
            return cycle
    return None


def _under(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


# -- the checks' own checks -----------------------------------------------------------------------------------------
def test_find_cycle_names_the_modules_in_order() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_imports_in_functions_and_under_type_checking_are_not_top_level(tmp_path: Path) -> None:
    source = (
        "from typing import TYPE_CHECKING\n"
        "import streamad.frames\n"
        "from streamad import errors\n"
        "from . import parts\n"
        "if TYPE_CHECKING:\n"
        "    from streamad.metrics import Metrics\n"
        "try:\n"
        "    from streamad.registry import SINKS\n"
        "except ImportError:\n"
        "    pass\n"
        "def f():\n"
        "    from streamad.eval import report\n"
        "class C:\n"
        "    from streamad.redact import redact\n"
    )
    path = tmp_path / "mod.py"
    path.write_text(source, encoding="utf-8")
    known = {"streamad.frames", "streamad.errors", "streamad.parts", "streamad.metrics", "streamad.registry",
             "streamad.eval.report", "streamad.redact"}
    got = {(i.target, i.top_level) for i in _imports("streamad.mod", path, known)}
    assert got == {("streamad.frames", True), ("streamad.errors", True), ("streamad.parts", True),
                   ("streamad.metrics", False), ("streamad.registry", True), ("streamad.eval.report", False),
                   ("streamad.redact", True)}


# -- the package --------------------------------------------------------------------------------------------------
def test_the_module_level_import_graph_has_no_cycle() -> None:
    graph = import_graph()
    assert len(graph) > 50 and graph["streamad.runtime.group"], "the package was not read"
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_layers_point_down() -> None:
    wrong = sorted({
        f"{i.module} (line {i.line}) imports {i.target}: {prefix} must not import {banned}"
        for i in _all_imports()
        for prefix, bans in LAYER_RULES.items() if _under(i.module, prefix)
        for banned in bans if _under(i.target, banned)
    })
    assert not wrong, "imports against the layers:\n" + "\n".join(wrong)


PROMETHEUS_METRIC_CLASSES = {"Counter", "Gauge", "Histogram", "Summary", "Info", "Enum"}


def test_every_prometheus_metric_is_declared_in_metrics_py() -> None:
    wrong = []
    for name, path in _modules().items():
        if name == "streamad.metrics":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        aliases = {a.asname or a.name for node in ast.walk(tree) if isinstance(node, ast.Import)
                   for a in node.names if a.name.startswith("prometheus_client")}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("prometheus_client"):
                wrong += [f"{name} (line {node.lineno}) imports prometheus_client's {a.name}" for a in node.names
                          if a.name in PROMETHEUS_METRIC_CLASSES or a.name == "*"]
            elif isinstance(node, ast.Attribute) and node.attr in PROMETHEUS_METRIC_CLASSES \
                    and ast.unparse(node.value) in aliases:
                wrong.append(f"{name} (line {node.lineno}) uses {ast.unparse(node)}")
    assert not wrong, "declare metrics in streamad.metrics.Metrics:\n" + "\n".join(wrong)


@pytest.mark.parametrize("package", SUBPACKAGES)
def test_each_subpackage_imports_alone_in_a_fresh_interpreter(package: str) -> None:
    run = subprocess.run([sys.executable, "-c", f"import {package}"], cwd=PACKAGE.parent, capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0, f"import {package} failed:\n{run.stderr[-3000:]}"


#: libraries a part imports where it uses them, never when the built-in parts register: each costs start-up time
#: and memory in every ``streamad serve`` / ``fit`` / ``eval`` process (torchvision.ops alone imports torch._dynamo,
#: about 2 s; scikit-learn about 1 s), whichever parts its pipeline names
IMPORTED_ON_USE = ("torchvision", "sklearn", "matplotlib", "timm", "open_clip", "nncf", "onnx")


def test_registering_the_builtin_parts_leaves_the_heavy_libraries_to_the_parts_that_use_them() -> None:
    """The built-in parts, the CLI and every runtime module (what a ``serve`` process imports before it reads its
    config) import none of :data:`IMPORTED_ON_USE`."""
    code = ("import importlib, pkgutil, sys; import streamad.cli, streamad.runtime as r; "
            "from streamad.builtin import load_builtin_parts; load_builtin_parts(); "
            "[importlib.import_module(f'streamad.runtime.{m.name}') for m in pkgutil.iter_modules(r.__path__)]; "
            f"print(' '.join(m for m in {IMPORTED_ON_USE!r} if m in sys.modules))")
    run = subprocess.run([sys.executable, "-c", code], cwd=PACKAGE.parent, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.split() == [], f"imported when the built-in parts register: {run.stdout.strip()}"


@pytest.mark.parametrize("build", ["from streamad.models.image.rkde.regions import RegionProposer; "
                                   f"RegionProposer({str(DATA.parent / 'models' / 'centernet.onnx')!r})",
                                   "from streamad.models.components.region_appearance import RegionAppearance; "
                                   "RegionAppearance()"])
def test_a_part_imports_its_library_when_built_not_on_its_first_frame(build: str) -> None:
    """R-KDE's region proposer and AI-VAD's region appearance use torchvision.ops on every frame: building them
    imports it, so a live stream's first frame does not wait the seconds the import takes."""
    code = f"import sys; {build}; print('torchvision.ops' in sys.modules)"
    run = subprocess.run([sys.executable, "-c", code], cwd=PACKAGE.parent, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.split()[-1] == "True"
