"""The typer app. Commands parse options, call the library and print; errors become one line
on stderr (and, with --json, one JSON object as the last line of stdout) and a non-zero exit
here, in one place.

To add a command: write it in the *_commands.py module of its kind (a group, such as `runs`,
lives whole in one module), register it in that module's register(app), and add its name to
COMMANDS below. What it decides (defaults, what an input is, which path to take) goes in the
library, so `import artifactkit` does the same; the command parses, calls and prints."""

from __future__ import annotations

import json
import os
import sys
from typing import Annotated

import typer

# Which module defines each command or command group, in the order help lists them (pip's
# commands_dict). Only the module of the command typed is imported: a store command never loads the
# trainer's config or pydantic. tests/test_readme.py checks the table against the app.
COMMANDS: dict[str, str] = {
    "log-dataset": "store_commands",
    "ls": "store_commands",
    "versions": "store_commands",
    "pull": "store_commands",
    "push": "store_commands",
    "verify": "store_commands",
    "gc": "store_commands",
    "du": "store_commands",
    "lineage": "inspect_commands",
    "diff": "inspect_commands",
    "cat": "inspect_commands",
    "rm": "lifecycle_commands",
    "prune": "lifecycle_commands",
    "runs": "lifecycle_commands",
    "demo-data": "train_commands",
    "train": "train_commands",
    "resume": "train_commands",
    "val": "train_commands",
    "demo": "train_commands",
    "predict": "model_commands",
    "export": "model_commands",
    "view": "view_commands",
}

app = typer.Typer(
    name="artifactkit",
    help="Unlosable training runs: versioned datasets and checkpoints, a compact YOLO trainer, resume from anywhere.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def register_commands(args: list[str]) -> None:
    """Register the module holding the command named first in args; every module for help, a
    bare option or an unknown command (so typer can list or refuse it); none for --version, which
    needs no command (its start-up is typer's alone)."""
    import importlib

    if args[:1] == ["--version"]:
        return
    wanted = COMMANDS.get(args[0]) if args and not args[0].startswith("-") else None
    for module in [wanted] if wanted else dict.fromkeys(COMMANDS.values()):
        importlib.import_module(f".{module}", __package__).register(app)
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


def _print_version(value: bool) -> None:
    if value:
        from artifactkit import __version__

        print(f"artifactkit {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool, typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit")
    ] = False,
) -> None:
    # Options of the program itself, before any command (the help text is the app's).
    pass


def main() -> None:
    try:
        _run()
    except SystemExit as done:
        if os.environ.get("TORCHELASTIC_RUN_ID"):
            _leave_now(done.code)
        raise


def _leave_now(code: int | str | None) -> None:
    """Under torchrun, end the process without the interpreter's teardown once the command is done
    and its output flushed: torch's gloo threads can abort a process while Python finalises
    (std::terminate, SIGABRT; pytorch/pytorch#179291, seen here in about one DDP resume in ten),
    and torchrun then reports a job that saved everything as failed. Trackers and the store have
    finished by now (the run's records are written before a command returns)."""
    if isinstance(code, str):
        print(code, file=sys.stderr)
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code or 0)


def _run() -> None:
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
