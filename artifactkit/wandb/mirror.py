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

from ..errors import IntegrityError, InvalidInput, NotFound
from ..hashing import digest_bytes
from ..locks import writing
from ..records import Manifest, VersionRecord, parse_record, to_json
from ..store import LATEST, Store, check_alias
from ..trees import trees_of

_BATCH_BYTES = 64 << 20  # file bytes held in memory per batch of blobs written

META_DIR = ".artifactkit"
MANIFEST_FILE = f"{META_DIR}/manifest.json"
VERSION_FILE = f"{META_DIR}/version.json"
RUN_FILE = f"{META_DIR}/run.json"


def version_metadata(record: VersionRecord, **extra: Any) -> dict[str, Any]:
    return {
        **record.metadata,
        "artifactkit": {
            "name": record.name,
            "version": record.label,
            "manifest": record.manifest,
            "files": record.files,
            "bytes": record.bytes,
            **extra,
        },
    }


def wandb_aliases(store: Store, record: VersionRecord, extra: tuple[str, ...] = ()) -> list[str]:
    """The version's aliases in the store (and `latest` if it is the latest), plus `extra`."""
    mine = [a for a, v in store.aliases(record.name).items() if v == record.version]
    if record.version == store.version_numbers(record.name)[-1]:
        mine.append(LATEST)
    return sorted(set(mine) | set(extra))


@contextlib.contextmanager
def local_files(
    store: Store, record: VersionRecord, manifest: Manifest, root: Path | None = None
) -> Iterator[tuple[dict[str, str], str]]:
    """({entry path: local file}, W&B add_file policy). A local store's blobs are immutable files,
    so W&B may read them in place (no copy, even of a 48 MB checkpoint); a given root (a dataset
    folder) or a remote store's pulled files are copied by W&B into its staging area first."""
    if root is not None:
        yield {e.path: str(root / e.path) for e in manifest.entries}, "mutable"
    elif store.local_root is not None:
        yield {e.path: str(store.local_blob_path(e.digest)) for e in manifest.entries}, "immutable"
    else:
        from ..transfer import pull

        tmp = Path(tempfile.mkdtemp(prefix="artifactkit-wandb-"))
        try:
            pull(store, f"{record.name}:{record.label}", tmp)
            yield {e.path: str(tmp / e.path) for e in manifest.entries}, "mutable"
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def version_artifact(
    wandb: Any,
    store: Store,
    record: VersionRecord,
    root: Path | None = None,
    extra_files: Mapping[str, bytes] | None = None,
    extra_meta: Mapping[str, Any] | None = None,
) -> Any:
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


def import_version(
    folder: Path, dst: Store, aliases: list[str] = (), expected_name: str | None = None
) -> VersionRecord:
    """Rebuild a version in `dst` from a downloaded W&B artifact folder, in the store's commit
    order (blobs, manifest, version record under the same number, aliases). The record and the
    manifest are validated as any read from a store are, and every file is checked against the
    manifest's digest (the bytes checked are the bytes written)."""
    where = f"{folder}/{VERSION_FILE}"
    record = parse_record(VersionRecord, read_file(folder / VERSION_FILE), where)
    if expected_name is not None and record.name != expected_name:
        raise InvalidInput(f"{where}: the record is of {record.name}:{record.label}, not of {expected_name}")
    canonical = read_file(folder / MANIFEST_FILE)  # the flat manifest, whatever the layout
    manifest = parse_record(Manifest, canonical, f"{folder}/{MANIFEST_FILE}")
    trees = trees_of(list(manifest.entries))[1] if record.layout == "tree" else []  # same bytes, same digests
    if (trees[-1][0] if trees else digest_bytes(canonical)) != record.manifest:
        raise IntegrityError(f"{folder}: manifest does not match {record.name}:{record.label}")
    with writing(dst, f"pull {record.name}:{record.label}") as writer:  # no gc deletes what this sends or re-uses
        if not dst.holds(record):
            paths = {e.digest: folder / e.path for e in manifest.entries}
            sizes = {e.digest: e.size for e in manifest.entries}
            batch: list[tuple[str, bytes]] = []
            for digest in dst.missing_blobs(paths):
                batch.append((digest, _verified(paths[digest], digest, folder, record)))
                if sum(sizes[d] for d, _ in batch) >= _BATCH_BYTES:
                    dst.write_blobs(batch)
                    batch = []
            dst.write_blobs(batch)
            if trees:
                dst.put_trees(trees)
                dst.sync()
            else:
                dst.put_manifest(record.manifest, canonical)
            writer.before_commit(record.manifest if record.layout == "tree" else None)
            dst.put_version(record)
            writer.after_commit(record)
        for alias in aliases:
            if _settable(alias):
                dst.set_alias(record.name, alias, record.version)
    return record


def _verified(path: Path, digest: str, folder: Path, record: VersionRecord) -> bytes:
    try:
        data = path.read_bytes()
    except OSError:
        data = None
    if data is None or digest_bytes(data) != digest:
        raise IntegrityError(
            f"{folder}: {path.relative_to(folder)} is missing or does not match {record.name}:{record.label}"
        )
    return data


def _settable(alias: str) -> bool:
    try:
        check_alias(alias)
    except InvalidInput:  # latest and vN: derived in the store, never set
        return False
    return True


def read_file(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:
        raise NotFound(
            f"{path.parent.parent}: not an artifactkit mirror (no {path.name}); was it logged by artifactkit?"
        ) from None
