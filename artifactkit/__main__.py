"""`python -m artifactkit` (and `torchrun -m artifactkit …`) is the CLI: the one allowed upward import.

The repository's cli/ folder installs as the package `artifactkit_cli` (pyproject.toml maps it, so
site-packages never holds a package named plainly `cli`). Imported from a source checkout (its root
on PYTHONPATH, installed or not), the CLI is that checkout's own cli/ under the same name, never
the cli/ of another checkout that happens to be installed."""

import importlib.util
import sys
from pathlib import Path

_checkout = Path(__file__).resolve().parent.parent
if (
    "artifactkit_cli" not in sys.modules
    and (_checkout / "pyproject.toml").is_file()
    and (_checkout / "cli" / "main.py").is_file()
):
    _spec = importlib.util.spec_from_file_location(
        "artifactkit_cli", _checkout / "cli" / "__init__.py", submodule_search_locations=[str(_checkout / "cli")]
    )
    sys.modules["artifactkit_cli"] = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(sys.modules["artifactkit_cli"])

from artifactkit_cli.main import main  # noqa: E402

if __name__ == "__main__":  # not when a worker process (multiprocessing) imports the main module again
    main()
