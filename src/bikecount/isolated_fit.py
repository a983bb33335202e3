"""Fit a model in a child process, so that a fit in progress can be stopped.

scikit-learn's forests and boosting have no hook to stop a fit half-way, and a thread cannot be
killed; a process can. :func:`fit_isolated` sends the unfitted model and its rows to a child
(started from a fork server, which has the model libraries imported and never ran threads of
its own), waits for the fitted model while checking a :class:`~bikecount.stopping.StopToken`,
and kills the child at once when the token says stop. It also keeps a fit's peak memory out of
the calling process (an API serving predictions): only the fitted model comes back, and a fit
that runs out of memory takes down the child, not the server.

The child follows the caller's OpenMP thread limit and the calling thread's priority (an API
runs its trainings in threads of low priority, :func:`lower_thread_priority`, so that a fit never
starves the requests it serves), and dies with the caller: a lifeline pipe closes when the
caller does, killed or not. The fitted model comes back as plain pickle bytes (as
MLflow will store it), not through multiprocessing's own pickler, which would hand PyTorch
tensors over as shared-memory handles that die with the child.

Like every multiprocessing start method but fork, the child imports the caller's main script:
a script that calls ``train()`` needs the ``if __name__ == "__main__":`` guard (console
scripts, ``python -m`` modules and notebooks have it, or need none).
"""

from __future__ import annotations

import atexit
import logging
import multiprocessing
import os
import pickle
import signal
import threading
from contextlib import nullcontext, suppress
from multiprocessing.connection import Connection
from multiprocessing.context import ForkServerContext, ForkServerProcess
from typing import TYPE_CHECKING

from threadpoolctl import threadpool_info, threadpool_limits

from bikecount.stopping import StopToken

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from bikecount.models.protocol import RecordModel

logger = logging.getLogger(__name__)

POLL_SECONDS = 0.2
# Imported once by the fork server, so that each fit starts in milliseconds, not seconds:
# PyTorch takes seconds to import, and its optimizers import torch._dynamo when first made.
PRELOAD = [
    "bikecount.isolated_fit",
    "bikecount.models.trees",
    "bikecount.models.affluence",
    "bikecount.models.neural",
    "torch._dynamo",
]


class FitProcessError(RuntimeError):
    """The fit's process died without an answer (killed, out of memory)."""


def _context() -> ForkServerContext:
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(PRELOAD)
    if not _stop_at_exit.is_set():
        _stop_at_exit.set()
        atexit.register(_stop_fork_server)
    return context


_stop_at_exit = threading.Event()


def _stop_fork_server() -> None:
    """Stop the fork server and the resource tracker it started, and wait for them, so that
    neither outlives this process: left alone, each exits only once it notices this process
    gone, the fork server seconds later with PyTorch loaded."""
    from multiprocessing import forkserver, resource_tracker

    for module, name in ((forkserver, "_forkserver"), (resource_tracker, "_resource_tracker")):
        with suppress(Exception):  # private methods of the standard library: best effort
            getattr(module, name)._stop()


def warm_up() -> None:
    """Start the fork server now (it takes seconds), so the first fit starts at once; a server
    that will train calls this at start-up, in the background."""
    from multiprocessing import forkserver

    _context()
    forkserver.ensure_running()


def thread_niceness() -> int:
    """The calling thread's nice value (Linux keeps one per thread; elsewhere, the process's)."""
    try:
        return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    except OSError:
        return os.getpriority(os.PRIO_PROCESS, 0)


def lower_thread_priority(niceness: int) -> None:
    """Run the calling thread at ``niceness`` at least from now on; what it starts (threads,
    :func:`fit_isolated`'s children) inherits it. The rest of the process keeps its priority on
    Linux; where priority is per process only, nothing changes. A priority is never raised."""
    with suppress(OSError):  # no such thread id outside Linux
        if thread_niceness() < niceness:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), niceness)


def fit_isolated(
    model: RecordModel, X: pd.DataFrame, y: np.ndarray, stop: StopToken, stage: str = "fitting"
) -> RecordModel:
    """``model.fit(X, y)`` in a child process at the calling thread's priority; return the
    fitted model.

    Raises:
        TrainingCancelledError, TrainingTimeoutError: ``stop`` said stop (the child is killed).
        FitProcessError: the child died without an answer.
        Exception: whatever ``fit`` raised in the child.
    """
    stop.check(stage)
    context = _context()
    receiver, sender = context.Pipe(duplex=False)
    lifeline, keep_alive = context.Pipe(duplex=False)
    process = context.Process(
        target=_fit_child,
        args=(model, X, y, sender, lifeline, _openmp_threads(), thread_niceness()),
        name="bikecount-fit",
        daemon=True,
    )
    process.start()
    sender.close()
    lifeline.close()
    try:
        _, payload = _wait_for_answer(process, receiver, stop, stage)
    finally:
        if process.is_alive():
            process.kill()
        process.join(timeout=10)
        receiver.close()
        keep_alive.close()
    if isinstance(payload, BaseException):  # the child answered ("error", exception)
        raise payload
    return payload


# What the child sends back: ("ok", the fitted model) or ("error", what fit raised).
Answer = tuple[str, "RecordModel | BaseException"]


def _wait_for_answer(
    process: ForkServerProcess, receiver: Connection, stop: StopToken, stage: str
) -> Answer:
    while True:
        if receiver.poll(POLL_SECONDS):
            try:
                return pickle.loads(receiver.recv_bytes())
            except EOFError:  # closed without an answer: the process died
                break
        if not process.is_alive() and not receiver.poll(0):
            break
        stop.check(stage)
    process.join(timeout=5)
    raise FitProcessError(
        f"the fitting process ended without a model (exit code {process.exitcode}; "
        "killed, or out of memory?)"
    )


def _openmp_threads() -> int | None:
    """The caller's OpenMP thread limit, if OpenMP is loaded (None: the child's default)."""
    limits = [info["num_threads"] for info in threadpool_info() if info["user_api"] == "openmp"]
    return min(limits) if limits else None


def _fit_child(
    model: RecordModel,
    X: pd.DataFrame,
    y: np.ndarray,
    sender: Connection,
    lifeline: Connection,
    openmp_threads: int | None,
    niceness: int,
) -> None:
    # First, so that every thread started below (OpenMP's, PyTorch's) inherits it.
    lower_thread_priority(niceness)
    # The caller handles Ctrl-C (it reaches the whole terminal's process group) and kills us.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_exit_when_orphaned, args=(lifeline,), daemon=True).start()
    limits = threadpool_limits(openmp_threads, "openmp") if openmp_threads else nullcontext()
    try:
        with limits:
            model.fit(X, y)
        answer: Answer = ("ok", model)
    except Exception as exc:  # sent back and raised again by the caller
        answer = ("error", exc)
    try:
        payload = pickle.dumps(answer, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as exc:  # e.g. an exception that does not pickle
        error = RuntimeError(f"{type(exc).__name__}: {exc}")
        payload = pickle.dumps(("error", error), protocol=pickle.HIGHEST_PROTOCOL)
    sender.send_bytes(payload)
    sender.close()


def _exit_when_orphaned(lifeline: Connection) -> None:
    try:
        lifeline.recv()
    except (EOFError, OSError):
        pass
    os._exit(1)
