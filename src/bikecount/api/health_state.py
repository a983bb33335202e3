"""MLflow's reachability for ``/health``, probed in the background so that ``/health`` never waits.

A probe of MLflow takes up to its timeout (2 s) when the tracking server hangs, and load
balancers call ``/health`` often. So ``/health`` answers with what the model cache last learnt of
MLflow: a thread started with the app probes it every ``BIKECOUNT_HEALTH_REFRESH_SECONDS``, and
the cache's own lookups update it too as they meet MLflow (up or down). The answer is at most
that interval plus one probe's timeout old.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from fastapi import FastAPI

from bikecount.api.deps import ApiState

logger = logging.getLogger(__name__)

Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]
# Long enough for a probe in flight to end (its timeout is 2 s); the thread is a daemon anyway.
STOP_WAIT_SECONDS = 5.0


class MlflowWatch:
    """Calls ``check`` every ``interval_seconds`` on a thread of its own, until stopped.

    Args:
        check: probes MLflow and records the answer (the cache's ``check_mlflow``).
        interval_seconds: the pause between two probes.
    """

    def __init__(self, check: Callable[[], object], interval_seconds: float) -> None:
        self.check = check
        self.interval_seconds = interval_seconds
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="mlflow-watch", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, wait_seconds: float = STOP_WAIT_SECONDS) -> None:
        """Stop probing; wait for a probe in flight to end, at most ``wait_seconds``."""
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(wait_seconds)

    def _run(self) -> None:
        while not self._stopping.wait(self.interval_seconds):
            try:
                self.check()
            except Exception:  # a probe that breaks must not end the watch: the next may work
                logger.exception("probing MLflow for /health failed")


@asynccontextmanager
async def watching_mlflow(state: ApiState) -> AsyncIterator[None]:
    """Probe MLflow once before serving (so ``/health`` knows from the first request), then
    in the background while the app serves."""
    await asyncio.to_thread(state.cache.check_mlflow)
    watch = MlflowWatch(state.cache.check_mlflow, state.settings.health_refresh_seconds)
    watch.start()
    try:
        yield
    finally:
        await asyncio.to_thread(watch.stop)


def with_mlflow_watch(lifespan: Lifespan) -> Lifespan:
    """``lifespan``, with MLflow watched for ``/health`` while the app serves."""

    @asynccontextmanager
    async def watched(app: FastAPI) -> AsyncIterator[None]:
        async with lifespan(app), watching_mlflow(app.state.bikecount):
            yield

    return watched
