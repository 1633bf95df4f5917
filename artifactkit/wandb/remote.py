"""W&B as a source and a target beyond one training run: `push --to wandb://<entity>/<project>`
mirrors store versions, and `resume wandb-artifact://<entity>/<project>/<run-id>` rebuilds a run
from W&B alone (its latest `<run-id>-model` version, the run record inside it, the full training
state `<run-id>-state` it names (thin history), and the dataset
version it trained on) in a local store, ready for session.resume.
"""

from __future__ import annotations

import logging
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import InvalidInput, NotFound
from ..hashing import cache_dir
from ..lifecycle import FULL_STATE, full_state_name
from ..records import VersionRecord
from ..runs import RunRecord, load_run, parse_run, save_run
from ..store import Store, open_store
from ..uri import parse_ref
from . import media, mirror
from .sdk import choose_mode, credentials_found, load, parse_mirror_uri, parse_run_uri, sdk_errors, sync_command

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class WandbPushResult:
    name: str
    versions: list[str]
    sent_versions: list[str]
    uploaded_files: int  # handed to W&B, which skips the files it already holds
    uploaded_bytes: int
    seconds: float
    mode: str
    sync: str | None = None  # offline: the command that uploads it later
    url: str | None = None

    def summary(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "versions": self.versions,
            "sent_versions": self.sent_versions,
            "uploaded_files": self.uploaded_files,
            "uploaded_bytes": self.uploaded_bytes,
            "seconds": round(self.seconds, 4),
            "mode": self.mode,
            "sync": self.sync,
            "url": self.url,
        }


def push_to_wandb(src: Store, ref: str, target: str) -> WandbPushResult:
    """Log one version (NAME:vN / NAME:ALIAS) or all (NAME), oldest first, as artifacts of one
    W&B run, so W&B's own vN numbering follows ours. Datasets get their image tables too."""
    entity, project = parse_mirror_uri(target)
    parsed = parse_ref(ref)
    records = [src.resolve(parsed)] if parsed.selector else [i.record for i in src.versions(parsed.name)]
    wandb = load()
    mode, chose_offline = choose_mode()
    start = time.perf_counter()
    with sdk_errors(f"push {ref} to {target} failed"):
        run = wandb.init(
            project=project,
            entity=entity,
            job_type="artifactkit-push",
            mode=mode,
            settings=wandb.Settings(reinit="create_new"),
        )
        try:
            for record in records:
                run.log_artifact(_push_artifact(wandb, src, record), aliases=mirror.wandb_aliases(src, record))
            offline, run_id, sync_dir, url = (
                run.offline,
                run.id,
                run.settings.sync_dir,
                None if run.offline else run.url,
            )
        finally:
            run.finish()
    sync = sync_command(sync_dir, run_id) if offline else None
    if chose_offline:
        logger.warning("wandb: no W&B API key or login found, so the push was recorded offline; to upload it: %s", sync)
    labels = [r.label for r in records]
    return WandbPushResult(
        parsed.name,
        labels,
        labels,
        sum(r.files for r in records),
        sum(r.bytes for r in records),
        time.perf_counter() - start,
        "offline" if offline else "online",
        sync,
        url,
    )


def _push_artifact(wandb: Any, src: Store, record: VersionRecord) -> Any:
    if record.type != "dataset":
        return mirror.version_artifact(wandb, src, record)
    from ..transfer import pull

    # Tables need image files with their real names: pull the version into a scratch folder
    # (W&B copies what it keeps into its staging area, so the folder may go right after).
    with tempfile.TemporaryDirectory(prefix="artifactkit-wandb-") as tmp:
        pull(src, f"{record.name}:{record.label}", tmp)
        root = Path(tmp).absolute()
        artifact = mirror.version_artifact(wandb, src, record, root=root)
        digests = {e.path: e.digest for e in src.manifest(record).entries}
        yaml_rel = "data.yaml" if "data.yaml" in digests else None
        if yaml_rel is not None:
            for split, table in media.dataset_tables(wandb, root, yaml_rel, digests).items():
                artifact.add(table, split)
        return artifact


