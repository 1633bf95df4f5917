"""Commands that look inside a store without changing it: lineage, diff, cat."""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer

from .common import JsonOpt, StorageOpts, StoreOpt, open_store
from .output import emit, human_bytes


def register(app: typer.Typer) -> None:
    app.command("lineage")(lineage)
    app.command("diff")(diff)
    app.command("cat")(cat)


def lineage(
    target: Annotated[str, typer.Argument(help="NAME:vN, NAME:ALIAS, a run id or a run URI (<store>/runs/<id>)")],
    all_: Annotated[
        bool,
        typer.Option(
            "--all",
            help="List every checkpoint and evaluation version of the runs below the root, not only their counts",
        ),
    ] = False,
    store: StoreOpt = None,
    storage_option: StorageOpts = None,
    json_out: JsonOpt = False,
) -> None:
    """Where a version came from and what came of it: dataset -> run -> checkpoints and evaluation
    tables, and runs fine-tuned from a checkpoint. A bare word is a run id if that run exists,
    else an artifact name (its latest version). Runs below the root are one line each with counts
    (--all lists everything); --json always has every node."""
    from artifactkit import refs
    from artifactkit.lineage_graph import lineage as build

    ref = refs.parse(target, refs.RUN_OR_VERSION, "lineage target")
    if isinstance(ref, refs.RunRef) and ref.store is not None:
        store, target = ref.store, ref.run_id
    graph = build(open_store(store, storage_option), target)  # a bare word: its run if there is one (refs.word_in)
    emit(json_out, graph.summary(), graph.tree(everything=all_))


def diff(
    a: Annotated[str, typer.Argument(help="NAME:vN or NAME:ALIAS")],
    b: Annotated[str, typer.Argument(help="NAME:vN or NAME:ALIAS")],
    store: StoreOpt = None,
    storage_option: StorageOpts = None,
    json_out: JsonOpt = False,
) -> None:
    """Files added, removed and changed from A to B, with sizes; for two dataset versions with a
    data.yaml, also the boxes per class that the changed label files gained or lost."""
    from artifactkit.diff import diff_versions

    result = diff_versions(open_store(store, storage_option), a, b)
    emit(json_out, result.summary(), _diff_text(result))


def _diff_text(d) -> str:
    lines = [
        f"{d.a.name}:{d.a.label} -> {d.b.name}:{d.b.label}: {len(d.added)} added, {len(d.removed)} removed, "
        f"{len(d.changed)} changed, {d.unchanged} unchanged ({human_bytes(d.a.bytes)} -> {human_bytes(d.b.bytes)})"
    ]
    lines += [f"  + {p}  ({human_bytes(s)})" for p, s in d.added]
    lines += [f"  - {p}  ({human_bytes(s)})" for p, s in d.removed]
    lines += [f"  ~ {p}  ({human_bytes(sa)} -> {human_bytes(sb)})" for p, sa, sb in d.changed]
    if d.labels is not None:
        counts = ", ".join(f"{c.name} {c.after - c.before:+d}" for c in d.labels) or "no change"
        lines.append(f"boxes per class ({d.label_files} differing label files read): {counts}")
        lines += [f"  ! malformed, not counted: {why}" for why in d.bad_labels]
    return "\n".join(lines)


def cat(
    ref: Annotated[str, typer.Argument(help="NAME:vN or NAME:ALIAS")],
    path: Annotated[str, typer.Argument(help="A file's path inside the version (as `pull` writes it)")],
    store: StoreOpt = None,
    storage_option: StorageOpts = None,
) -> None:
    """Write one file of a version to stdout, checked against its digest before any byte is
    written (large files are streamed)."""
    from artifactkit.transfer import cat as do_cat

    s = open_store(store, storage_option)
    try:
        do_cat(s, ref, path, sys.stdout.buffer)
    except BrokenPipeError:  # `| head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        raise typer.Exit(1) from None
