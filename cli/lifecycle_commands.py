"""Deleting and retaining: rm, prune, and the `runs` group (`runs` lists, `runs rm` deletes).

The decisions (what is protected, who used what) are artifactkit.lifecycle's; these commands
confirm, call it and print. Deleting frees no bytes by itself: the next `gc` does.
"""

from __future__ import annotations

import sys
from typing import Annotated, Any, Optional

import typer

from artifactkit.errors import InvalidInput

from .common import JsonOpt, StorageOpts, StoreOpt, open_store
from .output import emit, pending_line, table

YesOpt = Annotated[bool, typer.Option("--yes", "-y", help="Confirm without a prompt (scripts)")]


def register(app: typer.Typer) -> None:
    app.command("rm")(rm)
    app.command("prune")(prune)
    runs_app = typer.Typer(help="List the runs in the store (`runs rm RUN_ID` deletes one).", no_args_is_help=False)
    runs_app.callback(invoke_without_command=True)(runs)
    runs_app.command("rm")(runs_rm)
    app.add_typer(runs_app, name="runs")


def rm(
    ref: Annotated[str, typer.Argument(help="NAME:vN (one version) or NAME (every version: needs --yes)")],
    force: Annotated[
        bool, typer.Option("--force", help="Delete even a version with a hand-set alias or one a run used")
    ] = False,
    yes: YesOpt = False,
    store: StoreOpt = None,
    storage_option: StorageOpts = None,
    json_out: JsonOpt = False,
) -> None:
    """Delete a version record (or every version of NAME). Version numbers are never reused."""
    from artifactkit.lifecycle import delete_versions
    from artifactkit.removal import planned_removal

    s = open_store(store, storage_option)
    plan = planned_removal(s, ref)
    if plan.version is None:
        _confirm(yes, f"delete all {plan.count} versions of {plan.name} in {s.uri}?", f"rm {ref} deletes every version")
    result = delete_versions(s, plan.name, None if plan.version is None else [plan.version], force=force)
    aliases = f" with aliases {', '.join(result.aliases)}" if result.aliases else ""
    used = f" (used by {', '.join(result.used_by)})" if result.used_by else ""
    pending, hint = _gc_hint(s)
    emit(
        json_out,
        {**result.summary(), "gc": pending.summary()},
        f"deleted {plan.name}:{', '.join(result.versions)}{aliases}{used} in {s.uri}; {hint}",
    )


def prune(
    name: Annotated[str, typer.Argument(help="Artifact name, e.g. <run>-model")],
    keep_last: Annotated[Optional[int], typer.Option("--keep-last", help="Keep the N newest versions")] = None,
    keep_within: Annotated[
        Optional[str],
        typer.Option("--keep-within", help="Keep versions created within this long of the newest one: 12h, 7d, 4w, 1y"),
    ] = None,
    keep_daily: Annotated[
        Optional[int],
        typer.Option("--keep-daily", help="Keep the newest version of each of the N latest days that have one (UTC)"),
    ] = None,
    keep_weekly: Annotated[
        Optional[int],
        typer.Option("--keep-weekly", help="Keep the newest version of each of the N latest ISO weeks that have one"),
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="List what would be deleted, delete nothing")] = False,
    store: StoreOpt = None,
    storage_option: StorageOpts = None,
    json_out: JsonOpt = False,
) -> None:
    """Delete the versions of an artifact that no rule keeps (restic's forget: the rules add up),
    always keeping best, hand-aliased versions and those a run used."""
    from artifactkit.lifecycle import Retention
    from artifactkit.lifecycle import prune as do_prune

    Retention.given(keep_last, keep_within, keep_daily, keep_weekly)  # a bad rule is refused before the store opens
    s = open_store(store, storage_option)
    result = do_prune(
        s, name, keep_last, keep_within=keep_within, keep_daily=keep_daily, keep_weekly=keep_weekly, dry_run=dry_run
    )
    kept = ", ".join(f"{v} ({'; '.join(why)})" for v, why in result.reasons.items())
    if dry_run:
        emit(
            json_out,
            result.summary(),
            f"{name}: would delete {', '.join(result.versions) or 'nothing'}; "
            f"would keep {kept} (--dry-run: nothing deleted)",
        )
        return
    pending, hint = _gc_hint(s)
    emit(
        json_out,
        {**result.summary(), "gc": pending.summary()},
        f"{name}: deleted {', '.join(result.versions) or 'nothing'}; kept {kept}; {hint}",
    )


