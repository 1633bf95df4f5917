"""A store's runs/<id>/ keys (run records, per-epoch metrics, leases, the takeover) and its locks/,
as bytes by id: rooms of their own, reached as `store.runs` and `store.locks`. runs.py, lease.py
and locks.py own the models and validate what they read; every write goes through the Store it is
bound to, so a run holder's store (Store.fenced_by) fences these too.
"""

from __future__ import annotations

import os
import time
from contextlib import contextmanager
from typing import Iterable, Iterator

from .errors import InvalidInput, NotFound, RunHeld
from .fencing import announce, pending_of, stamp_all
from .layout import (
    LOCKS,
    RUNS,
    aliases_prefix,
    is_metrics_key,
    lease_key,
    lease_prefix,
    lock_key,
    lock_of_key,
    metrics_key,
    metrics_prefix,
    number_of_key,
    run_id_of_record_key,
    run_record_key,
    runs_prefix,
)
from .names import RUN_ID_RE, check_name, check_run_id, is_settable_alias

# `Store` in annotations is store.Store, not imported: store.py imports this module.

LEASE_LOCK = ".fence"  # runs/<id>/lease/.fence: the local lock of lease_lock (not a generation: never listed as one)
LEASE_LOCK_WAIT = 30.0  # seconds lease_lock waits for a holder inside one write (a liveness bound only)


