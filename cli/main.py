"""The typer app. Commands parse options, call the library and print; errors become one line
on stderr (and, with --json, one JSON object as the last line of stdout) and a non-zero exit
here, in one place."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer

# The command modules, in the order help lists them. Only the module holding the command typed is
# loaded (register_commands): a store command never imports the trainer's config or pydantic.
COMMAND_MODULES = (
    "store_commands", "inspect_commands", "lifecycle_commands", "train_commands", "model_commands", "view_commands",
)

app = typer.Typer(
    name="artifactkit",
    help="Unlosable training runs: versioned datasets and checkpoints, a compact YOLO trainer, resume from anywhere.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def register_commands(args: list[str]) -> None:
    """Register the command modules in order until one holds the command named first in args;
    all of them for help, a bare option or an unknown command (so typer can list or refuse it);
    none for --version, which needs no command (its start-up is typer's alone)."""
    import importlib

    if args[:1] == ["--version"]:
        return
    wanted = args[0] if args and not args[0].startswith("-") else None
    for name in COMMAND_MODULES:
        importlib.import_module(f".{name}", __package__).register(app)
        if wanted is not None and wanted in _registered_names():
            break
    _flowing_help()


def _flowing_help() -> None:
    """Help that rich wraps to the terminal: a docstring's paragraphs as single lines (its own line
    breaks would show, ragged at 80 columns), and its first sentence alone in the command list."""
    import inspect

    for info in app.registered_commands:
        if info.help is None and info.callback is not None and (doc := inspect.getdoc(info.callback)):
            paragraphs = [" ".join(p.split()) for p in doc.split("\n\n")]
            info.help = "\n\n".join(paragraphs)
            info.short_help = info.short_help or _first_sentence(paragraphs[0])


def _first_sentence(text: str) -> str:
    end = text.find(". ")
    return text if end < 0 else text[: end + 1]


def _registered_names() -> set[str]:
    """Commands and command groups (`runs`) registered so far."""
    return {c.name for c in app.registered_commands} | {g.name for g in app.registered_groups}


def _print_version(value: bool) -> None:
    if value:
        from artifactkit import __version__

        print(f"artifactkit {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[bool, typer.Option("--version", callback=_print_version, is_eager=True,
                                          help="Print the version and exit")] = False,
) -> None:
    # Options of the program itself, before any command (the help text is the app's).
    pass


def main() -> None:
    from artifactkit.errors import ArtifactkitError, Stopped

    try:
        register_commands(sys.argv[1:])
        app()
    except ArtifactkitError as e:
        _fail(f"error: {e}", str(e), type(e).__name__, 1)
    except Stopped as e:  # a stop signal: the training saved where it stood (the line says where)
        _fail(str(e), str(e), "Interrupted", 128 + e.signum if e.signum else 130)
    except KeyboardInterrupt:
        _fail("interrupted", "interrupted", "Interrupted", 130)


def _fail(line: str, message: str, kind: str, code: int) -> None:
    print(line, file=sys.stderr)
    if _wants_json(sys.argv[1:]):
        sys.stdout.write(json.dumps({"error": message, "kind": kind}) + "\n")
    sys.exit(code)


def _wants_json(args: list[str]) -> bool:
    """--json among the options (not after `--`, where it would be an argument)."""
    return "--json" in (args[: args.index("--")] if "--" in args else args)
