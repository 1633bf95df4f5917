"""Deleting and retaining versions and runs: what may go, and saying why not before anything goes.

Store.delete_version / Store.delete_run do the deleting (tombstone, aliases, record: never a
renumbering, see store.py); this module decides. A version is protected by
- an alias someone chose: anything but the derived `latest` and the `epoch-<N>` the trainer puts on
  every checkpoint and evaluation table (TRAINER_ALIAS; protecting those would protect everything).
  `best` protects. `rm` refuses such a version unless force, naming the alias; force takes its
  aliases with it;
- a run that used it: a run's `dataset` (NAME:vN), or another run's `weights_from` (a checkpoint a
  run was fine-tuned from). Refused unless force, naming the runs.
Retention (`prune`, and `train`/`resume` after each checkpoint) keeps the union of restic-style
rules (Retention: the N newest, those created within a duration of the newest, the newest of
each of the N latest days / ISO weeks that have versions, in UTC) plus every protected version,
and deletes the rest. Nothing here frees bytes: the next `gc` deletes the blobs nothing references.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from .errors import ArtifactkitError, InvalidInput, NotFound
from .runs import RunRecord, load_run, observe
from .store import LATEST, Store
from .uri import parse_ref, run_uri

TRAINER_ALIAS = re.compile(r"epoch-[0-9]+\Z")
_SHOWN = 5
FULL_STATE = "training_state"  # a thin checkpoint's metadata key: NAME:vN of its full training state


def full_state_name(run_id: str) -> str:
    """The artifact holding the full training states of a run's newest checkpoints (thin history)."""
    return f"{run_id}-state"


DURATION_RE = r"[1-9][0-9]{0,5}[hdwy]\Z"  # --keep-within: hours, days, weeks, years (365 days)
_UNIT_HOURS = {"h": 1, "d": 24, "w": 24 * 7, "y": 24 * 365}


