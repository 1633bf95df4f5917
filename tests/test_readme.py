"""The README's promises that a reader acts on: its first two commands, what CI runs, and which
commands take --json and --store."""

from __future__ import annotations

import re
from pathlib import Path

import typer.main

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _first_block() -> list[str]:
    block = README.split("```")[1]
    return [line for line in block.splitlines()[1:] if line.strip()]


def test_readme_begins_with_two_commands_and_ci_runs_the_second():
    install_run, install_test = _first_block()
    assert re.fullmatch(r'python -m pip install -e "\.\[all\]" && artifactkit demo', install_run)
    assert re.fullmatch(r'python -m pip install -e "\.\[test\]" && python -m pytest', install_test)
    ci = (ROOT / ".ci" / "run").read_text()
    assert 'python -m pip install -q -e ".[test]" && python -m pytest' in ci
    # ...and CI first proves both install lines resolve in a new virtualenv (issue 26).
    assert ci.index("readme-resolves") < ci.index("python -m pytest")


def test_readme_resolves_finds_both_install_lines():
    """.ci/readme-resolves reads the install specs out of the README's first block; a README
    reworded so that it finds none must fail, not pass silently."""
    script = (ROOT / ".ci" / "readme-resolves").read_text()
    assert "no 'pip install -e" in script
    specs = re.findall(r'pip install -e "([^"]+)"', "\n".join(_first_block()))
    assert specs == [".[all]", ".[test]"]


def _commands() -> dict[str, set[str]]:
    """Every command and group subcommand of the real app, with its option names."""
    import artifactkit.__main__  # noqa: F401  (names this checkout's cli/ artifactkit_cli, installed or not)
    from artifactkit_cli import main as cli_main

    cli_main.register_commands([])
    root = typer.main.get_command(cli_main.app)
    found: dict[str, set[str]] = {}

    def walk(group, prefix: str) -> None:
        for name, cmd in group.commands.items():
            full = f"{prefix}{name}"
            found[full] = {opt for p in cmd.params for opt in getattr(p, "opts", [])}
            if hasattr(cmd, "commands"):
                walk(cmd, f"{full} ")

    walk(root, "")
    return found


def test_every_command_but_the_named_ones_takes_json_and_store():
    commands = _commands()
    assert {"log-dataset", "train", "resume", "runs rm", "cat"} <= set(commands)
    without_json = {c for c, opts in commands.items() if "--json" not in opts}
    without_store = {c for c, opts in commands.items() if "--store" not in opts}
    assert without_json == {"cat"}
    assert without_store == {"demo-data", "demo"}
    sentence = " ".join(README.split("Every command that opens a store")[1].split("\n\n")[0].split())
    for name in without_json | without_store:
        assert f"`{name}`" in sentence, f"README does not name {name} among the exceptions"