def runs(
    ctx: typer.Context,
    store: StoreOpt = None,
    storage_option: StorageOpts = None,
    json_out: JsonOpt = False,
) -> None:
    """List the runs in the store: id, status (running, finished, failed with its error, or
    interrupted: killed, or its machine lost), epoch, best mAP."""
    if ctx.invoked_subcommand is None:
        _list_runs(store, storage_option, json_out)


def _list_runs(store: StoreOpt, storage_option: StorageOpts, json_out: JsonOpt) -> None:
    from artifactkit.runs import observe_runs

    rows = [o.summary() for o in observe_runs(open_store(store, storage_option))]
    if json_out:
        emit(True, {"runs": rows})
        return
    table(
        "runs",
        ["run", "status", "epoch", "best mAP50", "best mAP50-95", "dataset", "last seen", "note"],
        [
            [
                r["run_id"],
                r["status"],
                f"{r['epochs_completed']}/{r['total_epochs']}",
                f"{r['metrics'].get('metrics/mAP50', 0):.3f}",
                f"{r['metrics'].get('metrics/mAP50-95', 0):.3f}",
                r["dataset"],
                r["last_seen"][:19].replace("T", " "),
                _note(r),
            ]
            for r in rows
        ],
    )


def _note(row: dict[str, Any]) -> str:
    if row["error"] and row["status"] == "failed":
        return row["error"]
    if row["holder"]:
        return f"on {row['holder']['host']} pid {row['holder']['pid']}"
    return ""


def runs_rm(
    run: Annotated[str, typer.Argument(help="A run id in --store, or a run URI (<store>/runs/<run-id>)")],
    force: Annotated[
        bool,
        typer.Option(
            "--force", help="Delete even a run that says it is running, or whose checkpoints another run used"
        ),
    ] = False,
    yes: YesOpt = False,
    store: StoreOpt = None,
    storage_option: StorageOpts = None,
    json_out: JsonOpt = False,
) -> None:
    """Delete a run: its record, metrics, checkpoints (<run>-model) and evaluation tables."""
    from artifactkit import refs
    from artifactkit.lifecycle import delete_run

    ref = refs.parse(run, (refs.RunRef,), "run")
    s, run_id = open_store(ref.store or store, storage_option), ref.run_id
    _confirm(yes, f"delete run {run_id} with its checkpoints and evaluation tables in {s.uri}?", f"runs rm {run_id}")
    result = delete_run(s, run_id, force=force)
    versions = "; ".join(f"{name}:{', '.join(labels)}" for name, labels in result.versions.items()) or "no versions"
    pending, hint = _gc_hint(s)
    emit(
        json_out, {**result.summary(), "gc": pending.summary()}, f"deleted run {run_id} ({versions}) in {s.uri}; {hint}"
    )


def _gc_hint(s):
    """(what gc would free now and later, the line saying so): deleting frees nothing by itself."""
    from artifactkit.maintenance import DEFAULT_GRACE_SECONDS
    from artifactkit.usage import pending

    p = pending(s, DEFAULT_GRACE_SECONDS)
    return p, pending_line(p)


def _confirm(yes: bool, question: str, what: str) -> None:
    """--yes, or a prompt on a terminal; refused without either (a script never hangs on one)."""
    if yes:
        return
    if not sys.stdin.isatty():
        raise InvalidInput(f"{what}: pass --yes to confirm")
    if not typer.confirm(question, default=False):
        raise typer.Exit(1)
