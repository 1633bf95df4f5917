"""A stop saves: SIGINT (Ctrl-C), SIGTERM (spot instances, Kubernetes, Slurm at the time limit)
and SIGUSR1 (Slurm's --signal) ask the trainer to stop at its next batch boundary, where it saves
the exact state and raises Stopped. A second signal stops at once, without saving.

The save is bounded: if it has not landed `grace` seconds after the first signal (a batch or a
validation pass longer than that, a slow store), the process exits with 128 + signum without it.
Nothing is lost but the work since the last checkpoint: a save cut off leaves no version (the
store's crash safety), and the run, whose holder is gone, reads as `interrupted`. The grace is an
optimisation against the scheduler's SIGKILL, not a guarantee: the checkpoint's commit is.

Handlers are installed only in the main thread (Python delivers signals there alone); elsewhere
this does nothing and a signal does what it did before.
"""

from __future__ import annotations

import os
import signal
import threading
from typing import Any, Callable

from .errors import Stopped

STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGUSR1") if hasattr(signal, name))


class StopOnSignals:
    """Context manager: while inside, a stop signal asks the attached trainer to stop."""

    def __init__(self, grace: float, say: Callable[[str], None]):
        self.grace, self.say = grace, say
        self.trainer: Any = None
        self.signum: int | None = None  # the first stop signal received
        self._previous: dict[int, Any] = {}
        self._timer: threading.Timer | None = None

    def __enter__(self) -> "StopOnSignals":
        if threading.current_thread() is threading.main_thread():
            for signum in STOP_SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        if self._timer is not None:
            self._timer.cancel()

    def attach(self, trainer: Any) -> None:
        """From now on a signal asks `trainer` to stop (before: it stops at once, nothing to save)."""
        self.trainer = trainer

    def _handle(self, signum: int, frame: Any) -> None:
        name = signal.Signals(signum).name
        if self.signum is not None or self.trainer is None:
            what = "second signal" if self.signum is not None else "before training started"
            raise Stopped(f"{name} ({what}): stopped at once, without saving", signum)
        self.signum = signum
        self.trainer.request_stop(name, signum)
        limit = f"within {self.grace:g} s" if self.grace else "however long it takes"
        # Said from another thread: printing here could re-enter a print the main thread is in.
        self._later(
            f"{name}: saving at the next batch boundary, then stopping ({limit}); "
            "a second signal (Ctrl-C again) stops at once, without saving"
        )
        if self.grace:
            self._timer = threading.Timer(self.grace, self._expire, (name, signum))
            self._timer.daemon = True
            self._timer.start()

    def _later(self, message: str) -> None:
        threading.Thread(target=self.say, args=(message,), daemon=True).start()

    def _expire(self, name: str, signum: int) -> None:
        self.say(
            f"{name}: no checkpoint within --stop-grace {self.grace:g} s: exiting without it; "
            "the run resumes from its last checkpoint"
        )
        os._exit(128 + signum)
