"""The import graph's figures, read from the source as tests/test_layers.py reads it (ast): modules,
imports, cycles, upward arrows (imports against the layers), imports of backends.local outside the
store core, code asking which backend it holds (isinstance / getattr hooks) and reads of a store's
`.backend` outside the core. The layer test holds each of the last five at 0.

    python bench/import_graph.py [--checkout PATH]   (PATH: a checkout holding artifactkit/ and tests/)
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--checkout", default=str(Path(__file__).resolve().parents[1]))
    args = ap.parse_args()
    spec = importlib.util.spec_from_file_location("layers", Path(args.checkout) / "tests" / "test_layers.py")
    layers = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(Path(args.checkout) / "tests"))
    spec.loader.exec_module(layers)
    figures = {
        "modules": len(layers.GRAPH),
        "imports": sum(len(t) for t in layers.GRAPH.values()),
        "cycles": len(layers._cycles(layers.GRAPH)),
        "upward arrows": len(layers.upward_arrows()),
        "imports of backends.local outside the store core": len(layers.local_backend_importers()),
        "isinstance / getattr hooks on backends": len(layers.backend_questions()),
        "reads of .backend outside the store core": len(layers.backend_touches()),
    }
    width = max(map(len, figures))
    for name, value in figures.items():
        print(f"{name:<{width}}  {value}")


if __name__ == "__main__":
    main()