class RunKeys:
    """The runs of one store (Store.runs)."""

    def __init__(self, store: "Store"):
        self.store = store

    def run_ids(self) -> list[str]:
        """Ids of the runs with a record; folders under runs/ that are not a valid id are strays."""
        ids = (run_id_of_record_key(i.key) for i in self.store.backend.list(runs_prefix()))
        return sorted(i for i in ids if i is not None and RUN_ID_RE.fullmatch(i))

    def run_exists(self, run_id: str) -> bool:
        key = run_record_key(check_run_id(run_id))
        return bool(self.store.backend.exists([key]))

    def read_run(self, run_id: str) -> tuple[bytes, str]:
        """(the run record's bytes, where they came from, for messages)."""
        key = run_record_key(check_run_id(run_id))
        try:
            return self.store.backend.read(key), self.store._where(key)
        except NotFound:
            raise NotFound(f"{self.store.uri}/{RUNS}/{run_id}: no such run") from None

    def write_run(self, run_id: str, data: bytes, create_only: bool = False) -> None:
        """Replace a run record atomically; create_only claims the run id (AlreadyExists if taken)."""
        self.store._ensure_format()
        self.store._write(run_record_key(check_run_id(run_id)), data, create_only=create_only)

    def write_metrics(self, run_id: str, epoch: int, data: bytes) -> None:
        self.store._write(metrics_key(check_run_id(run_id), epoch), data)

    def read_metrics(self, run_id: str) -> list[tuple[bytes, str]]:
        """Every epoch's metrics object as (bytes, where), in epoch order; stray files are skipped."""
        keys = sorted(
            i.key for i in self.store.backend.list(metrics_prefix(check_run_id(run_id))) if is_metrics_key(i.key)
        )
        return [(data, self.store._where(key)) for key, data in sorted(self.store.backend.read_many(keys))]

    # -- run leases (lease.py owns the model): generation objects, each claimed create-only ----
    def lease_generations(self, run_id: str) -> list[int]:
        gens = (number_of_key(i.key) for i in self.store.backend.list(lease_prefix(check_run_id(run_id))))
        return sorted(g for g in gens if g is not None)

    def read_lease(self, run_id: str, generation: int) -> tuple[bytes, str]:
        key = lease_key(check_run_id(run_id), generation)
        return self.store.backend.read(key), self.store._where(key)

    def write_lease(self, run_id: str, generation: int, data: bytes, create_only: bool = False) -> None:
        """create_only claims the generation (AlreadyExists if another process did first). Otherwise
        it renews one that exists: on a store with conditional replace a compare-and-swap, NotFound if
        the generation is gone (a takeover deletes older ones), so a holder paused between its check
        and its PUT never brings back a generation it lost (elsewhere the lease lock makes it one step)."""
        key = lease_key(check_run_id(run_id), generation)
        backend = self.store.backend
        if create_only or not backend.capabilities.conditional_replace:
            backend.write(key, data, create_only=create_only)
            return
        body, tag = backend.read_tagged(key)
        if body is None:
            raise NotFound(f"{self.store._where(key)}: generation {generation} is gone (the run was taken over)")
        backend.replace(key, data, tag)

    def delete_leases(self, run_id: str, generations: Iterable[int]) -> None:
        self.store.backend.delete([lease_key(check_run_id(run_id), g) for g in generations])

    @contextmanager
    def lease_lock(self, run_id: str) -> Iterator[None]:
        """On a local store, an exclusive lock (flock on runs/<id>/lease/.fence) held around a
        lease claim and around each fenced write of the holder (lease.Lease.fenced), so no claim
        comes between a holder's check of its generation and its write. Elsewhere nothing: there
        the check is made just before the write (docs/invariants.md says what that leaves)."""
        root = self.store.local_root
        if root is None:
            yield
            return
        import fcntl

        path = root / lease_prefix(check_run_id(run_id)) / LEASE_LOCK
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            deadline = time.monotonic() + LEASE_LOCK_WAIT
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:  # held for a write: milliseconds, unless that process is paused
                    if time.monotonic() > deadline:
                        raise RunHeld(
                            f"{self.store.uri}: run {run_id}: another process has held {path.name} for "
                            f"{LEASE_LOCK_WAIT:.0f} s (paused inside a write?); try again"
                        ) from None
                    time.sleep(0.01)
            yield
        finally:
            os.close(fd)  # releases the flock

    def take_over(self, run_id: str, generation: int, artifacts: list[str]) -> None:
        """A claim of `generation` on a store with conditional replace, before the new holder
        reads anything: every metrics object and alias of the run's artifacts is stamped with the
        generation (fencing.py), so no earlier holder's write lands on it after this; then the run
        record gets the generation and, for each artifact, the number of its latest version before
        (a version an older generation claims above it landed after this takeover: never `latest`;
        a metrics object or alias created with an older stamp likewise: not the run's).
        A no-op elsewhere (a local store's lock makes each check and write one step)."""
        if not self.store.backend.capabilities.conditional_replace:
            return
        record = run_record_key(check_run_id(run_id))
        floors = {}
        for name in artifacts:  # before the record says `generation` (latest() reads it)
            latest = self.store.latest(check_name(name))
            floors[name] = latest.version if latest is not None else -1
        keys = [i.key for i in self.store.backend.list(metrics_prefix(run_id)) if is_metrics_key(i.key)]
        keys += [
            i.key
            for name in artifacts
            for i in self.store.backend.list(aliases_prefix(name) + "/")
            if is_settable_alias(i.key.rsplit("/", 1)[-1])
        ]
        stamp_all(self.store.backend, keys, generation, self.store._where)
        # The record last: until it says `generation`, readers still count the objects not yet
        # stamped (a stamp older than the record's marks a write that landed after a takeover).
        stamp_all(self.store.backend, [record], generation, self.store._where, {"versions_at_takeover": floors})
        # Deletes the old holder announced (fencing.py): finished now, before the state is read;
        # one announced later was refused by the stamp.
        body, _etag = self.store.backend.read_tagged(record)
        pending = pending_of(body, self.store._where(record)) if body is not None else []
        for name, version in pending:
            if name not in artifacts:
                raise InvalidInput(
                    f"{self.store._where(record)}: pending_deletes names {name}:v{version}, not an artifact of this run"
                )
            try:
                self.store._delete_version(self.store.record(name, version))
            except NotFound:
                pass  # its holder finished it
        if pending:
            announce(
                self.store.backend,
                record,
                [],
                [f"{n}:v{v}" for n, v in pending],
                generation,
                None,
                self.store._where(record),
            )


class LockKeys:
    """The locks of one store (Store.locks)."""

    def __init__(self, store: "Store"):
        self.store = store

    def lock_names(self) -> list[tuple[str, str]]:
        """(kind, token) of every lock; other files under locks/ are strays (or temp files)."""
        return sorted(n for n in (lock_of_key(i.key) for i in self.store.backend.list(LOCKS + "/")) if n is not None)

    def read_lock(self, kind: str, token: str) -> tuple[bytes, str]:
        key = lock_key(kind, token)
        return self.store.backend.read(key), self.store._where(key)

    def write_lock(self, kind: str, token: str, data: bytes, create_only: bool = False) -> None:
        self.store.backend.write(lock_key(kind, token), data, create_only=create_only)

    def delete_locks(self, names: Iterable[tuple[str, str]]) -> None:
        self.store.backend.delete([lock_key(kind, token) for kind, token in names])
