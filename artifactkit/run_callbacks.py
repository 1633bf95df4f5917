"""The store's side of a training run: what the trainer's callbacks write, at the moments it
calls them (epoch end, validation, checkpoint, stop, finish), through the run holder's fenced store.

The detector knows nothing of this; session.py wires a Trainer to one RunCallbacks.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable

from . import checkpoint, datasets
from .errors import ArtifactkitError, RunHeld
from .evaluation import build_table, table_bytes
from .lease import Lease
from .lifecycle import FULL_STATE, Retention, full_state_name, prune, thin_history
from .records import now_iso
from .runs import (
    RunRecord,
    error_line,
    save_run,
    write_epoch_metrics,
)
from .store import Store
from .tracking import FanOut, SystemMonitor
from .uri import run_uri

# (event, details): how a caller hears about progress (training_lines.py turns them into words)
Report = Callable[[str, dict[str, Any]], None]

# What only resume needs, kept in the full state (<run>-state) of the newest checkpoints alone
# (TrainConfig.keep_full); a checkpoint keeps the rest: EMA weights, epoch, config (thin history).
# `partial` is a mid-epoch checkpoint's position, running sums and pending gradients.
RESUME_ONLY = ("model", "optimizer", "scheduler", "rng", "partial")
BATCH_REPORT_S = 0.5  # batch events at most this often: each reads the running losses off the device


class RunCallbacks:
    """Trainer callbacks that write the run into the store and mirror it to trackers."""

    def __init__(
        self,
        store: Store,
        run: RunRecord,
        dataset: datasets.LocalDataset,
        trackers: FanOut,
        report: Report,
        lease: Lease | None = None,
    ):
        self.store, self.run, self.dataset, self.trackers, self.report = store, run, dataset, trackers, report
        self.lease = lease  # held for the whole run; renewed at each epoch end and by the heartbeat
        self.saver = checkpoint.BackgroundSaver(store, run.model_artifact)
        self.monitor = SystemMonitor()
        self.saved_epoch = -1
        self._batch_reported = 0.0
        # The run record claims an epoch only once the checkpoint save-period asks for is
        # committed: while one is in flight the record waits (`recorded` is what it says now).
        self.recorded = run
        self._awaiting_checkpoint = False
        self._record_lock = threading.Lock()
        self._last_save = time.monotonic()  # --save-every counts from here
        self._saved_at: tuple[int, int] | None = None  # (epochs done, batch) of the last mid-epoch save

    def on_train_start(self, trainer) -> None:
        self._last_save = time.monotonic()
        self.report("train_start", {"epoch": trainer.epoch, "epochs": trainer.config.epochs})

    def on_batch_end(self, trainer, p) -> None:
        now = time.monotonic()
        every = trainer.config.save_every
        if every and p.batch < p.batches and now - self._last_save >= every:
            self.save_mid_epoch(trainer)
        if p.batch < p.batches and now - self._batch_reported < BATCH_REPORT_S:
            return
        self._batch_reported = now
        img_s = p.images / p.seconds if p.seconds > 0 else 0.0
        self.report(
            "batch",
            {
                "epoch": p.epoch,
                "epochs": p.epochs,
                "batch": p.batch,
                "batches": p.batches,
                "images": p.images,
                "img_s": img_s,
                "losses": p.losses(),
                "eta_s": p.seconds / p.batch * (p.batches - p.batch),
            },
        )

    def on_validation(self, trainer, epoch: int, result) -> None:
        cfg = trainer.config
        if result.split != "val" or not cfg.bbox_interval:
            return
        if epoch % cfg.bbox_interval and epoch != cfg.epochs:
            return
        table = build_table(epoch, result, str(self.dataset.root), self.dataset.digests, cfg.seed, result.names)
        self.store.log_files(
            {"table.json": table_bytes(table)},
            name=f"{self.run.run_id}-evaluation",
            type="evaluation",
            aliases=(f"epoch-{epoch}",),
            metadata={"epoch": epoch, "dataset": self.dataset.ref},
            run_id=self.run.run_id,
            dedup_latest=False,
        )
        self.trackers.call("log_evaluation", epoch, table, self.store.read_blob)

    def on_epoch_end(self, trainer, epoch: int, metrics: dict[str, float]) -> None:
        if self.lease is not None:  # another process took the run over: write nothing more
            self.lease.renew()
            self.lease.check(run_uri(self.store.uri, self.run.run_id))
        system = self.monitor.sample()
        write_epoch_metrics(
            self.store,
            self.run.run_id,
            epoch,
            {"epoch": epoch, "step": trainer.step, "time": now_iso(), "metrics": metrics, "system": system},
        )
        self.trackers.call("log_epoch", epoch, metrics, system)
        best = bool(getattr(trainer, "is_best", False))
        period = trainer.config.save_period
        # A better epoch is always kept, whatever the period: `best` is what predict, val and export take.
        checkpointed = bool(
            best or (period and epoch % period == 0) or epoch == trainer.config.epochs or trainer.stop_reason
        )
        if checkpointed:
            self.saver.wait()  # the previous checkpoint lands, and its epoch is recorded, first
        self._advance(
            self.run.with_(
                epochs_completed=epoch,
                total_epochs=trainer.config.epochs,
                best_fitness=trainer.best_fitness,
                best_metrics={k: v for k, v in metrics.items() if k.startswith("metrics/")}
                if best
                else self.run.best_metrics,
                stopped_early=trainer.stop_reason,
            ),
            awaiting_checkpoint=checkpointed,
        )
        self.report("epoch", {"epoch": epoch, "epochs": trainer.config.epochs, "metrics": metrics})
        if trainer.stop_reason:
            self.report("stopped", {"epoch": epoch, "reason": trainer.stop_reason})
        if checkpointed:
            self.save(trainer, epoch, metrics, best)

    def on_stop(self, trainer) -> None:
        """A stop was asked for (a signal): save where training stands, unless just saved."""
        if trainer.batch and self._saved_at != (trainer.epoch, trainer.batch):
            self.save_mid_epoch(trainer)
        elif self.saved_epoch != trainer.epoch and trainer.epoch:
            self.save(trainer, trainer.epoch, trainer.metrics, best=False)

    def _advance(self, run: RunRecord, awaiting_checkpoint: bool) -> None:
        """The run moved on: record it now, or, while a checkpoint it needs is in flight, once
        that checkpoint is committed (_checkpoint_committed), so a kill in between leaves a
        record that claims only epochs whose checkpoint exists."""
        with self._record_lock:
            self.run = run
            self._awaiting_checkpoint = self._awaiting_checkpoint or awaiting_checkpoint
            if not self._awaiting_checkpoint:
                save_run(self.store, run)
                self.recorded = run

    def _checkpoint_committed(self) -> None:
        with self._record_lock:
            self._awaiting_checkpoint = False
            save_run(self.store, self.run)
            self.recorded = self.run

    def save(self, trainer, epoch: int, metrics: dict[str, float], best: bool) -> None:
        aliases = [f"epoch-{epoch}"] + (["best"] if best else [])
        self._save(
            trainer,
            aliases,
            {"epochs_trained": epoch, "fitness": metrics.get("fitness"), "metrics": metrics},
            {"epoch": epoch},
        )
        self.saved_epoch = epoch

    def save_mid_epoch(self, trainer) -> None:
        """A checkpoint inside an epoch: `latest` only (epoch-<E> and best name whole epochs)."""
        if self.lease is not None:  # as at an epoch end: a process that lost the run writes nothing more
            self.lease.renew()
            self.lease.check(run_uri(self.store.uri, self.run.run_id))
        self._saved_at = (trainer.epoch, trainer.batch)
        self._save(
            trainer,
            [],
            {"epochs_trained": trainer.epoch, "batch": trainer.batch, "batches": trainer.batches},
            {"epoch": trainer.epoch + 1, "batch": trainer.batch, "batches": trainer.batches},
        )

    def _save(self, trainer, aliases: list[str], position: dict[str, Any], event: dict[str, Any]) -> None:
        metadata = {
            **position,
            "total_epochs": trainer.config.epochs,
            "dataset": self.dataset.ref,
            "model": trainer.config.model,
            "names": list(trainer.data.names),  # what predict and export label boxes with
        }

        cfg = trainer.config
        rules = Retention(cfg.keep_last, cfg.keep_within, cfg.keep_daily, cfg.keep_weekly)

        def saved(result) -> None:
            self._checkpoint_committed()
            self.trackers.call("log_checkpoint", result.record, aliases, metadata)
            full = result.record.metadata.get(FULL_STATE)
            if full is not None:  # mirrors get the full state too: `resume wandb-artifact://` needs it
                self.trackers.call(
                    "log_checkpoint", self.store.resolve(full), [a for a in aliases if a.startswith("epoch-")], metadata
                )
            pruned = self._retain(rules) if rules.any else []
            self._thin(cfg.keep_full)
            self.report(
                "checkpoint",
                {
                    "version": f"{result.record.name}:{result.record.label}",
                    **event,
                    "aliases": ["latest", *aliases],
                    "uploaded_bytes": result.uploaded_bytes,
                    "pruned": pruned,
                },
            )

        self.saver.save(
            trainer.state_dict(),
            then=saved,
            full=full_state_name(self.run.run_id),
            drop=RESUME_ONLY,
            aliases=tuple(aliases),
            metadata=metadata,
            run_id=self.run.run_id,
        )
        self._last_save = time.monotonic()

    def _retain(self, rules: Retention) -> list[str]:
        """The --keep-* rules after a checkpoint committed (on the saver's thread). A failure to
        prune costs disk space, not the run: it is a warning, and the next checkpoint tries again."""
        try:
            return prune(
                self.store,
                self.run.model_artifact,
                rules.last,
                keep_within=rules.within,
                keep_daily=rules.daily,
                keep_weekly=rules.weekly,
            ).versions
        except ArtifactkitError as e:
            self.report("warning", {"message": f"checkpoint retention: {e}"})
            return []

    def _thin(self, keep_full: int) -> None:
        """Thin history after a checkpoint committed: older checkpoints' full states go. As
        retention: a failure costs disk space (a warning), never the run."""
        try:
            thin_history(self.store, self.run.model_artifact, full_state_name(self.run.run_id), keep_full)
        except ArtifactkitError as e:
            self.report("warning", {"message": f"thin history (keep-full {keep_full}): {e}"})

    def finish(self, status: str, error: str | None = None) -> None:
        """Record how the run ended; not if another process took it over (the record is theirs)."""
        try:
            self.saver.close()  # the last upload must land (or raise) before the run says finished
        except BaseException as e:
            if status == "finished":  # a run whose last checkpoint did not land has failed
                status, error = "failed", error_line(e)
            elif isinstance(e, RunHeld):  # taken over: the error being raised already says so
                return
            raise
        finally:
            if self.lease is None or self.lease.lost is None:
                # A checkpoint that never committed: the record keeps the epochs it can resume.
                ended = self.recorded if self._awaiting_checkpoint else self.run
                self.run = ended.with_(status=status, error=error)
                save_run(self.store, self.run)
            self.trackers.call("finish", status)
