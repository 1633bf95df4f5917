"""Who holds a run: one training process at a time (a train, or one resume), and proof of life.

runs/<id>/lease/<generation>.json  the lease: owner token, host, pid, since, renewed, expires

A claim writes the next generation create-only, so of two processes claiming at once exactly
one wins, on a local folder (link) and on S3 (conditional PUT) alike. The holder renews its
generation every `ttl / 4` seconds from a daemon thread (the heartbeat) and at each epoch end;
a lease is free when released, expired, or held by a process of this machine that no longer
exists, so a crashed holder never blocks the run: at once on its own machine, after `ttl`
elsewhere. A holder that finds a newer generation than its own has lost the run (it stalled
past its expiry and another process took over) and stops before writing anything more: every write
the holder makes goes through Lease.fenced, which refuses it once a newer generation exists.

The expiry is compared with the reader's clock: machines whose clocks differ by more than the
ttl can misjudge each other. `ARTIFACTKIT_LEASE_SECONDS` sets the ttl (default 60).
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import socket
import threading
import time
from datetime import datetime, timezone
from typing import Any, Callable

from pydantic import Field, field_validator

from .errors import AlreadyExists, InvalidInput, NotFound, RunHeld
from .records import Record, now_iso, parse_record, to_json

# `Store` in annotations is store.Store, not imported: store.py imports locks.py, which builds on this module.

DEFAULT_TTL = 60.0
TTL_ENV = "ARTIFACTKIT_LEASE_SECONDS"
_HOST = re.compile(r"[A-Za-z0-9._-]{1,253}\Z")
_TOKEN = re.compile(r"[0-9a-f]{32}\Z")


def lease_ttl() -> float:
    """Seconds a lease lives without a heartbeat: $ARTIFACTKIT_LEASE_SECONDS, else DEFAULT_TTL."""
    text = os.environ.get(TTL_ENV)
    if not text:
        return DEFAULT_TTL
    try:
        ttl = float(text)
    except ValueError:
        ttl = -1.0
    if not 0.1 <= ttl <= 86400:
        raise InvalidInput(f"{TTL_ENV}={text!r}: expected seconds between 0.1 and 86400")
    return ttl


def _matching(pattern: re.Pattern, problem: str):
    """A field validator: the whole value must match pattern (a record read from a store is
    untrusted; these fields end up in messages and decisions)."""

    def check(value: str) -> str:
        if not pattern.fullmatch(value):
            raise ValueError(problem)
        return value

    return check


class LeaseRecord(Record):
    """Read from a store, hence validated: the host is shown in messages, the rest compared."""

    owner: str
    host: str
    pid: int = Field(gt=0)
    machine: str  # this machine and pid namespace, to tell whether `pid` is ours to check
    started: int | None = None  # the process's start time in clock ticks (a reused pid differs)
    since: str
    renewed: str
    expires: float  # seconds since the epoch, in the holder's clock
    released: bool = False

    _check_owner = field_validator("owner")(_matching(_TOKEN, "owner: expected 32 hex digits"))
    _check_host = field_validator("host")(_matching(_HOST, "host: expected a host name"))

    def describe(self) -> str:
        return f"host {self.host}, pid {self.pid}, since {self.since}"

    def live(self, now: float | None = None) -> bool:
        """Held by a process that may still be running: neither released nor expired, and not a
        process of this machine that has exited."""
        if self.released or (now if now is not None else time.time()) >= self.expires:
            return False
        return not (self.machine == machine_id() and not process_alive(self.pid, self.started))


def current(store: Store, run_id: str) -> LeaseRecord | None:
    """The newest lease of a run, or None if it never had one."""
    for _ in range(3):  # a claim deletes the generation it replaces: list again if we read one too late
        generations = store.runs.lease_generations(run_id)
        if not generations:
            return None
        try:
            return _read(store, run_id, generations[-1])
        except NotFound:
            continue
    raise RunHeld(f"run {run_id}: its lease changed hands three times while being read; try again")


def _read(store: Store, run_id: str, generation: int) -> LeaseRecord:
    data, where = store.runs.read_lease(run_id, generation)
    return parse_record(LeaseRecord, data, where)


class Lease:
    """A held run. claim() takes it; renew() proves life (the Heartbeat calls it); release()
    frees it. `lost` turns True when a renewal finds another process holding the run."""

    def __init__(
        self, store: Store, run_id: str, generation: int, record: LeaseRecord, ttl: float, what: str | None = None
    ):
        self.store, self.run_id, self.generation, self.record, self.ttl = store, run_id, generation, record, ttl
        self.what = what or f"run {run_id}"
        self.lost: LeaseRecord | None = None  # the lease that replaced ours
        self._lock = threading.Lock()

    @classmethod
    def claim(
        cls, store: Store, run_id: str, what: str, ttl: float | None = None, holder: dict[str, Any] | None = None
    ) -> "Lease":
        """Hold the run, or RunHeld naming the live holder. `what` names the run in messages;
        `holder` overrides this process's identity (host, pid, machine, started)."""
        ttl = lease_ttl() if ttl is None else ttl
        generations = store.runs.lease_generations(run_id)
        generation = generations[-1] + 1 if generations else 0
        if generations:
            _refuse_if_live(store, run_id, generations[-1], what)
        now = now_iso()
        record = LeaseRecord(
            owner=secrets.token_hex(16),
            since=now,
            renewed=now,
            expires=time.time() + ttl,
            **(holder or _this_process()),
        )
        try:
            with store.runs.lease_lock(run_id):  # no fenced write of the old holder is half way through
                store.runs.write_lease(run_id, generation, to_json(record), create_only=True)
        except AlreadyExists:  # another process claimed this generation first: it holds the run
            _refuse_if_live(store, run_id, generation, what)
            raise RunHeld(f"{what} was just taken by another process; try again") from None
        store.runs.delete_leases(run_id, generations)  # only the newest generation counts
        return cls(store, run_id, generation, record, ttl, what)

    def fenced(self, write: Callable[[], Any]) -> Any:
        """Make one write of the holder (run record, metrics, checkpoint or table version claim,
        alias) only while this generation is the newest, checked at the write: on a local store
        under the lock claims take too, so no claim comes in between. On a store with conditional
        replace the run record, metrics and aliases (their removal too) are compare-and-swaps
        instead, and a version delete is announced in the run record first (fencing.py, Store._write,
        Store._delete); what is left here there (create-only version claims, tombstones, the
        announced DELETEs) is checked just before the request (docs/invariants.md section 3: why
        that is enough).
        A holder that lost the run gets RunHeld and writes nothing."""
        with self.store.runs.lease_lock(self.run_id):
            self.check_current()
            return write()

    def check_current(self) -> None:
        """RunHeld if a newer generation than ours was claimed (listed now)."""
        self._find_newer()
        self.check(self.what)

    def lose(self) -> None:
        """An object of the run carries a newer generation's stamp (fencing.py): the run was
        taken over. Name the newer holder if its lease can be read, and raise RunHeld."""
        self._find_newer()
        if self.lost is None:  # stamped, yet no newer lease listed: replaced and gone again
            self.lost = self.record.model_copy(update={"host": "unknown", "pid": 1})
        self.check(self.what)

    def _find_newer(self) -> None:
        """Set `lost` if a newer generation exists (another process claimed the run)."""
        if self.lost is not None:
            return
        newer = [g for g in self.store.runs.lease_generations(self.run_id) if g > self.generation]
        if newer:
            try:
                self.lost = _read(self.store, self.run_id, newer[-1])
            except NotFound:  # replaced again meanwhile: still not ours
                self.lost = self.record.model_copy(update={"host": "unknown", "pid": 1})

    def renew(self) -> None:
        """Extend the expiry; if a newer generation exists, the run was taken over: mark lost."""
        with self._lock, self.store.runs.lease_lock(self.run_id):
            self._find_newer()
            if self.lost is not None:
                return
            self.record = self.record.model_copy(update={"renewed": now_iso(), "expires": time.time() + self.ttl})
            self._write_own()

    def check(self, what: str) -> None:
        """Raise RunHeld if another process took the run over (the caller stops writing)."""
        if self.lost is not None:
            raise RunHeld(
                f"{what} was taken over by {self.lost.describe()} after this process's lease expired; "
                "stopping without writing more"
            )

    def release(self) -> None:
        with self._lock, self.store.runs.lease_lock(self.run_id):
            self._find_newer()
            if self.lost is not None:
                return
            self.record = self.record.model_copy(update={"renewed": now_iso(), "released": True})
            self._write_own()

    def _write_own(self) -> None:
        """Rewrite this generation's record; if a takeover deleted it meanwhile (a holder paused
        between its check and this write), the run is lost: nothing is written back."""
        try:
            self.store.runs.write_lease(self.run_id, self.generation, to_json(self.record))
        except (NotFound, AlreadyExists):
            self.lost = self.record.model_copy(update={"host": "unknown", "pid": 1})


