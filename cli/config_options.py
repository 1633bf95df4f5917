"""Training options as the user typed them: TrainConfig holds every default, so a flag left out is
simply not passed, and `artifactkit train` trains exactly what `artifactkit.train()` would."""

from __future__ import annotations

from typing import Annotated, Any, Optional

import typer

from artifactkit.detector.config import AUTO_WORKERS, MIN_BATCHES_FOR_WORKERS, TrainConfig, check_options, parse_setting

SetOpt = Annotated[
    Optional[list[str]],
    typer.Option(
        "--set", metavar="KEY=VALUE", help="Any train config key, e.g. --set lr0=0.001 --set patience=20 (repeatable)"
    ),
]


__all__ = ["AUTO_WORKERS", "MIN_BATCHES_FOR_WORKERS", "SetOpt", "default", "typed_options"]


def default(key: str) -> str:
    """' (default: X)' for a help text, read from TrainConfig: the one source of defaults."""
    return f" (default: {TrainConfig.model_fields[key].default})"


def typed_options(
    flags: dict[str, tuple[str, Any]], settings: list[str] | None = None, words: list[str] = ()
) -> dict[str, Any]:
    """{key: (flag, value or None)}, `--set KEY=VALUE` pairs and bare `KEY=VALUE` words (Ultralytics'
    spelling, read as --set reads them) -> the keywords the user gave, checked now (before any run
    exists) so that an error names the flag or word as typed."""
    values: dict[str, Any] = {}
    labels: dict[str, str] = {}
    for key, (flag, value) in flags.items():
        if value is not None:
            values[key], labels[key] = value, flag
    for pair in settings or []:
        key, value = parse_setting(pair)
        if key in labels and not labels[key].startswith("--set"):
            from artifactkit.errors import InvalidInput

            raise InvalidInput(f"--set {key}: given twice (also as {labels[key]})")
        values[key], labels[key] = value, f"--set {key}"
    for word in words:
        key, value = parse_setting(word, label=word)
        if key in labels:
            from artifactkit.errors import InvalidInput

            raise InvalidInput(f"{word}: given twice (also as {labels[key]})")
        values[key], labels[key] = value, word
    check_options(values, labels)
    return values
