"""Stopping a training: a token that a caller cancels or a deadline expires, checked by
``train()`` between its stages and by :func:`bikecount.isolated_fit.fit_isolated` while a model
fits, and what a stopped training leaves in MLflow.

A cancelled run (``DELETE /train/{job_id}``, Ctrl-C of ``bikecount train``) is marked KILLED; a
run past its time limit is marked FAILED; both carry a ``stopped_because`` tag. Neither reaches
the champion decision, so the champion is untouched.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

logger = logging.getLogger(__name__)

STOPPED_TAG = "stopped_because"


class TrainingStoppedError(Exception):
    """A training stopped before its end; ``run_id`` is its MLflow run, if one was started."""

    run_status = "FAILED"

    def __init__(self, message: str, run_id: str | None = None) -> None:
        super().__init__(message)
        self.run_id = run_id


class TrainingCancelledError(TrainingStoppedError):
    """A caller cancelled the training (an API request, Ctrl-C)."""

    run_status = "KILLED"


class TrainingTimeoutError(TrainingStoppedError):
    """The training ran past its time limit."""


class StopToken:
    """Asks a training to stop: when :meth:`cancel` is called, or once ``time_limit`` seconds
    have passed since the token was made. Thread-safe: a request thread cancels, the training
    thread checks.

    Args:
        time_limit: seconds the training may take in all (None: no limit).
        clock: the monotonic clock (tests pass their own).
    """

    def __init__(
        self, time_limit: float | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._clock = clock
        self.time_limit = time_limit
        self.deadline = None if time_limit is None else self._clock() + time_limit
        self._cancelled = threading.Event()
        self._reason = ""

    def cancel(self, reason: str = "cancelled") -> None:
        """Ask the training to stop at its next check (a fit in progress is ended at once)."""
        self._reason = reason
        self._cancelled.set()

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def expired(self) -> bool:
        return self.deadline is not None and self._clock() >= self.deadline

    def check(self, stage: str) -> None:
        """Raise if the training must stop; ``stage`` says where it was.

        Raises:
            TrainingCancelledError: :meth:`cancel` was called.
            TrainingTimeoutError: the time limit has passed.
        """
        if self.cancelled:
            raise TrainingCancelledError(f"{self._reason} ({stage})")
        if self.expired():
            raise TrainingTimeoutError(
                f"training stopped after its time limit of {self.time_limit:g} s "
                f"(BIKECOUNT_TRAIN_TIME_LIMIT_SECONDS) while {stage}"
            )


@contextmanager
def marking_stopped_run() -> Iterator[None]:
    """Inside ``mlflow.start_run()``: end the active run as KILLED (cancelled, Ctrl-C) or
    FAILED (time limit) with a ``stopped_because`` tag, then let the stop go on.

    Ctrl-C (KeyboardInterrupt) leaves as a :class:`TrainingCancelledError`, so callers handle
    one kind of stop. MLflow then leaves the run as it was ended here.
    """
    # Imported here: fitting processes import this module and need no MLflow.
    import mlflow

    try:
        yield
    except (TrainingStoppedError, KeyboardInterrupt) as exc:
        stop = exc if isinstance(exc, TrainingStoppedError) else None
        stop = stop or TrainingCancelledError("interrupted (Ctrl-C)")
        run = mlflow.active_run()
        if run is not None:
            stop.run_id = run.info.run_id
            try:
                mlflow.set_tag(STOPPED_TAG, str(stop)[:5000])
                mlflow.end_run(stop.run_status)
            except Exception:  # MLflow down: the run stays as it is, the stop goes on
                logger.exception("could not mark run %s %s", stop.run_id, stop.run_status)
            logger.warning("run %s marked %s: %s", stop.run_id, stop.run_status, stop)
        if stop is exc:
            raise
        raise stop from exc
