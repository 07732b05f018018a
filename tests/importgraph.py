"""Import graph of a package from its source (ast only, nothing imported): for the no-cycle test."""

from __future__ import annotations

import ast
import sys
from pathlib import Path


def module_graph(root: Path, pkg: str = "reportgen", deferred: bool = False) -> dict[str, set[str]]:
    """Module -> the package modules it imports at import time (``deferred``: also inside functions)."""
    files = {}
    for f in root.rglob("*.py"):
        rel = f.relative_to(root.parent).with_suffix("")
        parts = list(rel.parts)
        is_pkg = parts[-1] == "__init__"
        if is_pkg:
            parts = parts[:-1]
        files[".".join(parts)] = (f, is_pkg)
    graph = {}
    for name, (f, is_pkg) in files.items():
        tree = ast.parse(f.read_text(encoding="utf-8"))
        here = name if is_pkg else name.rsplit(".", 1)[0]
        deps = set()
        def visit(stmts):
            for n in stmts:
                if isinstance(n, ast.If):
                    t = n.test
                    if (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING"
                            or isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING"):
                        continue
                    visit(n.body); visit(n.orelse)
                elif isinstance(n, ast.Try):
                    visit(n.body); visit(n.orelse); visit(n.finalbody)
                    for h in n.handlers: visit(h.body)
                elif isinstance(n, ast.Import):
                    for a in n.names:
                        if a.name.split(".")[0] == pkg:
                            deps.add(a.name)
                elif isinstance(n, ast.ImportFrom):
                    if n.level:
                        base = here.split(".")
                        base = base[: len(base) - (n.level - 1)]
                        mod = ".".join(base + ([n.module] if n.module else []))
                    else:
                        mod = n.module or ""
                    if mod.split(".")[0] != pkg:
                        continue
                    for a in n.names:
                        sub = f"{mod}.{a.name}"
                        deps.add(sub if sub in files else mod)
        visit(_imports_anywhere(tree) if deferred else tree.body)
        graph[name] = {d for d in deps if d in files and d != name}
    return graph

def _is_type_checking(n: ast.AST) -> bool:
    t = n.test if isinstance(n, ast.If) else None
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING"
            or isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING")


def _imports_anywhere(tree: ast.AST) -> list[ast.AST]:
    """Every import statement of ``tree``, in functions too, but not under ``if TYPE_CHECKING:`` (never run)."""
    out, todo = [], [tree]
    while todo:
        n = todo.pop()
        if isinstance(n, (ast.Import, ast.ImportFrom)):
            out.append(n)
        elif isinstance(n, ast.If) and _is_type_checking(n):
            todo.extend(n.orelse)
        else:
            todo.extend(ast.iter_child_nodes(n))
    return out


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every cycle met by a depth-first search (empty: the graph is acyclic)."""
    out, state, stack = [], {}, []
    def dfs(u):
        state[u] = 1; stack.append(u)
        for v in sorted(graph[u]):
            if state.get(v) == 1:
                out.append(stack[stack.index(v):] + [v])
            elif v not in state:
                dfs(v)
        stack.pop(); state[u] = 2
    for u in sorted(graph):
        if u not in state: dfs(u)
    return out

if __name__ == "__main__":
    g = module_graph(Path(sys.argv[1]))
    for c in cycles(g): print(" -> ".join(c))
