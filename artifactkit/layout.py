"""Where things live in a store (see docs/architecture.md). The one place that spells keys, and
that reads them back: a listed key that does not have the exact shape we write is a stray file
(None), never something to guess at."""

import re
from functools import partial

OBJECTS = "objects"
MANIFESTS = "manifests"
TREES = "trees"
PACKS = "packs"  # remote stores: many small blobs in one object (packs.py)
INDEX = "index"  # remote stores: which pack holds which blob, one index object per pack write
ARTIFACTS = "artifacts"
RUNS = "runs"
RUN_RECORD = "run.json"
VERSIONS = "versions"
DELETED = "deleted"  # tombstones: artifacts/<name>/deleted/<n>.json, so a number is never reused
LOCKS = "locks"  # who writes and who collects now (locks.py)
FORMAT_KEY = "artifactkit-store.json"  # {"format": N}: the layout version of the whole store

_VERSION_FILE = re.compile(r"(0|[1-9][0-9]*)\.json\Z")  # ASCII digits only: "².json" is a stray
_METRICS_FILE = re.compile(r"([0-9]{6,})\.json\Z")
_HEX = re.compile(r"[0-9a-f]+\Z")


def _key_under(top: str, digest: str) -> str:
    """The key of a content-addressed object: top/ab/cdef… (the digest split after 2 digits)."""
    return f"{top}/{digest[:2]}/{digest[2:]}"


def _digest_under(top: str, key: str) -> str | None:
    """top/ab/cdef… (32 hex digits in all) -> the digest; None for any other shape."""
    parts = key.split("/")
    if len(parts) != 3 or parts[0] != top or len(parts[1]) != 2 or len(parts[2]) != 30:
        return None
    digest = parts[1] + parts[2]
    return digest if _HEX.match(digest) else None


# For each kind of content-addressed object, the one spelling of its key and the one reading of
# a key back (None for anything not of that exact shape).
object_key, digest_of_object_key = partial(_key_under, OBJECTS), partial(_digest_under, OBJECTS)
tree_key, digest_of_tree_key = partial(_key_under, TREES), partial(_digest_under, TREES)
pack_key, digest_of_pack_key = partial(_key_under, PACKS), partial(_digest_under, PACKS)
index_key, digest_of_index_key = partial(_key_under, INDEX), partial(_digest_under, INDEX)


def manifest_key(digest: str) -> str:
    return f"{MANIFESTS}/{digest}.json"


def artifacts_prefix() -> str:
    return f"{ARTIFACTS}/"


def name_of_artifact_key(key: str) -> str | None:
    """artifacts/<name>/versions/<file> -> name (unchecked: the caller validates it). Names whose
    folder holds only aliases or tombstones (every version deleted) have no version: None."""
    parts = key.split("/")
    return parts[1] if len(parts) == 4 and parts[0] == ARTIFACTS and parts[2] == VERSIONS else None


def versions_prefix(name: str) -> str:
    return f"{ARTIFACTS}/{name}/{VERSIONS}"


def version_key(name: str, version: int) -> str:
    return f"{versions_prefix(name)}/{version}.json"


def number_of_key(key: str) -> int | None:
    """.../<n>.json -> n (a version, a tombstone, a lease generation); None for anything else in
    such a folder (temp files of a write, strays)."""
    m = _VERSION_FILE.match(key.rsplit("/", 1)[-1])
    return int(m.group(1)) if m else None


def tombstones_prefix(name: str) -> str:
    return f"{ARTIFACTS}/{name}/{DELETED}"


def tombstone_key(name: str, version: int) -> str:
    """The record of a deleted version (listed names parse back with number_of_key)."""
    return f"{tombstones_prefix(name)}/{version}.json"


def aliases_prefix(name: str) -> str:
    return f"{ARTIFACTS}/{name}/aliases"


def alias_key(name: str, alias: str) -> str:
    return f"{aliases_prefix(name)}/{alias}"


def runs_prefix() -> str:
    return f"{RUNS}/"


def run_prefix(run_id: str) -> str:
    return f"{RUNS}/{run_id}"


def run_folder_prefix(run_id: str) -> str:
    """Every key of one run (record, metrics, and whatever else lives in its folder)."""
    return f"{run_prefix(run_id)}/"


def run_record_key(run_id: str) -> str:
    return f"{run_prefix(run_id)}/{RUN_RECORD}"


def run_id_of_record_key(key: str) -> str | None:
    """runs/<id>/run.json -> id (unchecked: the caller validates it); None for other keys."""
    parts = key.split("/")
    return parts[1] if len(parts) == 3 and parts[0] == RUNS and parts[2] == RUN_RECORD else None


def metrics_prefix(run_id: str) -> str:
    return f"{run_prefix(run_id)}/metrics/"


def metrics_key(run_id: str, epoch: int) -> str:
    return f"{metrics_prefix(run_id)}{epoch:06d}.json"


def is_metrics_key(key: str) -> bool:
    return bool(_METRICS_FILE.match(key.rsplit("/", 1)[-1]))


def lease_prefix(run_id: str) -> str:
    """runs/<id>/lease/<generation>.json: who holds the run (lease.py); each claim is a new
    generation written create-only, so two claimers never both win."""
    return f"{run_prefix(run_id)}/lease/"


def lease_key(run_id: str, generation: int) -> str:
    return f"{lease_prefix(run_id)}{generation}.json"


_LOCK_FILE = re.compile(r"(log|gc|broken)-([0-9a-f]{32})\.json\Z")


def lock_key(kind: str, token: str) -> str:
    """locks/<kind>-<token>.json: a writer (`log`), a gc (`gc`), or the mark a gc leaves on a
    writer lock it judged stale (`broken`), locks.py."""
    return f"{LOCKS}/{kind}-{token}.json"


def lock_of_key(key: str) -> tuple[str, str] | None:
    """locks/<kind>-<token>.json -> (kind, token); None for other keys (temp files, strays)."""
    top, _, name = key.partition("/")
    m = _LOCK_FILE.fullmatch(name) if top == LOCKS else None
    return (m.group(1), m.group(2)) if m else None
