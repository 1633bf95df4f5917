"""Deleting and retaining versions and runs: what may go, and saying why not before anything goes.

Store.delete_version / Store.delete_run do the deleting (tombstone, aliases, record: never a
renumbering, see store.py); this module decides. A version is protected by
- an alias someone chose: anything but the derived `latest` and the `epoch-<N>` the trainer puts on
  every checkpoint and evaluation table (TRAINER_ALIAS; protecting those would protect everything).
  `best` protects. `rm` refuses such a version unless force, naming the alias; force takes its
  aliases with it;
- a run that used it: a run's `dataset` (NAME:vN), or another run's `weights_from` (a checkpoint a
  run was fine-tuned from). Refused unless force, naming the runs.
Retention (`prune`, `train --keep-last N`) keeps the N newest plus every protected version and
deletes the rest. Nothing here frees bytes: the next `gc` deletes the blobs nothing references.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from .errors import ArtifactkitError, InvalidInput, NotFound
from .runs import RunRecord, load_run, observe
from .store import LATEST, Store
from .uri import parse_ref, run_uri

TRAINER_ALIAS = re.compile(r"epoch-[0-9]+\Z")
_SHOWN = 5


@dataclass
class Deleted:
    name: str
    versions: list[str] = field(default_factory=list)  # labels deleted (v3, ...)
    aliases: list[str] = field(default_factory=list)  # aliases that went with them
    used_by: list[str] = field(default_factory=list)  # runs that had used them (deleted under force)
    kept: list[str] = field(default_factory=list)  # prune: the versions it kept

    def summary(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class RunDeleted:
    run_id: str
    versions: dict[str, list[str]]  # artifact name -> labels deleted (checkpoints, evaluation tables)
    keys: int  # keys of the run's folder deleted (record, metrics, ...)
    used_by: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return dict(self.__dict__)


def chosen_aliases(aliases: dict[str, int]) -> dict[int, list[str]]:
    """version -> the aliases on it that protect it (not `latest`, not the trainer's epoch-<N>)."""
    out: dict[int, list[str]] = {}
    for alias, version in sorted(aliases.items()):
        if alias != LATEST and not TRAINER_ALIAS.fullmatch(alias):
            out.setdefault(version, []).append(alias)
    return out


def users(store: Store, name: str, force: bool = False) -> dict[int, list[str]]:
    """version of `name` -> the runs that used it ("run abc (dataset)", "run xyz (weights_from)").
    A run record that cannot be read is an error (it might use the version) unless force."""
    out: dict[int, list[str]] = {}
    for run in _runs(store, force):
        if run.dataset:
            ref = parse_ref(run.dataset)
            if ref.name == name and ref.version is not None:
                out.setdefault(ref.version, []).append(f"run {run.run_id} (dataset)")
        origin = run.weights_from or {}
        if origin.get("store") in (store.uri, store.url) and "version" in origin:
            ref = parse_ref(origin["version"])
            if ref.name == name and ref.version is not None:
                out.setdefault(ref.version, []).append(f"run {run.run_id} (weights_from)")
    return out


def _runs(store: Store, force: bool) -> list[RunRecord]:
    records = []
    for run_id in store.run_ids():
        try:
            records.append(load_run(store, run_id))
        except ArtifactkitError as e:
            if not force:
                raise InvalidInput(f"{e} (cannot tell whether that run used what is being deleted; "
                                   "pass --force to go on without it)") from None
    return records


def delete_versions(store: Store, name: str, versions: list[int] | None = None, force: bool = False) -> Deleted:
    """Delete the given versions of `name` (None: every version), after refusing, unless force,
    any that holds a chosen alias or that a run used. Nothing is deleted if anything is refused."""
    existing = store.version_numbers(name)
    if versions is None:
        if not existing:
            raise NotFound(f"{store.uri}: no artifact named {name!r}")
        targets = existing
    else:
        targets = sorted(set(versions))
        for v in targets:
            if v not in existing:
                store.record(name, v)  # raises: "does not exist" / "was deleted"
    held = chosen_aliases(store.aliases(name))
    used = users(store, name, force)
    if not force:
        _refuse(store, name, {v: held[v] for v in targets if v in held},
                "holds the alias {} (set by hand); pass --force to delete it with its aliases")
        _refuse(store, name, {v: used[v] for v in targets if v in used},
                "was used by {}; pass --force to delete it anyway")
    result = Deleted(name, used_by=sorted({u for v in targets for u in used.get(v, ())}))
    for v in targets:
        record, aliases = store.delete_version(name, v)
        result.versions.append(record.label)
        result.aliases += aliases
    return result


def _refuse(store: Store, name: str, why: dict[int, list[str]], reason: str) -> None:
    if why:
        version, what = next(iter(sorted(why.items())))
        more = f" (and {len(why) - 1} more versions)" if len(why) > 1 else ""
        raise InvalidInput(f"{store.uri}: {name}:v{version} {reason.format(', '.join(what[:_SHOWN]))}{more}")


def prune(store: Store, name: str, keep_last: int) -> Deleted:
    """Keep the keep_last newest versions of `name`, and every version with a chosen alias
    (`best` among them) or used by a run; delete the others."""
    if isinstance(keep_last, bool) or not isinstance(keep_last, int) or keep_last < 1:
        raise InvalidInput(f"keep_last: expected a whole number of at least 1, got {keep_last!r}")
    nums = store.version_numbers(name)
    if not nums:
        raise NotFound(f"{store.uri}: no artifact named {name!r}")
    keep = set(nums[-keep_last:]) | set(chosen_aliases(store.aliases(name))) | set(users(store, name))
    doomed = [n for n in nums if n not in keep]
    result = delete_versions(store, name, doomed, force=True) if doomed else Deleted(name)
    result.kept = [f"v{n}" for n in nums if n in keep]
    result.used_by = []  # kept, by construction: nothing used was deleted
    return result


def delete_run(store: Store, run_id: str, force: bool = False) -> RunDeleted:
    """Delete a run: its checkpoints (<run>-model), evaluation tables (<run>-evaluation) and its
    folder. Refused, unless force, while it is running (a live lease) or when another run was
    fine-tuned from one of its checkpoints."""
    try:
        run: RunRecord | None = load_run(store, run_id)
    except InvalidInput:
        if not force:
            raise
        run = None  # a damaged record: force deletes the folder all the same
    where = run_uri(store.uri, run_id)
    # A live lease means a training is writing it now; a crashed one reads as interrupted.
    if run is not None and observe(store, run).status == "running" and not force:
        raise InvalidInput(f"{where}: the run is running (its lease is live: a training is writing it); "
                           "stop it first, or pass --force")
    model = run.model_artifact if run is not None else f"{run_id}-model"
    used = [u for uses in users(store, model, force).values() for u in uses if u.split()[1] != run_id]
    if used and not force:
        raise InvalidInput(f"{where}: its checkpoints were used by {', '.join(sorted(used)[:_SHOWN])}; "
                           "pass --force to delete it anyway")
    deleted: dict[str, list[str]] = {}
    for name in (model, f"{run_id}-evaluation"):
        if store.version_numbers(name):
            deleted[name] = delete_versions(store, name, force=True).versions
    return RunDeleted(run_id, deleted, store.delete_run(run_id), sorted(used))
