"""Who writes into a store and who collects it, now: restic's shared and exclusive locks, made of
create-only keys, so that gc never deletes an object a version committed meanwhile relies on,
whatever the durations (docs/invariants.md).

locks/log-<token>.json     a writer (a log, a checkpoint, an evaluation table, a push): many at once
locks/gc-<token>.json      a gc: exclusive of writers
locks/broken-<token>.json  left by a gc that judged writer <token> gone (its lock expired)

Each side writes its own lock, then lists the other side's; of a writer and a gc that start at
once, the one that lists later sees the other's lock, so at least one of them backs off:
- a writer takes its lock before it checks or writes any object, then waits while a live gc lock
  is there; it releases its lock once its version record (and aliases) is committed;
- gc takes its lock before it lists anything, then lists writer locks: while a live one is
  there it deletes nothing (GcReport.writers says whose), else it collects as before;
- a lock is renewed by its holder's heartbeat every ttl/4 ($ARTIFACTKIT_LEASE_SECONDS, lease.py).
  A lock of a process of this machine that has exited is removed by whoever finds it. A writer
  lock that expired is only a hint: its writer may be paused. gc marks it broken (create-only)
  before it deletes anything, and the writer checks for that mark before it commits (nothing is
  committed) and after (if an object it uses is gone, the version is withdrawn at once and the
  writer fails). A gc lock is never judged by time: a writer that finds one expired refuses,
  naming the key to delete if that gc is gone.
"""

from __future__ import annotations

import secrets
import threading
import time
from contextlib import contextmanager
from typing import Iterator, Literal

from .errors import AlreadyExists, InvalidInput, NotFound, StoreBusy
from .lease import LeaseRecord, _this_process, lease_ttl, machine_id, process_alive
from .records import VersionRecord, now_iso, parse_record, to_json

# `Store` in annotations is store.Store, not imported: store.py imports this module.

GC_WAIT_SECONDS = 600.0  # how long a writer waits for a live gc before it refuses (a liveness bound only)
_POLL_SECONDS = (0.05, 1.0)  # first and longest wait between two looks at a gc lock


class LockRecord(LeaseRecord):
    """A lock as read from a store: validated like a lease (host and owner end up in messages)."""

    kind: Literal["log", "gc"]


class Held:
    """A lock this process holds, renewed by a heartbeat thread until released."""

    def __init__(self, store: Store, kind: str, ttl: float):
        self.store, self.kind, self.ttl = store, kind, ttl
        now = now_iso()
        self.record = LockRecord(
            kind=kind, owner=secrets.token_hex(16), since=now, renewed=now, expires=time.time() + ttl, **_this_process()
        )
        store.locks.write_lock(kind, self.token, to_json(self.record), create_only=True)
        self._stop = threading.Event()
        self._beat = threading.Thread(target=self._renew_until_released, name="artifactkit-lock", daemon=True)
        self._beat.start()

    @property
    def token(self) -> str:
        return self.record.owner

    def _renew_until_released(self) -> None:
        while not self._stop.wait(self.ttl / 4):
            self.record = self.record.model_copy(update={"renewed": now_iso(), "expires": time.time() + self.ttl})
            try:
                self.store.locks.write_lock(self.kind, self.token, to_json(self.record))
            except Exception:  # the store is unreachable for a moment: the next beat tries again
                pass

    def broken(self) -> bool:
        """Whether a gc judged this writer gone (read, never answered from a cached listing)."""
        try:
            self.store.locks.read_lock("broken", self.token)
        except NotFound:
            return False
        return True

    def release(self) -> None:
        self._stop.set()
        self._beat.join()
        self.store.locks.delete_locks([(self.kind, self.token), ("broken", self.token)])


def _others(store: Store, kind: str) -> Iterator[tuple[str, LockRecord]]:
    """(token, record) of every lock of `kind`; one released while we list is skipped."""
    for found, token in store.locks.lock_names():
        if found != kind:
            continue
        try:
            data, where = store.locks.read_lock(kind, token)
        except NotFound:
            continue
        record = parse_record(LockRecord, data, where)
        if (record.kind, record.owner) != (kind, token):
            raise InvalidInput(f"{where}: the record is a {record.kind} lock {record.owner}, not {kind} {token}")
        yield token, record


def _gone(record: LockRecord) -> bool:
    """Its process was of this machine and has exited: the lock holds nothing (time plays no part)."""
    return record.machine == machine_id() and not process_alive(record.pid, record.started)


