"""The layers as docs/architecture.md draws them, read from the source with ast: no import cycles
(function-local imports included), backends/ imports nothing above it, the detector imports no
storage, and the library never imports the CLI (but for the `python -m artifactkit` shim)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_NAMED = re.compile(r"artifactkit(\.\w+)+:\w+")  # a module named in a string, as the backend registry does
LEAVES = {"artifactkit.errors", "artifactkit.redact", "artifactkit.fileio"}  # import nothing of ours


def _modules() -> dict[str, Path]:
    mods = {}
    for path in sorted([*ROOT.glob("artifactkit/**/*.py"), *ROOT.glob("cli/*.py")]):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[0] == "cli":
            parts[0] = "artifactkit_cli"  # how it installs
        if parts[-1] == "__init__":
            parts.pop()
        mods[".".join(parts)] = path
    return mods


def _imports(mods: dict[str, Path], named: bool = False) -> dict[str, set[str]]:
    """Who imports whom; with `named`, also modules named in strings as "module:callable" (the
    backend registry's entries, imported on first use): they count for direction, not for cycles
    (a registry naming its siblings is no cycle at import)."""
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for name, path in mods.items():
        package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(package[: len(package) - node.level + 1] + ([node.module] if node.module else []))
                subs = [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in mods]
                targets = subs if len(subs) == len(node.names) else [base, *subs]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif named and isinstance(node, ast.Constant) and isinstance(node.value, str) and _NAMED.fullmatch(node.value):
                targets = [node.value.partition(":")[0]]  # "module:callable", imported on first use (registry)
            else:
                continue
            graph[name].update(t for t in targets if t in mods and t != name)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while (w := stack.pop()) != v:
                component.append(w)
            if component:
                found.append([v, *component])

    for v in graph:
        if v not in index:
            visit(v)
    return found


GRAPH = _imports(_modules())
NAMED = _imports(_modules(), named=True)  # GRAPH plus registry strings


def test_no_import_cycles():
    assert sorted(map(sorted, _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}))) == [["a", "b", "c"]]
    assert _cycles(GRAPH) == []


def test_backends_import_nothing_above_them():
    up = [(m, t) for m, ts in NAMED.items() if m.startswith("artifactkit.backends") for t in ts
          if not t.startswith("artifactkit.backends") and t not in LEAVES]
    assert up == []


def test_the_detector_knows_no_storage():
    allowed = LEAVES | {"artifactkit.yolo"}  # the torch-free YOLO-format reader is not storage
    up = [(m, t) for m, ts in GRAPH.items() if m.startswith("artifactkit.detector") for t in ts
          if not t.startswith("artifactkit.detector") and t not in allowed]
    assert up == []


def test_the_library_never_imports_the_cli():
    up = [(m, t) for m, ts in GRAPH.items() if m.startswith("artifactkit.") and m != "artifactkit.__main__"
          for t in ts if t.startswith("artifactkit_cli")]
    assert up == []
