"""Ultralytics' `KEY=VALUE` words (`artifactkit train data=chess epochs=1 imgsz=64`), beside the
flags. `train` reads them as `--set` does (config_options.typed_options: parse_setting, the same
validation, errors naming the word typed); val, predict and export read a word as the option of
its name, converted by that option's own type. A key given both ways is refused."""

from __future__ import annotations

import functools
import os
import re
from typing import Any, Callable, Sequence

import typer

from artifactkit.errors import InvalidInput, did_you_mean

_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*=")
WORDS = {"allow_extra_args": True}  # the context_settings of a command taking words


def is_word(text: str) -> bool:
    """KEY=VALUE, and not a file that happens to hold '=' in its name."""
    return bool(_WORD.match(text)) and not os.path.exists(text)


def extra_words(ctx: typer.Context) -> list[str]:
    """The words typed after a command that took no argument: each must be KEY=VALUE."""
    return extra_only(list(ctx.args))


def take(words: list[str], key: str, given: Any, flag: str) -> Any:
    """Remove `key=VALUE` from words and return VALUE (a string), else `given` (the flag's value)."""
    found = [w for w in words if w.partition("=")[0] == key]
    if not found:
        return given
    if given is not None or len(found) > 1:
        raise InvalidInput(f"{found[-1]}: given twice (also as {flag if given is not None else found[0]})")
    words.remove(found[0])
    return found[0].partition("=")[2]


def accepts_words(aliases: dict[str, str] | None = None, required: Sequence[str] = ()) -> Callable:
    """Wrap a command so KEY=VALUE words set its options. `aliases`: Ultralytics' key -> ours
    (model -> weights); `required`: options that must come as a flag or a word. The command takes
    `ctx: typer.Context`. Its arguments collect the words typed before them (click fills them in
    order), so a word found there is taken back out."""

    def wrap(command: Callable) -> Callable:
        @functools.wraps(command)
        def run(**kwargs: Any) -> Any:
            ctx = kwargs["ctx"]
            words = list(ctx.args)
            for param in ctx.command.params:
                if param.param_type_name != "argument":
                    continue
                value = kwargs[param.name]
                if isinstance(value, (list, tuple)):
                    words += [w for w in value if is_word(w)]
                    kwargs[param.name] = [w for w in value if not is_word(w)]
                elif isinstance(value, (str, os.PathLike)) and is_word(os.fspath(value)):
                    words.append(os.fspath(value))
                    kwargs[param.name] = None
            kwargs.update(_word_values(ctx, extra_only(words), aliases or {}, kwargs))
            for name in required:
                if kwargs.get(name) in (None, []):
                    key = next((k for k, v in (aliases or {}).items() if v == name), name)
                    raise InvalidInput(f"missing {_flag(ctx, name)} (or {key}=VALUE)")
            return command(**kwargs)

        return run

    return wrap


def extra_only(words: list[str]) -> list[str]:
    """words, each checked to be KEY=VALUE."""
    for text in words:
        if not is_word(text):
            raise InvalidInput(f"unexpected argument {text!r} (expected --OPTION VALUE or KEY=VALUE)")
    return words


def _word_values(ctx: typer.Context, words: list[str], aliases: dict[str, str], kwargs: dict) -> dict[str, Any]:
    """{option name: value} of the words, each converted by its option's own type."""
    params = {p.name: p for p in ctx.command.params if p.name not in ("json_out", "storage_option")}
    out: dict[str, Any] = {}
    for word in words:
        key, _, text = word.partition("=")
        name = aliases.get(key, key).replace("-", "_")
        param = params.get(name)
        if param is None:
            known = [*params, *aliases]
            raise InvalidInput(
                f"{word}: unknown key for {ctx.command.name}{did_you_mean(key, known)} (known: {', '.join(known)})"
            )
        listed = param.multiple or param.nargs == -1
        source = ctx.get_parameter_source(name)
        typed = kwargs.get(name) not in (None, []) and getattr(source, "name", None) == "COMMANDLINE"
        if (not listed and name in out) or (typed and not listed):
            raise InvalidInput(f"{word}: given twice (also as {_flag(ctx, name)})")
        try:
            value = param.process_value(ctx, [text] if listed else text)
        except typer.BadParameter as e:
            raise InvalidInput(f"{word}: {e.message}") from None
        out[name] = [*(out.get(name) or kwargs.get(name) or []), *value] if listed else value
    return out


def _flag(ctx: typer.Context, name: str) -> str:
    param = next(p for p in ctx.command.params if p.name == name)
    return param.opts[0] if param.opts[0].startswith("-") else name.upper()