def _refuse_if_live(store: Store, run_id: str, generation: int, what: str) -> None:
    try:
        holder = _read(store, run_id, generation)
    except NotFound:
        return  # deleted meanwhile: a newer claim exists, and the create-only write will say so
    if holder.live():
        left = max(0, round(holder.expires - time.time()))
        raise RunHeld(
            f"{what} is held by {holder.describe()} (last heartbeat {holder.renewed}; "
            f"free in {left} s if that process is gone)"
        )


class Heartbeat:
    """Renews a lease every ttl/4 seconds on a daemon thread, so a run is seen alive (and keeps
    its lease) through long epochs; a failed renewal is retried at the next beat."""

    def __init__(self, lease: Lease, warn=None):
        self.lease, self.warn = lease, warn
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="artifactkit-heartbeat", daemon=True)

    def start(self) -> "Heartbeat":
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(self.lease.ttl / 4):
            try:
                self.lease.renew()
            except Exception as e:  # the store is unreachable for a moment: try again at the next beat
                if self.warn is not None:
                    self.warn(f"heartbeat of run {self.lease.run_id} not written ({e})")

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join()

    def close(self) -> None:
        """Stop beating and release the run; a failed release is a warning (the run ended as it
        did, and the lease expires on its own)."""
        self.stop()
        try:
            self.lease.release()
        except Exception as e:
            if self.warn is not None:
                self.warn(
                    f"could not release run {self.lease.run_id} ({e}); it is free again in {self.lease.ttl:.0f} s"
                )


