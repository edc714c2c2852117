"""Every module imports on its own, and no two modules import each other, even lazily.

Two checks: a static graph of every import statement in the project (function-level ones
included: a cycle hidden inside a function still ties two modules together), which must have
no cycle; and each module imported first, with every project module dropped from sys.modules
before it, so a hidden import-order dependency fails.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("trainer", "records", "sweeps", "analysis", "benchmarks")


def _modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            out[name] = path
    return out


def _typing_only(tree: ast.AST) -> set[int]:
    """ids of the import nodes under ``if TYPE_CHECKING:``: never run, so no dependency."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) \
                and node.test.id == "TYPE_CHECKING":
            out |= {id(n) for stmt in node.body for n in ast.walk(stmt)}
    return out


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """Project modules that ``name`` imports anywhere in its file (packages' __init__ aside)."""
    is_pkg = path.name == "__init__.py"
    found = set()
    tree = ast.parse(path.read_text(encoding="utf-8"))
    typing_only = _typing_only(tree)
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                pkg = name if is_pkg else name.rpartition(".")[0]
                for _ in range(node.level - 1):
                    pkg = pkg.rpartition(".")[0]
                base = f"{pkg}.{base}" if base else pkg
            targets = [f"{base}.{a.name}" for a in node.names] + [base]
        else:
            continue
        for t in targets:
            if t in known and t != name and t not in PACKAGES:
                found.add(t)
    return found


def test_typing_only_imports_are_not_edges(tmp_path: Path) -> None:
    f = tmp_path / "m.py"
    f.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .b import X\n"
                 "from .c import Y\n")
    assert _imports("p.m", f, {"p.b", "p.c"}) == {"p.c"}


def test_no_import_cycles() -> None:
    mods = _modules()
    graph = {n: _imports(n, p, set(mods)) for n, p in mods.items()}
    cycles, state = [], {}

    def visit(n: str, stack: list[str]) -> None:
        state[n] = "open"
        for m in sorted(graph[n]):
            if state.get(m) == "open":
                cycles.append(stack[stack.index(m):] + [m] if m in stack else [n, m])
            elif m not in state:
                visit(m, stack + [m])
        state[n] = "done"

    for n in sorted(graph):
        if n not in state:
            visit(n, [n])
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_every_module_imports_first() -> None:
    names = sorted(n for n in _modules() if not n.endswith("__main__"))  # those run, not load
    code = (
        "import importlib, sys, traceback\n"
        f"pkgs = {PACKAGES!r}\n"
        f"bad = []\n"
        f"for name in {names!r}:\n"
        "    for m in [m for m in sys.modules if m.split('.')[0] in pkgs]:\n"
        "        del sys.modules[m]\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except Exception:\n"
        "        bad.append(name + ': ' + traceback.format_exc().splitlines()[-1])\n"
        "print('\\n'.join(bad))\n"
        "sys.exit(1 if bad else 0)\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]


def test_records_layer_loads_no_torch_ray_optuna_or_plotly() -> None:
    """records/ is what every reader shares (docs/architecture.md): a pandas user reading a
    store pays for pyarrow, never for torch, Ray, Optuna or plotly, nor for sweeps or analysis."""
    mods = sorted(n for n in _modules() if n.split(".")[0] == "records")
    code = (f"import importlib, sys\nfor m in {mods!r}: importlib.import_module(m)\n"
            "heavy = sorted(m for m in ('torch', 'ray', 'optuna', 'plotly', 'sweeps', 'analysis')"
            " if m in sys.modules)\nprint(heavy)\nsys.exit(1 if heavy else 0)\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
