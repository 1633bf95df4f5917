"""The typer app. Commands parse options, call the library and print; errors become one line
on stderr and a non-zero exit here, in one place."""

from __future__ import annotations

import sys

import typer

from . import model_commands, store_commands, train_commands, view_commands

app = typer.Typer(
    name="artifactkit",
    help="Unlosable training runs: versioned datasets and checkpoints, a compact YOLO trainer, resume from anywhere.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
store_commands.register(app)
train_commands.register(app)
model_commands.register(app)
view_commands.register(app)


def main() -> None:
    from artifactkit.errors import ArtifactkitError

    try:
        app()
    except ArtifactkitError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
