"""Store commands: log-dataset, ls, versions, pull, push, verify, gc, du."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from artifactkit.errors import InvalidInput

from .common import JsonOpt, StorageOpts, StoreOpt, open_store, parse_storage_options
from .output import emit, human_bytes, kept_line, pending_line, progress_bar, table


def register(app: typer.Typer) -> None:
    app.command("log-dataset")(log_dataset)
    app.command("ls")(ls)
    app.command("versions")(versions)
    app.command("pull")(pull)
    app.command("push")(push)
    app.command("verify")(verify)
    app.command("gc")(gc)
    app.command("du")(du)


def log_dataset(
    path: Annotated[Path, typer.Argument(help="Dataset folder, data.yaml, or any folder to version")],
    format: Annotated[
        Optional[str],
        typer.Option(
            "--format", help="yolo (a data.yaml) or coco (images + annotations/instances_*.json, converted to YOLO)"
        ),
    ] = None,
    name: Annotated[Optional[str], typer.Option(help="Artifact name (default: the folder's name)")] = None,
    type: Annotated[str, typer.Option("--type", help="Artifact type")] = "dataset",
    alias: Annotated[Optional[list[str]], typer.Option("--alias", help="Alias to point at this version")] = None,
    metadata: Annotated[Optional[str], typer.Option(help="JSON object stored with the version")] = None,
    full: Annotated[
        bool,
        typer.Option(
            "--full",
            help="Check every file's blob in the store, trusting no unchanged "
            "folder's tree (puts back blobs lost from the store, as verify reports them)",
        ),
    ] = False,
    store: StoreOpt = None,
    storage_option: StorageOpts = None,
    json_out: JsonOpt = False,
) -> None:
    """Log a dataset as a new version (only changed files are stored). A data.yaml (or a folder
    holding one) is logged with every file it uses, its folder as it is when that is the whole
    dataset, else in the YOLO layout with a rewritten data.yaml; --format coco converts a COCO
    folder; any other folder is versioned as it is."""
    from artifactkit.datasets import log_dataset as do_log

    meta = _parse_metadata(metadata)
    with progress_bar(f"logging {path}", not json_out) as advance:
        result = do_log(
            path,
            name,
            store,
            format=format,
            type=type,
            aliases=alias or (),
            metadata=meta,
            full=full,
            storage_options=parse_storage_options(storage_option),
            progress=advance,
            warn=lambda warning: print(f"warning: {warning}", file=sys.stderr),
        )
    r = result.record
    what = "new version" if result.created else "unchanged, same version"
    emit(
        json_out,
        result.summary(),
        f"{r.name}:{r.label} ({what}) in {result.store}: {r.files} files, {human_bytes(r.bytes)}; "
        f"stored {result.uploaded_files} new files, {human_bytes(result.uploaded_bytes)} in {result.seconds:.2f}s",
    )


def ls(store: StoreOpt = None, storage_option: StorageOpts = None, json_out: JsonOpt = False) -> None:
    """List the artifacts of the store: name, type, versions, latest version and its size, and the
    bytes all its versions hold (each shared file counted once)."""
    from artifactkit.listing import artifact_rows

    s = open_store(store, storage_option)
    rows = artifact_rows(s)
    if json_out:
        emit(True, {"store": s.uri, "artifacts": rows})
        return
    table(
        f"artifacts in {s.uri}",
        ["name", "type", "versions", "latest", "size", "all versions", "created"],
        [
            [
                r["name"],
                r["type"],
                r["versions"],
                r["latest"],
                human_bytes(r["bytes"]),
                human_bytes(r["total_bytes"]),
                r["created"],
            ]
            for r in rows
        ],
    )


def versions(
    name: Annotated[str, typer.Argument(help="Artifact name")],
    store: StoreOpt = None,
    storage_option: StorageOpts = None,
    json_out: JsonOpt = False,
) -> None:
    """List the versions of an artifact."""
    infos = open_store(store, storage_option).versions(name)
    rows = [i.summary() for i in infos]
    if json_out:
        emit(True, {"name": name, "versions": rows})
        return
    table(
        name,
        ["version", "aliases", "type", "files", "size", "created"],
        [
            [r["version"], ", ".join(r["aliases"]), r["type"], r["files"], human_bytes(r["bytes"]), r["created"]]
            for r in rows
        ],
    )


def pull(
    ref: Annotated[str, typer.Argument(help="NAME, NAME:vN or NAME:ALIAS")],
    dest: Annotated[Path, typer.Argument(help="Destination folder")],
    force: Annotated[
        bool, typer.Option("--force", help="Overwrite files in the folder that differ from the version")
    ] = False,
    delete: Annotated[
        bool, typer.Option("--delete", help="Remove files in the folder that the version does not have")
    ] = False,
    include: Annotated[
        Optional[list[str]],
        typer.Option(
            "--include", help="Pull only files whose path matches this glob ('*' also matches across '/'; repeatable)"
        ),
    ] = None,
    store: StoreOpt = None,
    storage_option: StorageOpts = None,
    json_out: JsonOpt = False,
) -> None:
    """Write an artifact version into a folder, verifying every file. Files there that differ from
    the version are refused (named) unless --force; files it does not have are reported.
    With --include, only matching files are pulled, and only matching files count as extra."""
    from artifactkit.transfer import pull as do_pull

    s = open_store(store, storage_option)
    record = s.resolve(ref)
    with progress_bar(f"pulling {ref}", not json_out) as advance:
        result = do_pull(s, ref, dest, progress=advance, force=force, delete=delete, include=include)
    extra = result.extra_files
    note = ""
    if extra:
        shown = ", ".join(extra[:5]) + (f" and {len(extra) - 5} more" if len(extra) > 5 else "")
        note = (
            f"; removed {result.deleted_files} files not in the version ({shown})"
            if delete
            else f"; {len(extra)} files not in the version left in place ({shown}; --delete removes them)"
        )
    emit(
        json_out,
        result.summary(),
        f"{record.name}:{record.label}{' (--include)' if include else ''} -> {dest}: {result.written_files} files "
        f"written, "
        f"{result.reused_files} already there ({human_bytes(result.bytes)}){note}",
    )


def push(
    ref: Annotated[str, typer.Argument(help="NAME (all versions) or NAME:vN / NAME:ALIAS (one)")],
    to: Annotated[str, typer.Option("--to", help="Destination store URI")],
    store: StoreOpt = None,
    storage_option: StorageOpts = None,
    json_out: JsonOpt = False,
) -> None:
    """Copy versions to another store, sending only the blobs it lacks (or mirror them to W&B: --to wandb://ENTITY/PROJECT)."""
    from artifactkit.destinations import is_mirror, push_to

    src = open_store(store, storage_option)
    with progress_bar(f"pushing {ref}", not json_out and not is_mirror(to)) as advance:
        pushed = push_to(src, ref, to, parse_storage_options(storage_option), progress=advance)
    result = pushed.result
    emit(
        json_out,
        result.summary(),
        f"{ref} -> {pushed.destination}: {', '.join(result.versions)}; "
        f"sent {result.uploaded_files} files, {human_bytes(result.uploaded_bytes)}",
    )


def verify(
    sample: Annotated[
        Optional[str],
        typer.Option(
            "--sample",
            help="Re-hash only a random share (5%) or size (2GB) of the blobs; the rest are checked for "
            "existence and size (restic's read-data-subset: a cheap daily check)",
        ),
    ] = None,
    store: StoreOpt = None,
    storage_option: StorageOpts = None,
    json_out: JsonOpt = False,
) -> None:
    """Re-hash every blob (or a --sample) and check every version's files are present with their
    size; damage is named per version with the repair that fits it. Exit 1 on any damage."""
    from artifactkit.maintenance import verify as do_verify

    s = open_store(store, storage_option)
    with progress_bar(f"verifying {s.uri}", not json_out) as advance:
        report = do_verify(s, progress=advance, sample=sample)
    hashed = f" ({report.hashed} re-hashed, {human_bytes(report.hashed_bytes)})" if sample else ""
    lines = [
        f"{s.uri}: {report.objects} blobs{hashed}, {report.versions} versions: "
        + ("ok" if report.ok else f"{len(report.problems)} problems")
    ]
    emit(json_out, report.summary(), "\n".join(lines + report.problems))
    if not report.ok:
        raise typer.Exit(1)


def gc(
    grace: Annotated[
        Optional[float],
        typer.Option(
            help="Keep unreferenced files younger than this many seconds (0: delete them now; only when no other "
            "process "
            "writes to the store; default: gc's, 3600)",
            show_default=False,
        ),
    ] = None,
    store: StoreOpt = None,
    storage_option: StorageOpts = None,
    json_out: JsonOpt = False,
) -> None:
    """Delete blobs and manifests that no version references (after a grace period). Deletes
    nothing while a log, checkpoint or push may be writing (whatever --grace is)."""
    from artifactkit.maintenance import gc as do_gc

    s = open_store(store, storage_option)
    report = do_gc(s) if grace is None else do_gc(s, grace_seconds=grace)
    if report.writers:
        emit(
            json_out,
            report.summary(),
            f"{s.uri}: deleted nothing: {len(report.writers)} writers may still run "
            f"({report.writers[0]}); run gc again when they are done",
        )
        return
    emit(
        json_out,
        report.summary(),
        f"{s.uri}: deleted {report.deleted_objects} blobs ({human_bytes(report.deleted_bytes)}), "
        f"{report.deleted_manifests} manifests; " + kept_line(report),
    )


def du(
    grace: Annotated[
        Optional[float],
        typer.Option(help="The gc grace period to count against, in seconds (default: gc's, 3600)", show_default=False),
    ] = None,
    store: StoreOpt = None,
    storage_option: StorageOpts = None,
    json_out: JsonOpt = False,
) -> None:
    """Where the store's bytes went: its total, per artifact and version the bytes it alone holds
    (what deleting it and gc would free) and the bytes it shares, what gc would free now and when
    the grace ends, and this machine's caches."""
    from artifactkit.usage import du as do_du

    u = do_du(open_store(store, storage_option), grace)
    if json_out:
        emit(True, u.summary())
        return
    print(f"{u.store}: {human_bytes(u.total)} in all, {human_bytes(u.blobs)} of file contents (blobs)")
    rows = []
    for a in u.artifacts:
        rows.append(
            [a.name, a.type, len(a.versions), human_bytes(a.bytes), human_bytes(a.own), human_bytes(a.bytes - a.own)]
        )
        rows += [
            [f"  {v.version}", "", "", human_bytes(v.bytes), human_bytes(v.own), human_bytes(v.bytes - v.own)]
            for v in a.versions
        ]
    table(
        "per artifact and version (own: held by it alone; shared: also by others)",
        ["name", "type", "versions", "bytes", "own", "shared"],
        rows,
    )
    print(pending_line(u.gc))
    print(f"caches on this machine: stat cache {human_bytes(u.stat_cache)}, blob cache {human_bytes(u.blob_cache)}")


def _parse_metadata(text: str | None) -> dict | None:
    if text is None:
        return None
    from artifactkit.nesting import check_depth, loads_json

    try:
        value = loads_json(text, "invalid --metadata")
    except json.JSONDecodeError as e:
        raise InvalidInput(f"invalid --metadata: not JSON ({e.msg})") from None
    if not isinstance(value, dict):
        raise InvalidInput("invalid --metadata: expected a JSON object")
    return check_depth(value, "invalid --metadata")
