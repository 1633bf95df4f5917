"""What a string names, decided here for every command and API function that takes a run,
a checkpoint or weights (resume, view, lineage, val --weights, predict, export, train --weights,
load_model):

    <store>/runs/<id>[:SEL]          a run; as weights its checkpoint: best, else latest (:SEL picks another)
    <id>                             a run id in --store; a bare word that is no run there is an
                                     artifact NAME (its latest version)
    NAME:VERSION, NAME:ALIAS         an artifact version in --store
    model.safetensors, .pt, .onnx    an exported weights file (a path that exists is a file)
    wandb-artifact://<e>/<p>/<id>    a run on W&B (resume rebuilds it in a local store first)

parse() is syntax only: no I/O but whether a file exists, and nothing heavy imported (store
commands use it). The resolvers below open the store where a bare word must be looked up.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import InvalidInput, NotFound
from .layout import RUNS
from .names import NAME_RE, RUN_ID_RE
from .redact import redact_uri
from .uri import looks_like_ref, parse_ref, split_run_uri

if TYPE_CHECKING:
    from .runs import RunRecord
    from .store import Store

WANDB_RUN = "wandb-artifact://"  # wandb-artifact://<entity>/<project>/<run-id>: resume from W&B alone
WEIGHTS_FILE_SUFFIXES = (".safetensors", ".pt", ".onnx")  # what names a file, whether or not one is readable


@dataclass(frozen=True)
class RunRef:
    store: str | None  # None: a bare run id, in the store given alongside (--store)
    run_id: str
    selector: str | None = None  # <run-uri>:latest, :epoch-3, :v2: one of its checkpoints (as weights)


@dataclass(frozen=True)
class VersionRef:
    name: str
    selector: str | None = None  # vN or an alias; None: latest

    def __str__(self) -> str:
        return f"{self.name}:{self.selector or 'latest'}"


@dataclass(frozen=True)
class WordRef:
    """A bare word where both a run id and an artifact name are taken: a run if the store has
    that run, else the artifact (lineage's and view's rule, now everyone's)."""

    word: str


@dataclass(frozen=True)
class FileRef:
    path: Path


@dataclass(frozen=True)
class WandbRunRef:
    uri: str


Ref = RunRef | VersionRef | WordRef | FileRef | WandbRunRef

# What each kind of command takes (the forms its errors list, in this order).
WEIGHTS = (FileRef, RunRef, VersionRef)  # val --weights, predict, export, train --weights, load_model
RUN = (RunRef, WandbRunRef)  # resume
RUN_OR_VERSION = (RunRef, VersionRef)  # view, lineage

_FORMS = {
    RunRef: "a run URI (<store>/runs/<run-id>), a run id in --store",
    VersionRef: "NAME:VERSION or NAME:ALIAS in --store",
    FileRef: "a .safetensors or .pt file",
    WandbRunRef: "wandb-artifact://<entity>/<project>/<run-id>",
}


def forms(accepts: tuple[type, ...]) -> str:
    """The accepted forms in words, for errors and --help."""
    return ", ".join(_FORMS[kind] for kind in accepts)


def parse(text: str | os.PathLike, accepts: tuple[type, ...], what: str) -> Ref:
    """The reference `text` is, among the kinds `accepts` lists; anything else is an InvalidInput
    naming `text` (as `what`: "weights", "run URI", ...) and the forms accepted."""
    text = os.fspath(text)
    if text.startswith(WANDB_RUN) and WandbRunRef in accepts:
        return WandbRunRef(text)
    if FileRef in accepts and not text.startswith(WANDB_RUN):
        path = Path(text)
        if path.suffix in WEIGHTS_FILE_SUFFIXES or os.path.isfile(
            text
        ):  # (not Path.is_file: OSError on too long a name)
            return FileRef(path)
    if RunRef in accepts and f"/{RUNS}/" in text.replace(os.sep, "/"):
        return _run_uri(text, accepts, what)
    if VersionRef in accepts and looks_like_ref(text):
        try:
            ref = parse_ref(text)
        except InvalidInput:
            raise refused(text, accepts, what) from None
        return VersionRef(ref.name, ref.selector)
    if RunRef in accepts and VersionRef in accepts and RUN_ID_RE.fullmatch(text) and NAME_RE.fullmatch(text):
        return WordRef(text)
    if RunRef in accepts and RUN_ID_RE.fullmatch(text):
        return RunRef(None, text)
    if VersionRef in accepts and NAME_RE.fullmatch(text):
        return VersionRef(text)
    raise refused(text, accepts, what)


def refused(text: str, accepts: tuple[type, ...], what: str, why: str = "") -> InvalidInput:
    return InvalidInput(f"invalid {what} {redact_uri(text)!r}{why}: expected {forms(accepts)}")


def _run_uri(text: str, accepts: tuple[type, ...], what: str) -> RunRef:
    """<store>/runs/<id>, or <store>/runs/<id>:SEL (one of its checkpoints) where weights are meant."""
    head, _, tail = text.rstrip("/").replace(os.sep, "/").rpartition("/")
    run_part, _, selector = tail.partition(":")
    try:
        store_uri, run_id = split_run_uri(f"{head}/{run_part}")
    except InvalidInput:
        raise refused(text, accepts, what) from None
    if selector and FileRef not in accepts:  # <run-uri>:SEL picks a checkpoint: where weights are meant only
        raise refused(text, accepts, what, f" (:{selector} picks a checkpoint, which {what} is not)")
    if selector and not NAME_RE.fullmatch(selector):
        raise refused(text, accepts, what, f" ({selector!r} is no version or alias)")
    return RunRef(store_uri, run_id, selector or None)


# -- resolving: the store is read from here on ---------------------------------------------------


def open_run(ref: RunRef, store: str | None, storage_options: dict[str, Any] | None) -> tuple[Store, RunRecord]:
    """A run URI's or a bare run id's store and record (a missing store: "<store>/runs/<id>: no such run")."""
    from .runs import load_run
    from .store import open_store

    if ref.store is not None:
        s = open_store(ref.store, storage_options)
        return s, load_run(s, ref.run_id)
    s = open_store(store, storage_options)
    try:
        return s, load_run(s, ref.run_id)
    except NotFound as e:  # in a missing store too
        raise NotFound(f"{e} (give <store>/runs/<run-id>, or a run id with --store)") from None


def find_run(
    text: str | None, store: str | None, storage_options: dict[str, Any] | None = None
) -> tuple[Store, RunRecord]:
    """The run `resume` means: a run URI, a run id in `store`, wandb-artifact://… (rebuilt in a
    local store first), or None: the most recent interrupted run in `store`."""
    from .runs import latest_interrupted
    from .store import open_store

    if text is None:
        s = open_store(store, storage_options, must_exist=True)
        return s, latest_interrupted(s)
    ref = parse(text, RUN, "run URI")
    if isinstance(ref, WandbRunRef):
        from .wandb import fetch_run  # W&B as the source: rebuilt in a local store first

        return fetch_run(ref.uri, store, storage_options)
    return open_run(ref, store, storage_options)


def word_in(s: Store, word: str) -> RunRef | VersionRef:
    """A bare word read against a store: its run if it has one of that id, else an artifact name."""
    return RunRef(s.url, word) if RUN_ID_RE.fullmatch(word) and s.runs.run_exists(word) else VersionRef(word)


def checkpoint(
    ref: RunRef | VersionRef | WordRef,
    store: str | None,
    storage_options: dict[str, Any] | None,
    text: str,
    what: str = "weights",
) -> tuple[Store, str]:
    """(store, NAME:SEL) of the checkpoint `ref` (parsed from `text`) names: a run's best
    (Ultralytics' best.pt), or its latest while none is marked best, or the one its :SEL picks; a
    bare run id in `store`; NAME:VERSION in `store`; a bare word that is no run: that artifact's latest."""
    from .runs import load_run
    from .store import open_store

    if isinstance(ref, RunRef):
        s, run = open_run(ref, store, storage_options)
    else:
        try:
            s = open_store(store, storage_options, must_exist=True)
        except NotFound as e:
            raise NotFound(f"{what} {text!r}: {e} (expected {forms(WEIGHTS)})") from None
        if isinstance(ref, WordRef):
            ref = word_in(s, ref.word)
        if isinstance(ref, VersionRef):
            if ref.selector is None and s.latest(ref.name) is None:
                raise NotFound(
                    f"{what} {text!r}: {s.uri} holds no run or artifact of that name (expected {forms(WEIGHTS)})"
                )
            return s, str(ref)
        run = load_run(s, ref.run_id)
    selector = ref.selector or ("best" if "best" in s.aliases(run.model_artifact) else "latest")
    return s, f"{run.model_artifact}:{selector}"
