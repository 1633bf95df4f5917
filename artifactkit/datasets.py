"""Datasets for training: read a local dataset (a data.yaml in any of Ultralytics' spellings, or a
COCO folder converted), log it into the store as a self-contained version, or materialise a
stored version on this machine (pulling only what is not already there).

Reading and checking come before anything is written: `prepare` reads and checks `--data` and
writes nothing to the store; `Prepared.commit` then logs the version. So a command that fails on
its inputs leaves no version (and, in session.py, no run) behind.

What a version holds (docs/architecture.md, "Datasets"): a dataset whose yaml's folder is the
whole dataset and reads back the same anywhere (moves_with_its_folder) is logged as that
folder, exactly as before, and trains in place; any other (a yaml outside its dataset, `../`
paths, .txt lists, files outside the folder, a COCO folder) is logged in the canonical layout
(yolo.version_layout: images/<split>/…, labels/<split>/…, a rewritten data.yaml), files streamed
from where they lie, and trains from that version pulled into the cache.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Callable, Sequence

from .errors import InvalidInput, NotFound
from .hashing import cache_dir
from .names import NAME_RE, check_name, is_within, stays_inside
from .records import VersionRecord, check_digest
from .store import LogResult, Store, open_store
from .transfer import pull
from .uri import looks_like_ref
from .yolo import DatasetSpec, check_split_labels, load_data_config, require_images, version_layout

FORMATS = ("yolo", "coco")


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


@dataclass(frozen=True)
class LocalSource:
    """A dataset on this machine, read but not logged. `files` is the version to log ({path in
    the version: local file, streamed, or bytes}); None: the folder is logged as it is."""

    folder: Path  # logged as it is when files is None
    name: str  # the default artifact name
    data_yaml: str  # data.yaml's path inside the version
    spec: DatasetSpec | None  # what training reads (None for a converted COCO folder)
    files: dict[str, bytes | Path] | None

    def log(self, store: Store, name: str | None = None, full: bool = False, **kw: Any) -> LogResult:
        """full: see Store.log_folder (a list of files is always checked blob by blob)."""
        if not (name or self.name):
            raise InvalidInput(f"{self.folder}: no folder name to name the dataset after; give a name (--name)")
        if self.files is None:
            return store.log_folder(self.folder, name=name or self.name, full=full, **kw)
        return store.log_files(self.files, name=name or self.name, **kw)


@dataclass(frozen=True)
class DatasetLogResult(LogResult):
    """A LogResult that also names the store the version went to (log_dataset may open it)."""

    store: str = ""  # the store's URI, credentials redacted


def log_dataset(
    path: str | os.PathLike,
    name: str | None = None,
    store: Store | str | None = None,
    *,
    format: str | None = None,
    type: str = "dataset",
    aliases: Sequence[str] = (),
    metadata: dict[str, Any] | None = None,
    full: bool = False,
    storage_options: dict[str, Any] | None = None,
    progress: Callable[[int, int | None], None] | None = None,
    warn: Callable[[str], None] | None = None,
) -> DatasetLogResult:
    """Log a local dataset as a new version of `store` (a Store, a URI, or None: the default
    store, made if absent), as `artifactkit log-dataset` does: a data.yaml or a folder holding one
    is logged with every file it uses (its folder as it is when that is the whole dataset, else in
    the YOLO layout with a rewritten data.yaml), format="coco" converts a COCO folder, any other
    folder is versioned as it is. Everything is read and checked before the store is opened, so a
    bad dataset leaves no store and no version. warn: each warning about the dataset (default:
    the `artifactkit` logger)."""
    if metadata is not None and not isinstance(metadata, dict):
        raise InvalidInput("invalid metadata: expected a JSON object (a dict)")
    source = read_dataset(path, format, type)
    for warning in source.spec.warnings if source.spec is not None else ():
        (warn or _log_warning)(warning)
    if not isinstance(store, Store):
        store = open_store(store, storage_options)
    result = source.log(
        store, name=name, type=type, aliases=tuple(aliases), metadata=metadata, progress=progress, full=full
    )
    return DatasetLogResult(**{f.name: getattr(result, f.name) for f in fields(result)}, store=store.uri)


def _log_warning(text: str) -> None:
    import logging

    logging.getLogger("artifactkit").warning(text)


def read_dataset(path: str | os.PathLike, format: str | None = None, type: str = "dataset") -> LocalSource:
    """What log_dataset logs: with `format`, that format; else a data.yaml or a folder holding one
    (of a dataset type) as YOLO; else the folder as it is, but a COCO folder given as a dataset is
    refused with the command that converts it."""
    if format is not None or (type == "dataset" and is_yolo_dataset(path)):
        return read_local(path, format or "yolo")
    if type == "dataset":
        refuse_coco(path)
    folder = Path(path).absolute()
    return LocalSource(Path(path), folder.name, "", None, None)


def read_local(data: str | os.PathLike, format: str = "yolo") -> LocalSource:
    """A data.yaml or a folder holding one (`format` yolo), or a COCO folder (`format` coco)."""
    path = Path(data)
    if format not in FORMATS:
        raise InvalidInput(f"--format {format!r}: expected one of {', '.join(FORMATS)}")
    if format == "coco":
        from .coco import convert

        if not path.is_dir():
            raise InvalidInput(f"{data}: --format coco takes a folder (images + annotations/instances_*.json)")
        return LocalSource(path.absolute(), path.absolute().name, "data.yaml", None, convert(path))
    yaml = path / "data.yaml" if path.is_dir() else path
    if not yaml.is_file():
        refuse_coco(data)
        raise InvalidInput(f"{data}: no such data.yaml (give a data.yaml, a dataset folder or NAME:VERSION)")
    spec = load_data_config(yaml)
    if moves_with_its_folder(spec):
        folder = yaml.parent.absolute()
        return LocalSource(folder, folder.name, yaml.name, spec, None)
    files, text = version_layout(spec)
    name = spec.root.name if yaml.name == "data.yaml" else yaml.stem  # coco8.yaml names coco8
    name = name or yaml.absolute().parent.name  # `path: /` has no name: the yaml's folder names it
    return LocalSource(spec.root, name, "data.yaml", spec, {**files, "data.yaml": text.encode()})


def moves_with_its_folder(spec: DatasetSpec) -> bool:
    """Whether the yaml's folder, copied as it is, is the whole dataset and reads back the same
    anywhere: `path:` absent or `.`, every split a folder named relative to the yaml's folder and
    inside it (no `../` fallback, which depends on the copy's parent; no .txt list, which may name
    images by absolute path), and every file the dataset uses inside that folder."""
    folder = spec.yaml_path.parent.resolve()
    path = spec.raw.get("path")
    if path not in (None, "") and not (isinstance(path, str) and os.path.normpath(path) == "."):
        return False
    if any(key not in spec.splits and spec.raw.get(key) not in (None, "", []) for key in ("test",)):
        return False  # a test split left out: its key must go from the stored yaml
    for key in spec.splits:
        value = spec.raw.get(key)
        for item in value if isinstance(value, list) else [value]:
            if not isinstance(item, str) or not stays_inside(item) or not (folder / os.path.normpath(item)).is_dir():
                return False
    return _all_inside(spec.files(), folder)


def _all_inside(paths, folder: Path) -> bool:
    """Every path lies inside `folder`, links resolved. Each parent folder is resolved once and
    only a file that is itself a link is resolved whole (resolving every file of a large dataset
    cost ~0.4 s of each log of 4,000 files)."""
    parents: dict[Path, bool] = {}
    for p in paths:
        inside = parents.get(p.parent)
        if inside is None:
            inside = parents[p.parent] = is_within(os.path.realpath(p.parent), str(folder))
        if not inside or (p.is_symlink() and not is_within(os.path.realpath(p), str(folder))):
            return False
    return True


def is_yolo_dataset(path: str | os.PathLike) -> bool:
    """A data.yaml, or a folder holding one (log-dataset's other folders are logged as they are)."""
    path = Path(path)
    return (path / "data.yaml").is_file() if path.is_dir() else path.suffix.lower() in (".yaml", ".yml")


def refuse_coco(data: str | os.PathLike) -> None:
    """A COCO folder given as a YOLO dataset: refused with the command that converts it."""
    path = Path(data)
    if path.is_dir():
        from .coco import find_annotations

        found = find_annotations(path)
        if found:
            example = next(iter(found.values())).relative_to(path).as_posix()
            raise InvalidInput(
                f"{data}: a COCO dataset ({example}), not YOLO; convert it with: "
                f"artifactkit log-dataset --format coco {data}"
            )


def check_trainable(spec: DatasetSpec, val_splits: Sequence[str]) -> None:
    """What the trainer will refuse, refused before any run or version exists: a validation split
    the yaml lacks, a split without images, a bad label line (file:line), a split without labels."""
    for name in ("train", *val_splits):
        if name not in spec.splits:
            raise InvalidInput(f"train config key 'val_splits': split '{name}' is not in {spec.yaml_path}")
        require_images(spec.splits[name])
        check_split_labels(spec.splits[name], spec.nc)  # its warning is the trainer's to give


@dataclass(frozen=True)
class Prepared:
    """--data read and checkable, nothing written to the store yet."""

    spec: DatasetSpec
    source: LocalSource | None = None  # a local dataset to log
    stored: LocalDataset | None = None  # a stored version, already on this machine

    def commit(self, store: Store) -> LocalDataset:
        """The version to train: log a local dataset (dedup makes re-runs free) and train it in
        place when its folder is the version, else from the version pulled into the cache."""
        if self.stored is not None:
            return self.stored
        result = self.source.log(store)
        ref = f"{result.record.name}:{result.record.label}"
        if self.source.files is None:
            return LocalDataset(
                ref, self.source.folder, self.source.data_yaml, _digests(store, result.record), in_place=True
            )
        return materialise(store, ref, self.source.data_yaml)


def prepare(store: Store, data: str | None) -> Prepared:
    """--data as the user gave it: None (the store's only dataset), NAME:VERSION, a stored dataset's
    NAME (its latest version), a data.yaml or a folder (a local path wins over a stored name)."""
    ref = latest_dataset(store) if data is None else stored_dataset(data, lambda: store)
    if ref is not None:
        local = materialise(store, ref)
        return Prepared(load_data_config(local.yaml_path), stored=local)
    source = read_local(data)
    check_name(source.name)
    return Prepared(source.spec, source=source)


def stored_dataset(data: str, store: Callable[[], Store]) -> str | None:
    """The stored version --data names (train's and val's one reading), or None for a local path:
    a path that exists wins; NAME:VERSION / NAME:ALIAS is a version; a bare NAME is a stored
    dataset's latest version if `store()` has one (as Ultralytics' data=coco8), else a path."""
    if Path(data).exists():
        return None
    if looks_like_ref(data):
        return data
    if not NAME_RE.fullmatch(data):
        return None
    try:
        return f"{data}:latest" if is_stored_dataset(store(), data) else None
    except NotFound:  # no store: reading it as a path says what is missing
        return None


def is_stored_dataset(store: Store, name: str) -> bool:
    """Whether `name` is an artifact of the store whose latest version is a dataset."""
    record = store.latest(name)
    return record is not None and record.type == "dataset"


def resolve(store: Store, data: str | None) -> LocalDataset:
    """prepare then commit, without the training checks (a caller that only needs the version)."""
    return prepare(store, data).commit(store)


def latest_dataset(store: Store) -> str:
    """NAME:vN of the store's one dataset, for `train` without --data. A store with several is
    refused, listing them: training on whichever was logged last is a silent choice."""
    found: list[VersionRecord] = []
    for name in store.artifact_names():
        record = store.latest(name)
        if record is not None and record.type == "dataset":
            found.append(record)
    if not found:
        raise NotFound(
            f"{store.uri}: no dataset logged yet; try: artifactkit demo-data ./chess && artifactkit log-dataset ./chess"
        )
    if len(found) > 1:
        listed = ", ".join(f"{r.name}:{r.label}" for r in sorted(found, key=lambda r: r.created, reverse=True))
        raise InvalidInput(f"{store.uri} holds {len(found)} datasets ({listed}): name one with --data NAME:VERSION")
    return f"{found[0].name}:{found[0].label}"


def materialise(
    store: Store, ref: str, data_yaml: str = "data.yaml", dest: str | os.PathLike | None = None
) -> LocalDataset:
    """Pull a dataset version into a cache folder named by its content (the version's root tree:
    a store deleted and made again at the same path, whose `NAME:v0` now holds other files, gets
    another folder), or into dest. The folder is made exactly the version: files already there
    with the right content are reused (a second resume on this machine copies nothing), others
    rewritten, and files the version does not have removed, so training reads the version and
    nothing else."""
    record = store.resolve(ref)
    if dest is None:
        dest = cache_dir() / "datasets" / check_digest(record.manifest)
    pull(store, f"{record.name}:{record.label}", dest, force=True, delete=True)  # our cache folder: repair it
    local = LocalDataset(
        f"{record.name}:{record.label}", Path(dest), data_yaml, _digests(store, record), in_place=False
    )
    if not local.yaml_path.is_file():
        raise InvalidInput(f"{store.uri}: dataset {local.ref} has no {data_yaml}")
    return local


def _digests(store: Store, record: VersionRecord) -> dict[str, str]:
    return {e.path: e.digest for e in store.entries(record)}
