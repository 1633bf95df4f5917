"""Where things live in a store (see docs/architecture.md). The one place that spells keys."""

OBJECTS = "objects"
MANIFESTS = "manifests"
ARTIFACTS = "artifacts"
RUNS = "runs"


def object_key(digest: str) -> str:
    return f"{OBJECTS}/{digest[:2]}/{digest[2:]}"


def digest_of_object_key(key: str) -> str | None:
    parts = key.split("/")
    if len(parts) != 3 or parts[0] != OBJECTS or len(parts[1]) != 2 or len(parts[2]) != 30:
        return None
    return parts[1] + parts[2]


def manifest_key(digest: str) -> str:
    return f"{MANIFESTS}/{digest}.json"


def versions_prefix(name: str) -> str:
    return f"{ARTIFACTS}/{name}/versions"


def version_key(name: str, version: int) -> str:
    return f"{versions_prefix(name)}/{version}.json"


def aliases_prefix(name: str) -> str:
    return f"{ARTIFACTS}/{name}/aliases"


def alias_key(name: str, alias: str) -> str:
    return f"{aliases_prefix(name)}/{alias}"


def run_prefix(run_id: str) -> str:
    return f"{RUNS}/{run_id}"