def _wait_for_gc(store: Store, doing: str) -> None:
    """Return once no gc holds the store: a gc of this machine that exited is cleared, a live one
    waited for, and one that stopped renewing elsewhere refused (it may only be paused)."""
    deadline, pause = time.monotonic() + GC_WAIT_SECONDS, _POLL_SECONDS[0]
    while True:
        live = []
        for token, record in _others(store, "gc"):
            if _gone(record):
                store.locks.delete_locks([("gc", token)])
            elif not record.live():
                raise StoreBusy(
                    f"{store.uri}: cannot {doing}: a gc by {record.describe()} stopped renewing its lock "
                    f"at {record.renewed}; if that process is gone, delete locks/gc-{token}.json and retry"
                )
            else:
                live.append(record)
        if not live:
            return
        if time.monotonic() > deadline:
            raise StoreBusy(
                f"{store.uri}: cannot {doing}: a gc by {live[0].describe()} still runs after "
                f"{GC_WAIT_SECONDS:.0f} s; try again when it is done"
            )
        time.sleep(pause)
        pause = min(pause * 2, _POLL_SECONDS[1])


@contextmanager
def writing(store: Store, doing: str) -> Iterator["Writer"]:
    """Hold a writer lock for a write that relies on objects being there, from before its first
    existence check to after its version record and aliases are committed."""
    held = Held(store, "log", lease_ttl())
    try:
        _wait_for_gc(store, doing)
        store.forget_listings()  # an existence answer from a listing older than the lock could name what a gc took
        yield Writer(store, held, doing)
    finally:
        held.release()


class Writer:
    """What a writer checks around its commit (the lock itself is held by writing())."""

    def __init__(self, store: Store, held: Held, doing: str):
        self.store, self.held, self.doing = store, held, doing

    def before_commit(self, root: str | None) -> None:
        """root: the root tree of the version about to be committed (None for a flat manifest)."""
        if self.held.broken():
            _discard_trees_of_missing_blobs(self.store, root)
            raise StoreBusy(
                f"{self.store.uri}: cannot {self.doing}: a gc judged this process gone (it stopped "
                "renewing its lock, e.g. while paused) and may have deleted what it wrote; nothing was "
                "committed; run it again"
            )

    def after_commit(self, record: VersionRecord) -> None:
        """A gc that marked us broken between before_commit and the commit may have deleted an
        object the version uses: once no gc runs, check them all; withdraw the version if one is gone."""
        if not self.held.broken():
            return
        try:
            _wait_for_gc(self.store, self.doing)
            missing = _missing(self.store, record)
        except StoreBusy:
            missing = ["(unknown: a gc still holds the store)"]
        if missing:
            self.store.delete_version(record.name, record.version)
            _discard_trees_of_missing_blobs(self.store, record.manifest if record.layout == "tree" else None)
            raise StoreBusy(
                f"{self.store.uri}: cannot {self.doing}: a gc judged this process gone and deleted "
                f"{len(missing)} objects {record.name}:{record.label} uses; that version was withdrawn; "
                "run it again"
            )


def _discard_trees_of_missing_blobs(store: Store, root: str | None) -> None:
    """A tree is evidence that its blobs are there (a later log trusts the tree of an unchanged
    folder, treelog.py): a tree this writer wrote after gc deleted some of its blobs would hide
    the loss. Delete every tree under root that lists a missing blob or subtree (and so every
    tree above it), so that the next log uploads the blobs again."""
    if root is None:
        return
    store.forget_listings()  # a listing taken before gc ran would still show what it deleted
    doomed: list[str] = []
    verdicts: dict[str, bool] = {}

    def lacks(digest: str) -> bool:
        if digest not in verdicts:
            try:
                tree = store.read_tree(digest)
            except NotFound:
                verdicts[digest] = True
                return True
            below = [lacks(d.tree) for d in tree.dirs]  # every subtree judged, not just up to the first
            verdicts[digest] = any(below) or bool(store.missing_blobs(f.digest for f in tree.files))
            if verdicts[digest]:
                doomed.append(digest)
        return verdicts[digest]

    lacks(root)
    store.delete_trees(doomed)


def _missing(store: Store, record: VersionRecord) -> list[str]:
    store.forget_listings()
    blobs, trees = [], []
    try:
        for kind, digest in store.references(record):
            (trees if kind == "tree" else blobs if kind == "blob" else []).append(digest)
    except NotFound as e:  # a tree (or manifest) gone
        return [str(e)]
    return store.missing_trees(trees) + store.missing_blobs(blobs)


@contextmanager
def collecting(store: Store) -> Iterator[list[LockRecord]]:
    """Hold a gc lock; yields the writers that may still run (gc deletes nothing while any does).
    A writer lock of an exited process of this machine is removed; an expired one is marked
    broken first (its writer, if only paused, then refuses to commit) and removed."""
    held = Held(store, "gc", lease_ttl())
    try:
        writers = []
        for token, record in _others(store, "log"):
            if record.live():
                writers.append(record)
                continue
            if not _gone(record):
                try:
                    store.locks.write_lock("broken", token, b"{}\n", create_only=True)
                except AlreadyExists:
                    pass
            store.locks.delete_locks([("log", token)])
        yield writers
    finally:
        held.release()
