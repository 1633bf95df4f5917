"""Datasets for training: log a local YOLO dataset into the store, or materialise a stored
version on this machine (pulling only what is not already there)."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from .errors import InvalidInput, NotFound
from .hashing import cache_dir
from .manifest import VersionRecord
from .store import Store
from .transfer import pull
from .uri import looks_like_ref


@dataclass(frozen=True)
class LocalDataset:
    ref: str  # NAME:vN in the store
    root: Path  # the folder holding the version's files on this machine
    data_yaml: str  # path of data.yaml inside it
    digests: dict[str, str]  # dataset path -> blob digest (evaluation tables reference images by it)
    in_place: bool  # the user's own folder, trained where it lies (else a copy pulled into the cache)

    @property
    def yaml_path(self) -> Path:
        return self.root / self.data_yaml


def from_local(store: Store, data: str) -> LocalDataset:
    """Log the folder holding data.yaml (dedup makes re-runs cheap) and train from it in place."""
    path = Path(data)
    yaml = path / "data.yaml" if path.is_dir() else path
    if not yaml.is_file():
        raise InvalidInput(f"{data}: no such data.yaml (give a data.yaml, a dataset folder or NAME:VERSION)")
    root = yaml.parent
    result = store.log_folder(root, type="dataset")
    return LocalDataset(f"{result.record.name}:{result.record.label}", root, yaml.name, _digests(store, result.record),
                        in_place=True)


def latest_dataset(store: Store) -> str:
    """NAME:vN of the most recently logged dataset, for `train` without --data."""
    newest: VersionRecord | None = None
    for name in store.artifact_names():
        record = store.latest(name)
        if record is not None and record.type == "dataset" and (newest is None or record.created > newest.created):
            newest = record
    if newest is None:
        raise NotFound(
            f"{store.uri}: no dataset logged yet; try: artifactkit demo-data ./chess && artifactkit log-dataset ./chess"
        )
    return f"{newest.name}:{newest.label}"


def materialise(store: Store, ref: str, data_yaml: str = "data.yaml", dest: str | os.PathLike | None = None) -> LocalDataset:
    """Pull a dataset version into a per-store cache folder (or dest); files already there
    with the right content are reused, so a second resume on the same machine copies nothing."""
    record = store.resolve(ref)
    if dest is None:
        store_tag = hashlib.sha1(store.uri.encode()).hexdigest()[:10]
        dest = cache_dir() / "datasets" / store_tag / record.name / record.label
    pull(store, f"{record.name}:{record.label}", dest, force=True)  # our cache folder: repair it
    local = LocalDataset(f"{record.name}:{record.label}", Path(dest), data_yaml, _digests(store, record), in_place=False)
    if not local.yaml_path.is_file():
        raise InvalidInput(f"{store.uri}: dataset {local.ref} has no {data_yaml}")
    return local


def resolve(store: Store, data: str | None) -> LocalDataset:
    """--data as the user gave it: None (latest dataset), NAME:VERSION, a data.yaml or a folder."""
    if data is None:
        return materialise(store, latest_dataset(store))
    if looks_like_ref(data) and not Path(data).exists():
        return materialise(store, data)
    return from_local(store, data)


def _digests(store: Store, record: VersionRecord) -> dict[str, str]:
    return {e.path: e.digest for e in store.manifest(record).entries}
