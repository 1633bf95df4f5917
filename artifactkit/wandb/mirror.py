"""Store versions <-> W&B artifacts.

A version becomes a W&B artifact of the same name and type whose files are the version's files
under their own paths (added by content), plus `.artifactkit/manifest.json` and
`.artifactkit/version.json`: the exact manifest and version record, so the version can be
rebuilt, digest for digest, from W&B alone. Our `vN` goes in the metadata (`artifactkit.version`);
W&B reserves `vN` aliases for its own numbering, which matches ours when versions are mirrored in
order. Every other alias is mirrored as is.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator, Mapping

from ..backends.local import LocalBackend
from ..errors import IntegrityError, InvalidInput, NotFound
from ..hashing import NullStatCache, digest_bytes, digest_file
from ..layout import manifest_key, object_key, version_key
from ..manifest import Manifest, VersionRecord, parse_record, to_json
from ..store import LATEST, Store, check_alias

META_DIR = ".artifactkit"
MANIFEST_FILE = f"{META_DIR}/manifest.json"
VERSION_FILE = f"{META_DIR}/version.json"
RUN_FILE = f"{META_DIR}/run.json"


def version_metadata(record: VersionRecord, **extra: Any) -> dict[str, Any]:
    return {**record.metadata, "artifactkit": {"name": record.name, "version": record.label, "manifest": record.manifest,
                                               "files": record.files, "bytes": record.bytes, **extra}}


def wandb_aliases(store: Store, record: VersionRecord, extra: tuple[str, ...] = ()) -> list[str]:
    """The version's aliases in the store (and `latest` if it is the latest), plus `extra`."""
    mine = [a for a, v in store.aliases(record.name).items() if v == record.version]
    if record.version == store.version_numbers(record.name)[-1]:
        mine.append(LATEST)
    return sorted(set(mine) | set(extra))


@contextlib.contextmanager
def local_files(store: Store, record: VersionRecord, manifest: Manifest, root: Path | None = None) -> Iterator[tuple[dict[str, str], str]]:
    """({entry path: local file}, W&B add_file policy). A local store's blobs are immutable files,
    so W&B may read them in place (no copy, even of a 48 MB checkpoint); a given root (a dataset
    folder) or a remote store's pulled files are copied by W&B into its staging area first."""
    if root is not None:
        yield {e.path: str(root / e.path) for e in manifest.entries}, "mutable"
    elif isinstance(store.backend, LocalBackend):
        yield {e.path: str(store.backend.root / object_key(e.digest)) for e in manifest.entries}, "immutable"
    else:
        from ...transfer import pull

        tmp = Path(tempfile.mkdtemp(prefix="artifactkit-wandb-"))
        try:
            pull(store, f"{record.name}:{record.label}", tmp)
            yield {e.path: str(tmp / e.path) for e in manifest.entries}, "mutable"
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def version_artifact(wandb: Any, store: Store, record: VersionRecord, root: Path | None = None,
                     extra_files: Mapping[str, bytes] | None = None, extra_meta: Mapping[str, Any] | None = None) -> Any:
    """A wandb.Artifact mirroring one version (see the module docstring). Files are staged or
    referenced before this returns, so a temporary source may go away afterwards."""
    manifest = store.manifest(record)
    artifact = wandb.Artifact(record.name, type=record.type, metadata=version_metadata(record, **(extra_meta or {})))
    with local_files(store, record, manifest, root) as (paths, policy):
        for path, local in paths.items():
            artifact.add_file(local, name=path, policy=policy)
    files = {MANIFEST_FILE: manifest.canonical_json(), VERSION_FILE: to_json(record), **(extra_files or {})}
    for name, data in files.items():
        with artifact.new_file(name, mode="wb") as f:
            f.write(data)
    return artifact


def import_version(folder: Path, dst: Store, aliases: list[str] = ()) -> VersionRecord:
    """Rebuild a version in `dst` from a downloaded W&B artifact folder: every file is checked
    against the manifest's digest, then the store's own push commits it (same number, commit order)."""
    from ..transfer import push

    record = parse_record(VersionRecord, _read(folder / VERSION_FILE), f"{folder}/{VERSION_FILE}")
    canonical = _read(folder / MANIFEST_FILE)
    if digest_bytes(canonical) != record.manifest:
        raise IntegrityError(f"{folder}: manifest does not match {record.name}:{record.label}")
    manifest = parse_record(Manifest, canonical, f"{folder}/{MANIFEST_FILE}")
    with tempfile.TemporaryDirectory(prefix="artifactkit-wandb-") as tmp:
        staging = LocalBackend(tmp)
        for entry in manifest.entries:
            path = folder / entry.path
            if not path.is_file() or digest_file(path) != entry.digest:
                raise IntegrityError(f"{folder}: {entry.path} is missing or does not match {record.name}:{record.label}")
            staging.write(object_key(entry.digest), path.read_bytes())
        staging.write(manifest_key(record.manifest), canonical)
        staging.write(version_key(record.name, record.version), to_json(record))
        push(Store(staging, NullStatCache()), f"{record.name}:{record.label}", dst)
    for alias in aliases:
        if _settable(alias):
            dst.set_alias(record.name, alias, record.version)
    return record


def _settable(alias: str) -> bool:
    try:
        check_alias(alias)
    except InvalidInput:  # latest and vN: derived in the store, never set
        return False
    return True


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:
        raise NotFound(f"{path.parent.parent}: not an artifactkit mirror (no {path.name}); was it logged by artifactkit?") from None
