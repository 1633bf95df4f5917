"""The W&B tracker: each artifactkit run is one W&B run with the same id, continued on resume.

Per epoch: the local run's metrics under the same names at step = epoch (wandb records system
metrics itself). Every evaluated epoch: the bounding-box debugger's 16 images under one key and a
`<run-id>-evaluation` artifact. Every checkpoint: a `<run-id>-model` version with the same aliases
(see mirror.py), built on the saver's thread. Its files are the store's own tensor blobs, added by
content and read in place (no copy of a 48 MB checkpoint): by reference would leave W&B unable to
rebuild the run alone, and one file per tensor lets W&B skip the files an earlier version already
uploaded. With --upload-dataset: the dataset version, with one image table per split.

Evaluation images. Online, the table's image cells point into the dataset artifact's table (no
upload). Offline W&B refuses use_artifact, so, as when the dataset is not on W&B, only the 16
debugger rows carry an image; every row keeps path and digest, which name the file in the dataset
artifact and in the store.

Failures raise BackendError saying what was not mirrored; the run's FanOut reports it and stops
calling this tracker, and training goes on: the store is the store of record.
"""

from __future__ import annotations

import contextlib
import logging
import math
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any, Callable, Iterator

from ..errors import BackendError
from ..records import to_json
from ..runs import read_metrics
from . import media, mirror
from .sdk import choose_mode, default_project, load, scrub, sync_command

DEBUGGER_KEY = "bbox_debugger"
logger = logging.getLogger(__name__)


