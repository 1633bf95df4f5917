"""Lineage: where a version came from, what a run used and what it made.

Nothing new is written for it: the graph is read from records the store already keeps.
    dataset version   --dataset-->    run   (RunRecord.dataset)
    checkpoint        --weights-->    run   (RunRecord.weights_from: a version of this store, a
                                             version of another store, or an exported file)
    run               --checkpoint--> <run>-model versions       (VersionRecord.run_id)
    run               --evaluation--> <run>-evaluation versions  (VersionRecord.run_id)
`lineage(store, target)` is the target's ancestors and descendants (never its siblings: the
other runs on the same dataset are not the history of this run). Exports are files outside the
store and leave no record, so an export shows only where a run was fine-tuned from one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator

from .errors import InvalidInput, NotFound
from .refs import RunRef, word_in
from .runs import RunRecord, load_run
from .store import Store, open_store
from .uri import parse_ref, run_uri

KINDS = {"dataset": "dataset", "model": "checkpoint", "evaluation": "evaluation"}  # version type -> node kind
# How an edge reads from each end in the text tree (relation -> words).
_DOWN = {
    "dataset": "used by",
    "weights": "fine-tuned into",
    "checkpoint": "checkpoint",
    "evaluation": "evaluation",
    "output": "output",
}
_UP = {
    "dataset": "dataset",
    "weights": "weights",
    "checkpoint": "made by",
    "evaluation": "made by",
    "output": "made by",
}


@dataclass(frozen=True)
class Node:
    id: str  # run:<id> | version:<name>:v<n> | file:<path> | external:<store>/<name>:v<n>
    kind: str  # run, dataset, checkpoint, evaluation, file, or another version type
    label: str
    info: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        if self.info.get("missing"):
            return f"{'run ' if self.kind == 'run' else ''}{self.label} (missing: {self.info['missing']})"
        if self.kind == "run":
            i = self.info
            return f"run {self.label} ({i['status']}, {i['epochs_completed']}/{i['total_epochs']} epochs)"
        if self.kind == "file":
            return f"file {self.label} (xxh3 {self.info.get('digest', '?')[:12]})"
        if "store" in self.info:
            return f"{self.label} in {self.info['store']}"
        aliases = self.info.get("aliases") or []
        return self.label + (f" ({', '.join(aliases)})" if aliases else "")


@dataclass(frozen=True)
class Edge:
    source: str  # node ids; data flows from source to target
    target: str
    relation: str  # dataset | weights | checkpoint | evaluation | output (another version a run logged)


@dataclass
class Lineage:
    root: str
    nodes: dict[str, Node]
    edges: list[Edge]

    def parents(self, node_id: str) -> list[Edge]:
        return [e for e in self.edges if e.target == node_id]

    def children(self, node_id: str) -> list[Edge]:
        return [e for e in self.edges if e.source == node_id]

    def summary(self) -> dict[str, Any]:
        return {
            "root": self.root,
            "nodes": [{"id": n.id, "kind": n.kind, "label": n.label, **n.info} for n in self.nodes.values()],
            "edges": [{"from": e.source, "to": e.target, "relation": e.relation} for e in self.edges],
        }

    def tree(self, everything: bool = False) -> str:
        """The root, then where it came from (inputs) and what came of it (outputs), as a text
        tree. Unless `everything`, a run below the root is one line counting its checkpoints and
        evaluation versions (a dataset used by 4 runs of 40 epochs reads in 4 lines, not 160);
        only the products that lead further (a checkpoint fine-tuned into another run) are shown."""
        root = self.nodes[self.root]
        lines = [root.describe() if root.kind in ("run", "file") else f"{root.kind} {root.describe()}"]
        sections = [
            (title, edges)
            for title, edges in (("inputs", self.parents(self.root)), ("outputs", self.children(self.root)))
            if edges
        ]
        for n, (title, edges) in enumerate(sections):
            last = n == len(sections) - 1
            lines.append(("└── " if last else "├── ") + title)
            self._branch(edges, "    " if last else "│   ", title == "inputs", {self.root}, lines, everything)
        return "\n".join(lines)

    def _branch(
        self, edges: list[Edge], indent: str, up: bool, seen: set[str], lines: list[str], everything: bool
    ) -> None:
        for n, edge in enumerate(edges):
            last = n == len(edges) - 1
            node_id = edge.source if up else edge.target
            word = (_UP if up else _DOWN)[edge.relation]
            again = node_id in seen
            more = [] if again else self.parents(node_id) if up else self.children(node_id)
            counts = ""
            if not up and not everything and self.nodes[node_id].kind == "run":
                counts = _counts(more)
                more = [e for e in more if e.relation not in _PRODUCTS or self.children(e.target)]
            lines.append(
                indent
                + ("└── " if last else "├── ")
                + f"{word} {self.nodes[node_id].describe()}{counts}"
                + (" (shown above)" if again else "")
            )
            if not again:
                seen.add(node_id)
                self._branch(more, indent + ("    " if last else "│   "), up, seen, lines, everything)


_PRODUCTS = {"checkpoint": ("checkpoint", "checkpoints"), "evaluation": ("evaluation version", "evaluation versions")}


def _counts(edges: list[Edge]) -> str:
    """': 3 checkpoints, 40 evaluation versions' for a run's product edges ('' if none)."""
    parts = []
    for relation, (one, many) in _PRODUCTS.items():
        count = sum(e.relation == relation for e in edges)
        if count:
            parts.append(f"{count} {one if count == 1 else many}")
    return f": {', '.join(parts)}" if parts else ""


