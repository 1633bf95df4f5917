"""Fencing a run holder's writes where no lock spans the check and the write: compare-and-swap.

On a backend with conditional_replace (S3: If-Match / If-None-Match: *), every mutable object a
run holder overwrites (the run record, its metrics, the aliases of its artifacts) carries the
lease generation of its last writer (a stamp), and:

- a holder's write (replace_fenced) reads the object and its ETag, refuses (RunHeld) if the stamp
  is newer than its own generation or a newer lease generation exists, then PUTs the object
  stamped with its generation only if the ETag is unchanged (If-None-Match: * where absent); a
  412 means someone wrote in between: read and decide again;
- a takeover of generation N (stamp_all) first rewrites every such object of the run stamped N,
  by the same compare-and-swap, and only then reads the run's state to resume from.

So a holder paused between its check and its PUT either read an object stamped N (refused), or
holds an ETag the stamp replaced (412, re-read, refused), or its write landed before the stamp,
and the new holder reads it as if it had happened before the takeover. Stamped bodies of two
generations differ, so an ETag never comes back (no ABA). Version claims are create-only and
carry the generation in the record; Store.latest skips a claim that landed after a takeover
(runs' `versions_at_takeover`, docs/invariants.md section 3).

Deletes cannot be made conditional on the run's generation, so a holder announces them first: it
adds the versions it is about to delete to the run record's `pending_deletes` (a compare-and-swap
of the stamped record, refused once the run was taken over), deletes, then removes them from the
list (another compare-and-swap). A takeover reads the list from the record it stamped and
completes every delete in it before it reads state: a stale delete is either refused (its
announcement comes after the stamp: 412 or a newer stamp) or happened before the takeover read
anything. A version number is never reused, so a late DELETE of an announced version finds
nothing of the new holder's. An alias is never deleted by a holder on such a store: it is
replaced, by compare-and-swap, with a stamped "deleted" body (`- g<generation>`), so a late
request cannot remove an alias the new holder set again.
"""

from __future__ import annotations

import json
import re
from typing import Any

from .errors import AlreadyExists, InvalidInput, NotFound, RunHeld
from .layout import ARTIFACTS, is_metrics_key, run_id_of_record_key
from .names import NAME_RE
from .names import VERSION_REF_RE as _PENDING

TRIES = 8  # compare-and-swap rounds before giving up (each lost round is another writer's write)
# "<version>[ g<generation>]\n"; a version of "-" is an alias a fenced holder removed (module docstring)
ALIAS_TEXT = re.compile(rb"(0|[1-9][0-9]{0,17}|-)(?: g(0|[1-9][0-9]{0,17}))?\n?\Z")
DELETED_ALIAS = b"-\n"
MAX_PENDING = 10_000  # versions one delete batch announces (a prune of a long run: a few hundred)
_ALIAS_KEY = re.compile(rf"{ARTIFACTS}/[^/]+/aliases/[^/]+\Z")
_MAX_STAMPED = 1 << 20  # a run record or metrics object is a few KB: a larger one is not parsed


def stampable(key: str) -> bool:
    """Keys whose objects carry a generation stamp: run record, metrics, aliases."""
    return _kind(key) is not None


def is_alias_key(key: str) -> bool:
    """An alias: removed by a fenced holder as a stamped "deleted" body, not a DELETE."""
    return _kind(key) == "alias"


def _kind(key: str) -> str | None:
    if run_id_of_record_key(key) is not None or ("/metrics/" in key and is_metrics_key(key)):
        return "json"
    if _ALIAS_KEY.match(key):
        return "alias"
    return None


def stamp_of(key: str, data: bytes, where: str) -> int | None:
    """The generation stamped in an object (None: written unfenced); untrusted, so validated."""
    if _kind(key) == "alias":
        found = ALIAS_TEXT.fullmatch(data)
        if found is None:
            raise InvalidInput(f"{where}: not an alias (expected a version number, found {data[:40]!r})")
        return int(found.group(2)) if found.group(2) is not None else None
    return _generation(_json_object(data, where), where)


def _generation(obj: dict[str, Any], where: str) -> int | None:
    value = obj.get("generation")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidInput(f"{where}: invalid generation {value!r} (expected a lease generation, 0 or more)")
    return value


def stamped(key: str, data: bytes, generation: int, where: str, fields: dict[str, Any] | None = None) -> bytes:
    """The object's bytes carrying `generation` (the lease generation of its writer), and, in a
    JSON object, `fields` too."""
    if _kind(key) == "alias":
        found = ALIAS_TEXT.fullmatch(data)
        if found is None:
            raise InvalidInput(f"{where}: not an alias (expected a version number, found {data[:40]!r})")
        version = found.group(1).decode() if found.group(1) == b"-" else int(found.group(1))
        return f"{version} g{generation}\n".encode()
    obj = _json_object(data, where)
    obj.update(fields or {}, generation=generation)
    return json.dumps(obj, sort_keys=True, indent=1).encode()


def _json_object(data: bytes, where: str) -> dict[str, Any]:
    if len(data) > _MAX_STAMPED:
        raise InvalidInput(f"{where}: {len(data)} bytes, more than a run record or metrics object holds")
    try:
        obj = json.loads(data)
    except ValueError as e:
        raise InvalidInput(f"{where}: not a JSON object ({e})") from None
    except RecursionError:
        raise InvalidInput(f"{where}: nested too deep") from None
    if not isinstance(obj, dict):
        raise InvalidInput(f"{where}: not a JSON object (a JSON {type(obj).__name__})")
    return obj


