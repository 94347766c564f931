"""The package's own import graph, read from its source with ``ast`` (nothing is imported), and the two checks
ARCHITECTURE.md promises: no import circle, and no import against the documented layer order.

    python tests/import_graph.py            # figures: modules, edges, circles, upward imports

Every ``import`` counts, including those inside functions and under ``TYPE_CHECKING``: a lazy import hides a
dependency from the import system, not from the reader.
"""

from __future__ import annotations

import ast
import re
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "unilip"
ARCHITECTURE = ROOT / "ARCHITECTURE.md"


def modules(package: Path = PACKAGE) -> dict[str, Path]:
    """Dotted module name -> file, for every ``.py`` file of the package (a package is its ``__init__``)."""
    out = {}
    for path in sorted(package.rglob("*.py")):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _targets(name: str, path: Path, node: ast.AST) -> list[str]:
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    assert isinstance(node, ast.ImportFrom)
    base = node.module or ""
    if node.level:
        pkg = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        pkg = pkg[: len(pkg) - (node.level - 1)]
        base = ".".join(pkg + ([node.module] if node.module else []))
    return [f"{base}.{a.name}" for a in node.names] + [base]


def imports(package: Path = PACKAGE) -> dict[str, set[str]]:
    """Module -> the package's modules it imports (``from x import y`` names ``x.y`` when that is a module)."""
    mods = modules(package)
    top = package.name
    edges: dict[str, set[str]] = {m: set() for m in mods}
    for name, path in mods.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            targets = _targets(name, path, node)
            if isinstance(node, ast.ImportFrom):  # `from a import b`: the module a.b if there is one, else a
                subs = [t for t in targets[:-1] if t in mods]
                targets = subs if len(subs) == len(targets) - 1 else subs + [targets[-1]]
            for target in targets:
                if target != top and not target.startswith(top + "."):
                    continue
                while target not in mods and "." in target:
                    target = target.rsplit(".", 1)[0]
                if target != name:
                    edges[name].add(target)
    return edges


def circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def documented_layers(text: str | None = None) -> list[list[str]]:
    """The layer table of ARCHITECTURE.md (the fenced ``layers`` block), lowest first: one line per layer,
    ``N. name: module, module, ...``; a module names itself and everything under it."""
    text = ARCHITECTURE.read_text(encoding="utf-8") if text is None else text
    block = re.search(r"```layers\n(.*?)```", text, re.S)
    if block is None:
        raise ValueError("ARCHITECTURE.md has no ```layers block")
    layers = []
    for line in block.group(1).splitlines():
        if line.strip():
            layers.append([m.strip() for m in line.split(":", 1)[1].split(",") if m.strip()])
    return layers


def layer_of(module: str, layers: list[list[str]]) -> int | None:
    """The layer whose longest matching prefix names ``module``; None when no layer names it."""
    best, best_len = None, -1
    for i, names in enumerate(layers):
        for prefix in names:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best_len:
                best, best_len = i, len(prefix)
    return best


def upward(edges: dict[str, set[str]], layers: list[list[str]]) -> list[tuple[str, str]]:
    """Imports from a module to a module of a higher layer (the only direction the table forbids)."""
    return sorted((a, b) for a, bs in edges.items() for b in bs
                  if (la := layer_of(a, layers)) is not None and (lb := layer_of(b, layers)) is not None and lb > la)


def main() -> int:
    edges = imports()
    layers = documented_layers()
    unplaced = sorted(m for m in edges if layer_of(m, layers) is None)
    found = circles(edges)
    up = upward(edges, layers)
    print(f"{len(edges)} modules, {sum(map(len, edges.values()))} imports between them, {len(layers)} layers")
    print(f"{len(found)} circle(s)" + "".join(f"\n  {len(c)} modules: {' '.join(c)}" for c in found))
    print(f"{len(up)} upward import(s)" + "".join(f"\n  {a} -> {b}" for a, b in up))
    print(f"{len(unplaced)} module(s) in no layer" + "".join(f"\n  {m}" for m in unplaced))
    return 1 if found or up or unplaced else 0


if __name__ == "__main__":
    sys.exit(main())