@dataclass(frozen=True)
class Retention:
    """What prune keeps (the union of the rules given; None: rule not used)."""

    last: int | None = None  # the N newest versions
    within: str | None = None  # versions created within this long of the newest one: 12h, 7d, 4w, 1y
    daily: int | None = None  # the newest version of each of the N latest days that have one
    weekly: int | None = None  # the same per ISO week

    def __post_init__(self) -> None:
        for key in ("last", "daily", "weekly"):
            value = getattr(self, key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise InvalidInput(f"keep_{key}: expected a whole number of at least 1, got {value!r}")
        if self.within is not None and not (isinstance(self.within, str) and re.fullmatch(DURATION_RE, self.within)):
            raise InvalidInput(f"keep_within: expected a duration such as 12h, 7d, 4w or 1y, got {self.within!r}")

    @classmethod
    def given(cls, *rules: Any) -> "Retention":
        """The rules of a prune, at least one of them."""
        out = cls(*rules)
        if not out.any:
            raise InvalidInput("prune: give at least one of keep_last, keep_within, keep_daily, keep_weekly")
        return out

    @property
    def any(self) -> bool:
        return any(v is not None for v in (self.last, self.within, self.daily, self.weekly))

    def keeps(self, created: dict[int, str]) -> dict[int, list[str]]:
        """version -> the rules that keep it, for versions with their `created` times. A version
        whose time cannot be read is kept (by "unknown time"): retention never guesses to delete."""
        nums = sorted(created)
        out: dict[int, list[str]] = {}
        for n in nums[-self.last :] if self.last else []:
            out.setdefault(n, []).append(f"last {self.last}")
        times = {n: t for n, t in ((n, _parse_time(created[n])) for n in nums)}
        for n, t in times.items():
            if t is None:
                out.setdefault(n, []).append("unknown time")
        dated = sorted((t, n) for n, t in times.items() if t is not None)
        if self.within and dated:
            since = dated[-1][0] - timedelta(hours=int(self.within[:-1]) * _UNIT_HOURS[self.within[-1]])
            for t, n in dated:
                if t >= since:
                    out.setdefault(n, []).append(f"within {self.within}")
        for rule, count, bucket in (
            ("daily", self.daily, lambda t: t.date()),
            ("weekly", self.weekly, lambda t: t.isocalendar()[:2]),
        ):
            newest: dict[Any, int] = {}
            for t, n in dated:  # oldest first: the last one written per bucket is its newest
                newest[bucket(t)] = n
            for key in sorted(newest)[-count:] if count else []:
                out.setdefault(newest[key], []).append(rule)
        return out


def _parse_time(text: str) -> datetime | None:
    try:
        t = datetime.fromisoformat(text)
    except (TypeError, ValueError):
        return None
    return t if t.tzinfo is not None else None  # our records are UTC with an offset; others are not ours


@dataclass
class Deleted:
    name: str
    versions: list[str] = field(default_factory=list)  # labels deleted (v3, ...)
    aliases: list[str] = field(default_factory=list)  # aliases that went with them
    used_by: list[str] = field(default_factory=list)  # runs that had used them (deleted under force)
    kept: list[str] = field(default_factory=list)  # prune: the versions it kept
    reasons: dict[str, list[str]] = field(default_factory=dict)  # prune: kept version -> why
    dry_run: bool = False  # prune: `versions` would be deleted; nothing was

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
    for run_id in store.runs.run_ids():
        try:
            records.append(load_run(store, run_id))
        except ArtifactkitError as e:
            if not force:
                raise InvalidInput(
                    f"{e} (cannot tell whether that run used what is being deleted; pass --force to go on without it)"
                ) from None
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
        _refuse(
            store,
            name,
            {v: held[v] for v in targets if v in held},
            "holds the alias {} (set by hand); pass --force to delete it with its aliases",
        )
        _refuse(
            store, name, {v: used[v] for v in targets if v in used}, "was used by {}; pass --force to delete it anyway"
        )
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


def prune(
    store: Store,
    name: str,
    keep_last: int | None = None,
    *,
    keep_within: str | None = None,
    keep_daily: int | None = None,
    keep_weekly: int | None = None,
    dry_run: bool = False,
) -> Deleted:
    """Keep what the retention rules keep (their union, see Retention), every version with a
    chosen alias (`best` among them) and every version a run used; delete the others (dry_run:
    only say which)."""
    rules = Retention.given(keep_last, keep_within, keep_daily, keep_weekly)
    nums = store.version_numbers(name)
    if not nums:
        raise NotFound(f"{store.uri}: no artifact named {name!r}")
    created = {n: store.record(name, n).created for n in nums}
    reasons = rules.keeps(created)
    for v, aliases in chosen_aliases(store.aliases(name)).items():
        reasons.setdefault(v, []).append(f"alias {', '.join(aliases)}")
    for v, runs in users(store, name).items():
        reasons.setdefault(v, []).append(f"used by {', '.join(runs[:_SHOWN])}")
    latest = store.latest(name)  # not the highest number where that was claimed after a takeover (fencing.py)
    if latest is not None and latest.version != nums[-1]:
        reasons.setdefault(latest.version, []).append("latest")
    doomed = [n for n in nums if n not in reasons]
    if dry_run:
        result = Deleted(name, versions=[f"v{n}" for n in doomed], dry_run=True)
    else:
        result = delete_versions(store, name, doomed, force=True) if doomed else Deleted(name)
    result.kept = [f"v{n}" for n in nums if n in reasons]
    result.reasons = {f"v{n}": reasons[n] for n in nums if n in reasons}
    result.used_by = []  # kept, by construction: nothing used was deleted
    return result


def thin_history(store: Store, name: str, full: str, keep_full: int) -> list[str]:
    """Thin history: only the keep_full newest checkpoints of `name` that still have a full
    training state (a version of `full`, named in their metadata) keep it; delete the full states
    of older ones (what evaluation, export and fine-tuning read stays in the checkpoint; gc then
    frees the raw weights and optimizer moments). A full state newer than every kept one (a save
    in flight) stays. Returns the labels of the full states deleted."""
    if isinstance(keep_full, bool) or not isinstance(keep_full, int) or keep_full < 1:
        raise InvalidInput(f"keep_full: expected a whole number of at least 1, got {keep_full!r}")
    held = store.version_numbers(full)
    keep: set[int] = set()
    for number in reversed(store.version_numbers(name)):
        if len(keep) == keep_full:
            break
        record = store.record(name, number)
        if FULL_STATE in record.metadata and not store.claimed_after_takeover(record):
            version = full_state_version(record.metadata[FULL_STATE], full, f"{store.uri}: {name}:{record.label}")
            if version in held:  # one deleted by hand is not kept: the next newest full one is
                keep.add(version)
    if not keep:
        return []
    doomed = [n for n in held if n not in keep and n < max(keep)]
    return delete_versions(store, full, doomed, force=True).versions if doomed else []


def full_state_version(ref: Any, full: str, where: str) -> int:
    """The version number a thin checkpoint's FULL_STATE names (untrusted: it must be full:vN)."""
    try:
        parsed = parse_ref(ref) if isinstance(ref, str) else None
    except InvalidInput:
        parsed = None
    if parsed is None or parsed.name != full or parsed.version is None:
        raise InvalidInput(f"{where}: metadata {FULL_STATE} is {str(ref)[:80]!r}, not {full}:vN")
    return parsed.version


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
        raise InvalidInput(
            f"{where}: the run is running (its lease is live: a training is writing it); stop it first, or pass --force"
        )
    model = run.model_artifact if run is not None else f"{run_id}-model"
    used = [u for uses in users(store, model, force).values() for u in uses if u.split()[1] != run_id]
    if used and not force:
        raise InvalidInput(
            f"{where}: its checkpoints were used by {', '.join(sorted(used)[:_SHOWN])}; "
            "pass --force to delete it anyway"
        )
    deleted: dict[str, list[str]] = {}
    for name in (model, full_state_name(run_id), f"{run_id}-evaluation"):
        if store.version_numbers(name):
            deleted[name] = delete_versions(store, name, force=True).versions
    return RunDeleted(run_id, deleted, store.delete_run(run_id), sorted(used))
