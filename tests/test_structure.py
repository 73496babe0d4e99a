"""The code's shape, checked: no import cycle, library code never imports CLI code, short files.

Only module-level imports count: an import inside a function is a deliberate lazy import
(``canstyle --help`` stays fast) and cannot form a cycle at import time.
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.helpers import REPO

SRC = REPO / "src"
PKG = SRC / "canstyle"
LIBRARY = ("canstyle.can", "canstyle.sr", "canstyle.nst", "canstyle.web", "canstyle.pipeline")
MAX_LINES = 400


def _module(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, modules: set[str], *, top_level_only: bool) -> set[str]:
    """canstyle modules that ``path`` imports (module-level only, or anywhere)."""
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        else:
            continue
        found |= {n for n in names if n in modules}
    return found


def _graph(top_level_only: bool) -> dict[str, set[str]]:
    files = {_module(p): p for p in PKG.rglob("*.py")}
    return {m: _imports(p, set(files), top_level_only=top_level_only) - {m} for m, p in files.items()}


def test_no_import_cycle() -> None:
    graph = _graph(top_level_only=True)
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for dep in sorted(graph.get(m, ())):
            assert state.get(dep) != 1, "import cycle: " + " -> ".join([*path, m, dep])
            if dep not in state:
                visit(dep, [*path, m])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [])


def test_library_code_never_imports_cli_code() -> None:
    graph = _graph(top_level_only=False)
    library = [m for m in graph if m.startswith(LIBRARY) and not m.endswith(("_cli", ".cli"))]
    assert len(library) > 30
    for m in library:
        cli = {d for d in graph[m] if d.endswith(("_cli", ".cli", ".cliutil"))}
        assert not cli, f"{m} imports CLI code: {sorted(cli)}"


def test_no_file_over_400_lines() -> None:
    files = [p for d in ("src", "tests", "scripts", "bench") for p in (REPO / d).rglob("*")
             if p.suffix in (".py", ".js", ".html", ".css") and p.is_file()]
    assert len(files) > 80
    long = {str(p.relative_to(REPO)): n for p in files if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, long
