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
            elif (
                named
                and isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and _NAMED.fullmatch(node.value)
            ):
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


def backends_looking_up() -> list[tuple[str, str]]:
    """Imports from backends/ of anything above it (registry strings included)."""
    return [
        (m, t)
        for m, ts in NAMED.items()
        if m.startswith("artifactkit.backends")
        for t in ts
        if not t.startswith("artifactkit.backends") and t not in LEAVES
    ]


def detector_looking_up() -> list[tuple[str, str]]:
    allowed = LEAVES | {"artifactkit.yolo"}  # the torch-free YOLO-format reader is not storage
    return [
        (m, t)
        for m, ts in GRAPH.items()
        if m.startswith("artifactkit.detector")
        for t in ts
        if not t.startswith("artifactkit.detector") and t not in allowed
    ]


def library_importing_the_cli() -> list[tuple[str, str]]:
    return [
        (m, t)
        for m, ts in GRAPH.items()
        if m.startswith("artifactkit.") and m != "artifactkit.__main__"
        for t in ts
        if t.startswith("artifactkit_cli")
    ]


def upward_arrows() -> list[tuple[str, str]]:
    """Every import against the layers (bench/import_graph.py counts them)."""
    return backends_looking_up() + detector_looking_up() + library_importing_the_cli()


def test_backends_import_nothing_above_them():
    assert backends_looking_up() == []


def test_the_detector_knows_no_storage():
    assert detector_looking_up() == []


def test_the_library_never_imports_the_cli():
    assert library_importing_the_cli() == []


# The store core: the only code that holds a Backend. The Store (store.py) and its
# content-addressed half (objects.py), its runs/ and locks/ rooms (run_keys.py, reached as
# store.runs and store.locks), ingest.py (handed the Store's backend for a log's batches), and
# backends/ itself. Everything else asks the Store.
STORE_CORE = {"artifactkit.store", "artifactkit.objects", "artifactkit.run_keys", "artifactkit.ingest"}


def _outside_the_core(mods: dict[str, Path]) -> dict[str, ast.Module]:
    return {
        m: ast.parse(p.read_text())
        for m, p in mods.items()
        if m not in STORE_CORE and not m.startswith("artifactkit.backends")
    }


def _backend_classes() -> set[str]:
    """Names of the classes that serve the Backend protocol: those of backends/ and packs."""
    paths = [
        *ROOT.glob("artifactkit/backends/*.py"),
        *ROOT.glob("artifactkit/pack*.py"),
        *ROOT.glob("artifactkit/packs/*.py"),
    ]
    return {
        n.name
        for p in paths
        for n in ast.walk(ast.parse(p.read_text()))
        if isinstance(n, ast.ClassDef)
        and (n.name.endswith("Backend") or any(ast.unparse(b).endswith("Backend") for b in n.bases))
    }


def local_backend_importers() -> list[str]:
    """Modules outside the store core that import backends.local (a registry string counts too)."""
    return sorted(
        m
        for m, ts in NAMED.items()
        if "artifactkit.backends.local" in ts and m not in STORE_CORE and not m.startswith("artifactkit.backends")
    )


def backend_questions() -> list[tuple[str, int, str]]:
    """isinstance/issubclass on a backend class outside backends/ (the store core included), and
    getattr/hasattr hooks on a backend: (module, line, call)."""
    classes = _backend_classes()
    asked = []
    for m, path in _modules().items():
        if m.startswith("artifactkit.backends"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)):
                continue
            if node.func.id in ("isinstance", "issubclass") and len(node.args) == 2:
                kinds = node.args[1].elts if isinstance(node.args[1], ast.Tuple) else [node.args[1]]
                if any(ast.unparse(k).rpartition(".")[2] in classes for k in kinds):
                    asked.append((m, node.lineno, ast.unparse(node)))
            elif node.func.id in ("getattr", "hasattr") and node.args and "backend" in ast.unparse(node.args[0]):
                asked.append((m, node.lineno, ast.unparse(node)))
    return asked


def backend_touches() -> list[tuple[str, int]]:
    """Reads of a `.backend` attribute outside the store core: (module, line)."""
    return sorted(
        {
            (m, node.lineno)
            for m, tree in _outside_the_core(_modules()).items()
            for node in ast.walk(tree)
            if isinstance(node, ast.Attribute) and node.attr == "backend"
        }
    )


def test_only_the_store_core_imports_the_local_backend():
    """A local store is one backend among others: only the core names it (the registry's string
    entry counts too); everything else asks Backend.local_root."""
    assert local_backend_importers() == []


def test_no_code_asks_which_backend_it_holds():
    """No isinstance/issubclass on a backend class outside backends/ (an AST check; the store
    core included), and no getattr/hasattr hook on a backend: what a backend can do is a member
    of the protocol (backends/base.py)."""
    assert {"LocalBackend", "FsspecBackend", "S3Backend", "PackedBackend"} <= _backend_classes()
    assert backend_questions() == []


def test_only_the_store_core_touches_a_backend():
    """Outside the core nothing reads a store's `.backend`: treelog, gc, verify and du go through
    the Store's methods (refresh, sync, list_keys, read_unchecked, delete_keys, sweep, …)."""
    assert backend_touches() == []