# -- this process, and whether another one of this machine still runs -----------------------
def _this_process() -> dict[str, Any]:
    host = re.sub(r"[^A-Za-z0-9._-]", "-", socket.gethostname())[:253] or "unknown"
    return {"host": host, "pid": os.getpid(), "machine": machine_id(), "started": _start_ticks(os.getpid())}


def machine_id() -> str:
    """This machine (host name and boot) and pid namespace: pids are comparable within it only."""
    parts = [socket.gethostname(), _read_text("/proc/sys/kernel/random/boot_id")]
    try:
        parts.append(os.readlink("/proc/self/ns/pid"))
    except OSError:
        parts.append("")
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


def process_alive(pid: int, started: int | None) -> bool:
    """False when `pid` has exited (or is a zombie, or is another process that reused the pid)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, another user's
    except OSError:
        return True  # cannot tell: assume alive (the expiry still frees it)
    stat = _read_text(f"/proc/{pid}/stat")
    if not stat:
        return True
    fields = stat.rsplit(")", 1)[-1].split()
    if fields and fields[0] == "Z":
        return False
    return started is None or len(fields) < 20 or int(fields[19]) == started


def _start_ticks(pid: int) -> int | None:
    fields = _read_text(f"/proc/{pid}/stat").rsplit(")", 1)[-1].split()
    return int(fields[19]) if len(fields) >= 20 else None


def _read_text(path: str) -> str:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return ""


def seconds_since(iso: str) -> float:
    """Age of an ISO timestamp written by now_iso (inf if it cannot be read)."""
    try:
        return time.time() - datetime.fromisoformat(iso).astimezone(timezone.utc).timestamp()
    except ValueError:
        return float("inf")