def lineage(store: Store | str | None, target: str) -> Lineage:
    """The lineage graph of NAME:vN (or NAME:ALIAS) or of a run id. A bare word is a run id if
    such a run exists, else an artifact name (its latest version)."""
    s = store if isinstance(store, Store) else open_store(store, must_exist=True)
    graph = _Graph(s)
    root = graph.root(target)
    graph.walk(root, up=True)
    graph.walk(root, up=False)
    return Lineage(root, graph.nodes, graph.edges)


def run_io(store: Store, run: RunRecord) -> dict[str, list[dict[str, Any]]]:
    """A run's direct inputs (dataset version, weights it was fine-tuned from) and outputs
    (checkpoint and evaluation versions with their aliases), for the report."""
    graph = _Graph(store)
    root = graph.add_run(run.run_id, run)

    def shown(node_id: str, relation: str) -> dict[str, Any]:
        return {"relation": relation, **graph.summary_of(node_id)}

    return {
        "inputs": [shown(src, rel) for src, rel in graph.inputs(root)],
        "outputs": [shown(dst, rel) for dst, rel in graph.outputs(root)],
    }


class _Graph:
    """Reads records on demand (each once) and collects the nodes and edges it has visited."""

    def __init__(self, store: Store):
        self.store = store
        self.nodes: dict[str, Node] = {}
        self.edges: list[Edge] = []
        self._edge_set: set[Edge] = set()
        self._runs: dict[str, RunRecord | None] = {}
        self._all_runs: list[RunRecord] | None = None
        self._aliases: dict[str, dict[int, list[str]]] = {}

    # -- the root -------------------------------------------------------------------------------
    def root(self, target: str) -> str:
        if isinstance(word_in(self.store, target), RunRef):  # a bare word: a run if there is one (refs.py decides)
            return self.add_run(target)
        try:
            record = self.store.resolve(target)
        except NotFound:
            if ":" in target:
                raise
            raise NotFound(f"{self.store.uri}: no run or artifact named {target!r}") from None
        return self.add_version(record.name, record.version)

    # -- traversal ------------------------------------------------------------------------------
    def walk(self, root: str, up: bool) -> None:
        todo, seen = [root], {root}
        while todo:
            node_id = todo.pop()
            pairs = self.inputs(node_id) if up else self.outputs(node_id)
            for other, relation in pairs:
                edge = Edge(other, node_id, relation) if up else Edge(node_id, other, relation)
                if edge not in self._edge_set:
                    self._edge_set.add(edge)
                    self.edges.append(edge)
                if other not in seen:
                    seen.add(other)
                    todo.append(other)

    def inputs(self, node_id: str) -> list[tuple[str, str]]:
        """(source node, relation) of what flowed into a node."""
        node = self.nodes[node_id]
        if node.kind == "run":
            run = self._run(node.label)
            if run is None:
                return []
            out = []
            if run.dataset:
                out.append((self._ref_node(run.dataset, "dataset"), "dataset"))
            if run.weights_from:
                try:
                    out.append((self._weights_node(run.weights_from), "weights"))
                except InvalidInput as e:  # weights_from is free-form in the record: name the run at fault
                    raise InvalidInput(f"{run_uri(self.store.uri, run.run_id)}: weights_from: {e}") from None
            return out
        run_id = node.info.get("run_id")
        if node_id.startswith("version:") and run_id and not node.info.get("missing"):
            return [(self.add_run(run_id), node.kind if node.kind in ("checkpoint", "evaluation") else "output")]
        return []

    def outputs(self, node_id: str) -> list[tuple[str, str]]:
        node = self.nodes[node_id]
        if node.kind == "run":
            run = self._run(node.label)
            return [] if run is None else list(self._products(run))
        if node_id.startswith("version:") and not node.info.get("missing"):
            return self.users(node_id)
        return []

    def users(self, node_id: str) -> list[tuple[str, str]]:
        """The runs that read a version: as their dataset, or as the weights they started from."""
        label = self.nodes[node_id].label
        out = []
        for run in self._every_run():
            if run.dataset and self._same_version(run.dataset, label):
                out.append((self.add_run(run.run_id, run), "dataset"))
            wf = run.weights_from or {}
            if wf.get("store") == self.store.uri and wf.get("version") and self._same_version(wf["version"], label):
                out.append((self.add_run(run.run_id, run), "weights"))
        return out

    def _products(self, run: RunRecord) -> Iterator[tuple[str, str]]:
        for name, relation in ((run.model_artifact, "checkpoint"), (f"{run.run_id}-evaluation", "evaluation")):
            for number in self.store.version_numbers(name):
                node_id = self.add_version(name, number)
                if self.nodes[node_id].info.get("run_id") == run.run_id:  # a record of another run is not its product
                    yield node_id, relation

    # -- nodes ----------------------------------------------------------------------------------
    def add_run(self, run_id: str, record: RunRecord | None = None) -> str:
        node_id = f"run:{run_id}"
        if node_id not in self.nodes:
            if record is not None:
                self._runs[run_id] = record
            run = self._run(run_id)
            info = (
                {"missing": "no run record"}
                if run is None
                else {
                    "status": run.status,
                    "epochs_completed": run.epochs_completed,
                    "total_epochs": run.total_epochs,
                    "dataset": run.dataset,
                    "weights_from": run.weights_from,
                    "created": run.created,
                }
            )
            self.nodes[node_id] = Node(node_id, "run", run_id, info)
        return node_id

    def add_version(self, name: str, version: int, kind: str | None = None) -> str:
        node_id = f"version:{name}:v{version}"
        if node_id not in self.nodes:
            try:
                r = self.store.record(name, version)
            except NotFound:
                self.nodes[node_id] = Node(node_id, kind or "version", f"{name}:v{version}", {"missing": "deleted"})
                return node_id
            info = {
                "type": r.type,
                "files": r.files,
                "bytes": r.bytes,
                "created": r.created,
                "run_id": r.run_id,
                "aliases": self._aliases_of(name).get(version, []),
            }
            self.nodes[node_id] = Node(node_id, KINDS.get(r.type, r.type), f"{name}:v{version}", info)
        return node_id

    def _ref_node(self, ref: str, kind: str) -> str:
        """A NAME:vN a run record names (validated when the record was read)."""
        parsed = parse_ref(ref)
        if parsed.version is not None:
            return self.add_version(parsed.name, parsed.version, kind)
        try:
            record = self.store.resolve(parsed)
        except NotFound:
            node_id = f"version:{ref}"
            self.nodes.setdefault(node_id, Node(node_id, kind, ref, {"missing": "deleted"}))
            return node_id
        return self.add_version(record.name, record.version, kind)

    def _weights_node(self, origin: dict[str, str]) -> str:
        if "file" in origin:
            node_id = f"file:{origin['file']}"
            self.nodes.setdefault(node_id, Node(node_id, "file", origin["file"], {"digest": origin.get("digest", "")}))
            return node_id
        if origin.get("store") == self.store.uri:
            return self._ref_node(origin.get("version", ""), "checkpoint")
        node_id = f"external:{origin.get('store')}/{origin.get('version')}"  # another store: shown, not read
        self.nodes.setdefault(
            node_id, Node(node_id, "checkpoint", str(origin.get("version")), {"store": origin.get("store")})
        )
        return node_id

    def summary_of(self, node_id: str) -> dict[str, Any]:
        n = self.nodes[node_id]
        return {"id": n.id, "kind": n.kind, "label": n.label, **n.info}

    # -- records, each read once ----------------------------------------------------------------
    def _run(self, run_id: str) -> RunRecord | None:
        if run_id not in self._runs:
            try:
                self._runs[run_id] = load_run(self.store, run_id)
            except NotFound:
                self._runs[run_id] = None  # deleted, or named by a version record of another store
        return self._runs[run_id]

    def _every_run(self) -> list[RunRecord]:
        if self._all_runs is None:
            self._all_runs = [r for r in (self._run(i) for i in self.store.runs.run_ids()) if r is not None]
        return self._all_runs

    def _aliases_of(self, name: str) -> dict[int, list[str]]:
        if name not in self._aliases:
            by_version: dict[int, list[str]] = {}
            for alias, v in sorted(self.store.aliases(name).items()):
                by_version.setdefault(v, []).append(alias)
            numbers = self.store.version_numbers(name)
            if numbers:
                by_version.setdefault(numbers[-1], []).insert(0, "latest")
            self._aliases[name] = by_version
        return self._aliases[name]

    def _same_version(self, ref: str, label: str) -> bool:
        """Whether a run's NAME:vN (or, in older records, NAME:ALIAS) names the version `label`."""
        if ref == label:
            return True
        try:
            parsed = parse_ref(ref)
        except InvalidInput:  # validated on read; a stray form never matches
            return False
        if parsed.version is not None or parsed.name != label.rsplit(":", 1)[0]:
            return False
        try:
            return f"{parsed.name}:{self.store.resolve(parsed).label}" == label
        except NotFound:
            return False