class WandbTracker:
    name = "wandb"

    def __init__(self, project: str | None = None, entity: str | None = None, upload_dataset: bool = False):
        self.wandb = load()  # fail before training starts if the extra is missing
        self.project, self.entity, self.upload_dataset = project, entity, upload_dataset
        self.wb: Any = None  # the wandb Run
        self.run: Any = None  # the artifactkit RunRecord
        self.info: dict[str, Any] = {}
        self.store: Any = None
        self.dataset: Any = None
        self.dataset_record: Any = None
        self._dataset_artifact: Any = None  # logged by this run (--upload-dataset)
        self._references: dict[str, dict[str, Any]] = {}  # split -> {path: wandb.Image} in the dataset artifact
        self._first_step = 0  # epochs below this are on W&B already (online resume)
        self._best = -math.inf
        self._lock = threading.Lock()  # checkpoints are mirrored from the saver's thread
        self._tmp: Path | None = None
        self.resumed = False

    # -- the tracker protocol -------------------------------------------------------------
    def start(self, run: Any, resumed: bool) -> dict[str, Any]:
        with self._mirroring(f"could not start W&B run {run.run_id}", "nothing of this run is mirrored to W&B"):
            self.run, self.resumed = run, resumed
            before = run.trackers.get(self.name, {})
            mode, chose_offline = choose_mode()
            online_before = before.get("mode") == "online"
            self.wb = self.wandb.init(
                id=run.run_id,
                name=run.run_id,
                job_type="train",
                mode=mode,
                project=self.project or before.get("project") or default_project(),
                entity=self.entity or before.get("entity"),
                resume=("must" if online_before and mode != "offline" else "allow") if resumed else None,
                settings=self.wandb.Settings(reinit="create_new"),  # never finish or hijack a run the caller has open
            )
            self.wb.config.update(run.config, allow_val_change=True)  # a resume may extend epochs
            mode_now = self.wb.settings.mode if self.wb.settings.mode in ("offline", "disabled") else "online"
            online = mode_now == "online"
            self._first_step = self.wb.step if resumed and online else 0
            self._best = run.best_fitness if run.best_fitness is not None else -math.inf
            self.info = {
                "id": self.wb.id,
                "project": self.wb.project,
                "entity": (self.wb.entity if online else None) or None,
                "mode": mode_now,
            }
            if chose_offline:
                logger.warning(
                    "wandb: no W&B API key or login found, so run %s is recorded offline in %s; to upload it later: %s",
                    run.run_id,
                    self.wb.settings.sync_dir,
                    sync_command(self.wb.settings.sync_dir, run.run_id),
                )
            return dict(self.info)

    def log_dataset(self, dataset: Any, store: Any) -> None:
        """Once, after start: the dataset (with --upload-dataset) and, on resume, a catch-up."""
        self.dataset, self.store = dataset, store
        self.dataset_record = store.resolve(dataset.ref)
        if self.upload_dataset:
            with self._mirroring(f"dataset {dataset.ref} not mirrored to W&B"):
                root = Path(dataset.root).absolute()
                artifact = mirror.version_artifact(self.wandb, store, self.dataset_record, root=root)
                for split, table in media.dataset_tables(self.wandb, root, dataset.data_yaml, dataset.digests).items():
                    artifact.add(table, split)
                with self._lock:
                    self._dataset_artifact = self.wb.log_artifact(
                        artifact, aliases=mirror.wandb_aliases(store, self.dataset_record)
                    )
        if self.resumed:
            self._catch_up(store)

    def _catch_up(self, store: Any) -> None:
        """A killed process takes with it what wandb had not yet written or sent. Re-log the
        checkpoint this resume starts from (W&B keeps one version per content, so a copy it has
        costs nothing) and, online, the epochs W&B lacks, from the store's metrics."""
        record = store.latest(self.run.model_artifact)
        if record is None:
            return
        self.log_checkpoint(
            record, [a for a, v in store.aliases(record.name).items() if v == record.version], record.metadata
        )
        if self.info.get("mode") != "online":
            return  # the earlier offline folder's contents are unknown here; `wandb sync` orders the two
        done = int(record.metadata.get("epochs_trained", 0))
        with self._mirroring("metrics of the epochs before the interruption not mirrored to W&B"), self._lock:
            for entry in read_metrics(store, self.run.run_id):
                if self._first_step <= entry["epoch"] <= done:
                    self.wb.log(entry["metrics"], step=entry["epoch"], commit=True)
        self._first_step = max(self._first_step, done + 1)

    def log_epoch(self, epoch: int, metrics: dict[str, float], system: dict[str, float]) -> None:
        if epoch < self._first_step:
            return  # logged before the interruption; a resumed run repeats it bit for bit
        with self._mirroring(f"epoch {epoch} metrics not mirrored to W&B"), self._lock:
            # The epoch's last call (its evaluation came first): the row is complete, commit it.
            # System metrics: wandb samples its own.
            self.wb.log(dict(metrics), step=epoch, commit=True)
            fitness = metrics.get("fitness")
            if fitness is not None and fitness >= self._best:
                self._best = fitness
                self.wb.summary.update(
                    {f"best/{k.split('/', 1)[1]}": v for k, v in metrics.items() if k.startswith("metrics/")}
                )

    def log_evaluation(self, epoch: int, table: dict[str, Any], read_image: Callable[[str], bytes]) -> None:
        if epoch < self._first_step:
            return
        with self._mirroring(f"epoch {epoch} evaluation table and debugger images not mirrored to W&B"):
            refs = self._reference_images(table.get("split", "val"))
            bases: dict[str, Any] = {r["im_id"]: refs[r["path"]] for r in table["rows"] if r["path"] in refs}

            def image_file(row: dict[str, Any]) -> str:
                return self._image_file(row, read_image)

            for row in table["rows"]:
                if row["im_id"] in table["debugger"] and row["im_id"] not in bases:
                    bases[row["im_id"]] = image_file(row)
            artifact = self.wandb.Artifact(
                f"{self.run.run_id}-evaluation",
                type="evaluation",
                metadata={
                    "epoch": epoch,
                    "split": table.get("split"),
                    "dataset": self.dataset.ref if self.dataset else None,
                    "metrics": table.get("metrics", {}),
                    "images": "dataset artifact" if refs else "debugger rows only",
                },
            )
            artifact.add(media.evaluation_table(self.wandb, table, bases), "evaluation")
            debugger = media.debugger_images(self.wandb, table, image_file)
            with self._lock:
                self.wb.log_artifact(artifact, aliases=["latest", f"epoch-{epoch}"])
                self.wb.log({DEBUGGER_KEY: debugger}, step=epoch, commit=False)  # log_epoch commits the row

    def log_checkpoint(self, record: Any, aliases: list[str], metadata: dict[str, Any]) -> None:
        safe = f"it is safe in {self.store.uri}" if self.store is not None else ""
        with self._mirroring(f"checkpoint {record.name}:{record.label} not mirrored to W&B", safe):
            snapshot = self.run.with_(
                epochs_completed=int(metadata.get("epochs_trained", self.run.epochs_completed)),
                status="running",
                trackers={**self.run.trackers, self.name: self.info},
            )
            extra = {"dataset_manifest": self.dataset_record.manifest} if self.dataset_record is not None else {}
            artifact = mirror.version_artifact(
                self.wandb, self.store, record, extra_files={mirror.RUN_FILE: to_json(snapshot)}, extra_meta=extra
            )
            with self._lock:
                self.wb.log_artifact(artifact, aliases=["latest", *aliases])

    def finish(self, status: str) -> None:
        try:
            with self._mirroring(f"W&B run {self.info.get('id')} did not finish cleanly"), self._lock:
                self.wb.finish(exit_code=0 if status == "finished" else 1)
        finally:
            if self._tmp is not None:
                shutil.rmtree(self._tmp, ignore_errors=True)

    # -- helpers --------------------------------------------------------------------------
    @contextlib.contextmanager
    def _mirroring(self, what: str, consequence: str = "") -> Iterator[None]:
        """Turn any SDK failure into one BackendError that says what was not mirrored."""
        try:
            yield
        except Exception as e:  # the tracker boundary: whatever wandb raises, say what it cost
            detail = scrub(f"{type(e).__name__}: {e}")
            raise BackendError(f"{what} ({detail})" + (f"; {consequence}" if consequence else "")) from None

    def _image_file(self, row: dict[str, Any], read_image: Callable[[str], bytes]) -> str:
        """A local file of a table row's image: the dataset folder's, else the store's blob."""
        if self.dataset is not None:
            local = Path(self.dataset.root) / row["path"]
            if local.is_file():
                return str(local.absolute())
        if self._tmp is None:
            self._tmp = Path(tempfile.mkdtemp(prefix="artifactkit-wandb-"))
        target = self._tmp / row["path"]
        if not target.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(read_image(row["image"]))
        return str(target)

    def _reference_images(self, split: str) -> dict[str, Any]:
        """Online: {path: wandb.Image} of the dataset artifact's `split` table, looked up once."""
        if split in self._references:
            return self._references[split]
        self._references[split] = {}
        if self.info.get("mode") != "online" or self.dataset_record is None:
            return {}
        try:
            found = self._dataset_on_wandb()
            used = self.wb.use_artifact(found.qualified_name)
            table = used.get(split)
            self._references[split] = dict(zip(table.get_column("path"), table.get_column("image")))
        except Exception as e:  # the documented fallback: debugger rows only, say why once
            logger.warning(
                "wandb: evaluation tables hold images for the debugger rows only: the %s table of dataset %s "
                "is not on W&B (%s); log it with --upload-dataset or `artifactkit push`",
                split,
                self.dataset_record.name,
                scrub(f"{type(e).__name__}: {e}"),
            )
        return self._references[split]

    def _dataset_on_wandb(self) -> Any:
        if self._dataset_artifact is not None:
            return self._dataset_artifact.wait()  # committed, so it can be used
        from .remote import find_version

        return find_version(self.wandb.Api(), self.wb.entity, self.wb.project, self.dataset_record)