def run_fence(data: bytes, where: str) -> tuple[int | None, dict[str, int]]:
    """(generation, versions_at_takeover) of a run record's bytes, validated (the store reads
    these two fields without runs.py, which imports the store; runs.RunRecord checks the rest)."""
    obj = _json_object(data, where)
    generation = _generation(obj, where)
    floors = obj.get("versions_at_takeover") or {}
    if not isinstance(floors, dict) or not all(
        isinstance(k, str) and NAME_RE.fullmatch(k) and isinstance(v, int) and not isinstance(v, bool) and v >= -1
        for k, v in floors.items()
    ):
        raise InvalidInput(f"{where}: invalid versions_at_takeover (expected artifact names and version numbers)")
    return generation, floors


def check_pending(value: Any) -> list[str]:
    """A run record's `pending_deletes`: versions (NAME:vN) its holder announced it was deleting."""
    if (
        not isinstance(value, list)
        or len(value) > MAX_PENDING
        or not all(isinstance(v, str) and _PENDING.match(v) for v in value)
    ):
        raise InvalidInput(
            f"invalid pending_deletes {str(value)[:60]!r} (expected a list of artifact versions NAME:vN)"
        )
    return value


def _pending(data: bytes, where: str) -> list[str]:
    try:
        return check_pending(_json_object(data, where).get("pending_deletes") or [])
    except InvalidInput as e:
        raise InvalidInput(f"{where}: {e}") from None


def pending_of(data: bytes, where: str) -> list[tuple[str, int]]:
    """(name, version) of each delete a run record's holder announced and may not have finished."""
    return [(m.group(1), int(m.group(2))) for m in map(_PENDING.match, _pending(data, where))]


def announce(backend, key: str, add: list[str], remove: list[str], generation: int, lease, where: str) -> None:
    """Add `add` to and take `remove` from the `pending_deletes` of the run record at `key`, by
    compare-and-swap stamped `generation`: refused (RunHeld) once the run was taken over, like
    any write of the holder (`lease`: its Lease; None for a takeover, which holds the newest)."""
    for _ in range(TRIES):
        body, etag = backend.read_tagged(key)
        if body is None:
            raise NotFound(f"{where}: the run record is gone; stopping")
        stamp = stamp_of(key, body, where)
        if stamp is not None and stamp > generation:
            if lease is not None:
                lease.lose()
            raise RunHeld(f"{where}: the run was taken over (generation {stamp}); stopping")
        if lease is not None:
            lease.check_current()
        pending = [p for p in _pending(body, where) if p not in remove]
        pending += [p for p in add if p not in pending]
        try:
            backend.replace(key, stamped(key, body, generation, where, {"pending_deletes": pending}), etag)
            return
        except (AlreadyExists, NotFound):
            continue
    raise RunHeld(f"{where}: changed by another writer {TRIES} times while this run announced deletes; stopping")


def claimed_after_takeover(record: Any, generation: int | None, floors: dict[str, int]) -> bool:
    """Whether a version record was claimed by a run holder after the takeover of the run's
    current `generation` (a create that nothing refused): never `latest`."""
    if record.generation is None or generation is None or record.generation >= generation:
        return False
    return record.version > floors.get(record.name, -1)


def replace_fenced(backend, key: str, data: bytes, lease, where: str) -> None:
    """A run holder's write of a stampable object: a compare-and-swap, refused (RunHeld) once
    another process took the run over, whatever the timing (module docstring)."""
    for _ in range(TRIES):
        body, etag = backend.read_tagged(key)
        carried = None
        if body is not None:
            stamp = stamp_of(key, body, where)
            if stamp is not None and stamp > lease.generation:
                lease.lose()  # a newer holder stamped it: the run was taken over
            if run_id_of_record_key(key) is not None:  # deletes announced meanwhile stay announced
                carried = {"pending_deletes": _pending(body, where)}
        lease.check_current()  # a newer generation claimed, not yet stamped here: refused all the same
        try:
            backend.replace(key, stamped(key, data, lease.generation, where, carried), etag)
            return
        except (AlreadyExists, NotFound):  # written or deleted in between: look again
            continue
    raise RunHeld(f"{where}: changed by another writer {TRIES} times while this run wrote it; stopping")


def stamp_all(backend, keys: list[str], generation: int, where_of, fields: dict[str, Any] | None = None) -> None:
    """A takeover of `generation`: every stampable object of the run rewritten stamped with it
    (compare-and-swap), so no earlier holder's pending write can land on it afterwards."""
    for key in keys:
        for _ in range(TRIES):
            body, etag = backend.read_tagged(key)
            if body is None:
                break  # deleted meanwhile: nothing to fence
            stamp = stamp_of(key, body, where_of(key))
            if stamp is not None and stamp >= generation:
                break  # ours already (a retried takeover), or a newer one's: its own stamps fence us
            try:
                backend.replace(key, stamped(key, body, generation, where_of(key), fields), etag)
                break
            except (AlreadyExists, NotFound):
                continue
        else:
            raise RunHeld(f"{where_of(key)}: changed {TRIES} times while this takeover stamped it; try again")
