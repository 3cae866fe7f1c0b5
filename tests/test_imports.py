"""The import graph of jaxcba: no cycle among module-level imports, the validation layer
(jaxcba._checks) a leaf that imports no other jaxcba module, and every module importable in a
fresh interpreter whatever the order."""

import ast
import random
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "jaxcba"


def _modules() -> dict[str, Path]:
    out = {}
    for p in sorted(ROOT.rglob("*.py")):
        parts = p.relative_to(ROOT.parent).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = p
    return out


MODULES = _modules()


def _imports(name: str, path: Path, *, module_level: bool) -> set[str]:
    """The jaxcba modules ``name`` imports (those at module level only, or all, functions' too)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()

    def visit(node, in_function):
        for ch in ast.iter_child_nodes(node):
            inside = in_function or isinstance(ch, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(ch, ast.Import):
                names = [a.name for a in ch.names]
            elif isinstance(ch, ast.ImportFrom):
                base = ch.module or ""
                if ch.level:
                    up = package.split(".")[: len(package.split(".")) - (ch.level - 1)]
                    base = ".".join(up + ([base] if base else []))
                names = [base] + [f"{base}.{a.name}" for a in ch.names]
            else:
                visit(ch, inside)
                continue
            if inside and module_level:
                continue
            for n in names:
                while n and n not in MODULES:
                    n = n.rpartition(".")[0]
                if n and n != name and not name.startswith(n + "."):  # own packages are being imported already
                    found.add(n)

    visit(ast.parse(path.read_text()), False)
    return found


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` (a list of nodes, first == last), or None."""
    state, stack = {}, []

    def dfs(v):
        state[v] = 1
        stack.append(v)
        for w in sorted(graph[v]):
            if state.get(w) == 1:
                return stack[stack.index(w):] + [w]
            if w not in state and (c := dfs(w)):
                return c
        state[v] = 2
        stack.pop()
        return None

    for v in sorted(graph):
        if v not in state and (c := dfs(v)):
            return c
    return None


def test_the_cycle_finder_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_no_import_cycle_among_module_level_imports():
    graph = {m: _imports(m, p, module_level=True) for m, p in MODULES.items()}
    assert len(graph) > 50 and sum(map(len, graph.values())) > 100  # the walk sees the package
    assert _cycle(graph) is None


def test_the_validation_layer_imports_no_other_jaxcba_module():
    """jaxcba._checks is below everything (model, io, cli import it), in functions too."""
    assert _imports("jaxcba._checks", MODULES["jaxcba._checks"], module_level=False) == set()
    assert "jaxcba._checks" in _imports("jaxcba.model.window", MODULES["jaxcba.model.window"], module_level=True)


@pytest.mark.parametrize("seed", [0, 1])
def test_every_module_imports_in_a_fresh_interpreter_in_random_order(seed):
    order = sorted(m for m in MODULES if not m.endswith(".__main__"))  # __main__ runs the command line
    random.Random(seed).shuffle(order)
    code = "import importlib, sys\nfor m in sys.argv[1:]:\n    importlib.import_module(m)\n"
    run = subprocess.run([sys.executable, "-c", code, *order], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]


def test_no_module_below_the_cli_imports_it():
    """The command line is the top layer: no other module imports jaxcba.cli, in functions neither."""
    assert "jaxcba.cli._common" in _imports("jaxcba.cli.demo", MODULES["jaxcba.cli.demo"], module_level=False)
    below = {m: sorted(n for n in _imports(m, p, module_level=False) if n.startswith("jaxcba.cli"))
             for m, p in MODULES.items() if not (m.startswith("jaxcba.cli") or m == "jaxcba.__main__")}
    assert {m: v for m, v in below.items() if v} == {}


def test_validate_has_no_import_cycle_in_functions_either():
    """jaxcba.validate's modules (measurement, tables, figures) import one another without a cycle,
    counting the imports inside functions too."""
    mods = {m: p for m, p in MODULES.items() if m.startswith("jaxcba.validate.")}
    graph = {m: _imports(m, p, module_level=False) & set(mods) for m, p in mods.items()}
    assert "jaxcba.validate._figures" in graph["jaxcba.validate._core"]
    assert _cycle(graph) is None
