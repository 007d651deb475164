"""The import graph points one way: no module of tunesmith imports, however indirectly, a module that imports it.

Read from the source with ``ast``, as a reader of the code sees it: every import at any depth (inside a function,
under ``if TYPE_CHECKING:``) is an arrow, relative imports resolved. ``from p import n`` is an arrow to ``p.n``
when that is a module, else to ``p``. An import of ``a.b.c`` is an arrow to ``a.b.c`` only (Python runs the
packages' ``__init__`` first too, which is why a package's ``__init__`` imports nothing above its own modules:
``test_plot_data_does_not_load_the_results_module`` checks what one import actually runs).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "tunesmith"


def _modules() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the package (``__init__.py`` names its package)."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def imports_of(name: str, source: str, modules: dict[str, Path], is_package: bool = False) -> set[str]:
    """The modules of ``modules`` that the module ``name`` (its text: ``source``) imports, anywhere in it."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                here = name.split(".") if is_package else name.split(".")[:-1]
                anchor = here[: len(here) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
        for target in targets:
            while target and target not in modules:  # `from tunesmith.x import name`: the module is tunesmith.x
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def import_graph() -> dict[str, set[str]]:
    """Module -> the tunesmith modules it imports."""
    modules = _modules()
    return {name: imports_of(name, path.read_text(encoding="utf-8"), modules, path.name == "__init__.py")
            for name, path in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as [a, b, ..., a], or None (depth-first search, iterative)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    for root in sorted(graph):
        if root in state:
            continue
        path = [root]
        stack = [iter(sorted(graph[root]))]
        state[root] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            elif nxt not in state:
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(sorted(graph[nxt])))
    return None


def test_the_graph_reader_sees_lazy_type_checking_and_relative_imports() -> None:
    graph = import_graph()
    assert "tunesmith._errors" in graph["tunesmith.results"]  # a top-level import
    assert "tunesmith._importance" in graph["tunesmith.results"]  # one inside a method
    assert "tunesmith.searchers._pareto" in graph["tunesmith.results"]  # `from tunesmith.searchers._pareto import`
    modules = dict.fromkeys(["p", "p.a", "p.b", "p.q", "p.q.c", "other"], Path())
    source = ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from . import c\n"
              "def f():\n    from ..b import thing\n    from .. import a\n    import other\n")
    assert imports_of("p.q.d", source, modules) == {"p.q.c", "p.b", "p.a", "other"}
    assert imports_of("p.q", source, modules, is_package=True) == {"p.q.c", "p.b", "p.a", "other"}
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set(), "d": {"a", "c"}}) is None


def test_no_module_imports_itself_through_others() -> None:
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_plot_data_does_not_load_the_results_module() -> None:
    """What Python runs for ``import tunesmith.plots.data`` (the notebook's ``result.plot``): the plot functions
    and the plots package's ``__init__``, not the results module above them, nor the report."""
    code = ("import sys, tunesmith.plots.data; "
            "print(sorted(m for m in ('tunesmith.results', 'tunesmith.plots.report') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True,
                         cwd=PACKAGE.parent)
    assert out.stdout.strip() == "[]"