def find_version(api: Any, entity: str, project: str, record: VersionRecord | tuple[str, str, str | None]) -> Any:
    """The W&B artifact mirroring a store version: W&B's own vN first (the usual case), else any
    version of that name whose artifactkit metadata names the same version (and manifest)."""
    name, label, manifest = (
        (record.name, record.label, record.manifest) if isinstance(record, VersionRecord) else record
    )

    def matches(artifact: Any) -> bool:
        meta = (artifact.metadata or {}).get("artifactkit", {})
        return meta.get("version") == label and (manifest is None or meta.get("manifest") == manifest)

    try:
        candidate = api.artifact(f"{entity}/{project}/{name}:{label}")
        if matches(candidate):
            return candidate
    except Exception:  # not there under that number: search the collection below
        pass
    try:
        for candidate in api.artifacts(
            api.artifact(f"{entity}/{project}/{name}:latest").type, f"{entity}/{project}/{name}"
        ):
            if matches(candidate):
                return candidate
    except Exception:  # no such collection (or no access): the same answer, with the way out
        pass
    raise NotFound(
        f"W&B {entity}/{project}: no artifact mirrors {name}:{label}; "
        f"push it: artifactkit push {name}:{label} --to wandb://{entity}/{project}"
    )


def cache_store(entity: str, project: str) -> Store:
    """This machine's store for runs fetched from W&B: one per entity/project."""
    return open_store(str(cache_dir() / "wandb" / entity / project))


def fetch_run(
    uri: str, store: str | None = None, storage_options: dict[str, Any] | None = None
) -> tuple[Store, RunRecord]:
    """wandb-artifact://<entity>/<project>/<run-id> -> (local store, run record) ready to resume."""
    entity, project, run_id = parse_run_uri(uri)
    wandb = load()
    if not credentials_found():
        raise InvalidInput(
            f"{uri}: resuming from W&B needs the W&B server: `wandb login` or set WANDB_API_KEY "
            "(or resume from the store: artifactkit resume <store>/runs/<run-id>)"
        )
    dst = open_store(store, storage_options) if store else cache_store(entity, project)
    with sdk_errors(f"{uri}: cannot fetch the run from W&B"):
        api = wandb.Api()
        model = api.artifact(f"{entity}/{project}/{run_id}-model:latest", type="model")
        with tempfile.TemporaryDirectory(prefix="artifactkit-wandb-") as tmp:
            folder = Path(model.download(root=str(Path(tmp) / "model")))
            record = mirror.import_version(folder, dst, aliases=list(model.aliases), expected_name=f"{run_id}-model")
            if FULL_STATE in record.metadata:  # thin history: the full training state is its own artifact
                name = full_state_name(run_id)
                state = api.artifact(f"{entity}/{project}/{name}:latest", type="model")
                mirror.import_version(Path(state.download(root=str(Path(tmp) / "state"))), dst, expected_name=name)
            run = parse_run(mirror.read_file(folder / mirror.RUN_FILE), f"{uri} {mirror.RUN_FILE}", run_id)
            _fetch_dataset(api, entity, project, run, model.metadata, dst, Path(tmp) / "dataset")
    run = run.with_(
        status="running",
        trackers={**run.trackers, "wandb": {"id": run_id, "project": project, "entity": entity, "mode": "online"}},
    )
    return dst, _newer_of(dst, run)


def _fetch_dataset(api: Any, entity: str, project: str, run: RunRecord, meta: dict, dst: Store, tmp: Path) -> None:
    if run.dataset is None:
        raise InvalidInput(f"run {run.run_id} on W&B records no dataset version")
    ref = parse_ref(run.dataset)
    expected = (meta.get("artifactkit") or {}).get("dataset_manifest")
    try:
        if dst.resolve(ref).manifest == expected:
            return  # already here (a second resume on this machine)
    except NotFound:
        pass
    found = find_version(api, entity, project, (ref.name, ref.selector or "latest", expected))
    mirror.import_version(Path(found.download(root=str(tmp))), dst, expected_name=ref.name)


def _newer_of(dst: Store, fetched: RunRecord) -> RunRecord:
    """Keep this machine's record of the run if it got further than the one on W&B."""
    try:
        local = load_run(dst, fetched.run_id)
    except NotFound:
        local = None
    if local is not None and local.epochs_completed >= fetched.epochs_completed:
        return local
    save_run(dst, fetched)
    return fetched
