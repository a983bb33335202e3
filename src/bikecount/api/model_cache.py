"""Models served by one API process: loaded once, re-checked cheaply, kept when MLflow is down.

A request names a model type and, optionally, a metric. Which version that means (the champion,
or the best by the metric) is looked up in the registry at most every
``settings.model_check_seconds``: one alias read, so a new champion is served without a restart.
Loaded models are kept per (model type, version). When the registry cannot be reached the last
known version keeps serving and :meth:`ModelCache.check_mlflow` reports it, for ``/health``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial

from bikecount.api.errors import ModelUnavailableError, NoModelError, redact
from bikecount.config import Settings
from bikecount.inference import load_for_serving
from bikecount.models import get_spec
from bikecount.models.protocol import RecordModel
from bikecount.registry import ModelNotFoundError, Registry, RegistryUnavailableError

logger = logging.getLogger(__name__)

MAX_LOADED_MODELS = 8  # champions of four types, plus a few versions picked by metric

Resolver = Callable[[str, str | None], int]
Loader = Callable[[str, int], RecordModel]
Key = tuple[str, str | None]


@dataclass(frozen=True)
class ServedModel:
    """A loaded model and what it is: its type, its registered version and its task."""

    model_type: str
    version: int
    task: str
    model: RecordModel


@dataclass
class _Selection:
    version: int
    checked_at: float


def no_model_message(model_type: str, metric: str | None, reason: str) -> str:
    """The registry's reason, and for a missing champion how to train one over HTTP."""
    if metric is not None:
        return reason
    body = f'{{"model_type": "{model_type}", "data_source": "reference"}}'
    return f"{reason} (over HTTP: POST /train {body})"


class ModelCache:
    """Thread-safe cache of served models; see the module docstring.

    Args:
        settings: the re-check interval, and the tracking URI named when MLflow is down.
        resolve: (model type, metric or None) -> version.
        load: (model type, version) -> fitted model.
        probe: whether MLflow answers.
        clock: seconds, for the re-check interval.
        on_champion: called with (model type, version) when a new champion is served, e.g. to
            set the Prometheus champion gauges.

    :meth:`from_registry` wires the first three to a registry, as the APIs serve.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        resolve: Resolver,
        load: Loader,
        probe: Callable[[], bool],
        clock: Callable[[], float] = time.monotonic,
        on_champion: Callable[[str, int], None] | None = None,
    ) -> None:
        self.settings = settings
        self._resolve = resolve
        self._load = load
        self._probe = probe
        self._clock = clock
        self._on_champion = on_champion
        self._lock = threading.Lock()
        self._key_locks: dict[object, threading.Lock] = {}
        self._selections: dict[Key, _Selection] = {}
        self._models: OrderedDict[tuple[str, int], RecordModel] = OrderedDict()
        self.mlflow_reachable: bool | None = None

    @classmethod
    def from_registry(
        cls,
        settings: Settings,
        registry: Registry,
        on_champion: Callable[[str, int], None] | None = None,
    ) -> ModelCache:
        """A cache that looks versions up in ``registry`` (the champion, or the best by a
        metric), loads them from it tuned for serving, and probes its ``/health``."""
        return cls(
            settings,
            resolve=lambda model_type, metric: registry.choose_version(model_type, metric=metric),
            load=partial(load_for_serving, registry),
            probe=registry.is_reachable,
            on_champion=on_champion,
        )

    def check_mlflow(self) -> bool:
        """Probe the tracking server now and remember the answer."""
        self.mlflow_reachable = self._probe()
        return self.mlflow_reachable

    def get(self, model_type: str, metric: str | None = None) -> ServedModel:
        """The model to serve for a model type (its champion, or its best version by ``metric``).

        Raises:
            NoModelError: no champion (or no version with that metric) is registered.
            ModelUnavailableError: MLflow is unreachable and nothing is cached for the request.
        """
        key: Key = (model_type, metric)
        with self._lock_for(("select", key)):
            with self._lock:
                previous = self._selections.get(key)
            now = self._clock()
            if previous and now - previous.checked_at < self.settings.model_check_seconds:
                return self._served(model_type, previous.version)
            version = self._select(key, previous)
            try:
                served = self._served(model_type, version)
            except ModelUnavailableError:
                if previous is None or previous.version == version:
                    raise
                logger.warning(
                    "%s v%d failed to load: keeping v%d", model_type, version, previous.version
                )
                previous.checked_at = now
                return self._served(model_type, previous.version)
            with self._lock:
                self._selections[key] = _Selection(version, now)
            if (
                metric is None
                and self._on_champion
                and (previous is None or previous.version != version)
            ):
                self._on_champion(model_type, version)
            return served

    def peek(self, model_type: str, metric: str | None = None) -> ServedModel | None:
        """The model :meth:`get` would serve now, if it can be had without asking MLflow or
        loading anything; None when it cannot (not loaded yet, or due for its re-check).

        Never waits on the registry nor on a load: a caller on the event loop takes the model
        from here, and calls :meth:`get` on a worker thread when this answers None.
        """
        key: Key = (model_type, metric)
        with self._lock:
            selection = self._selections.get(key)
            if selection is None:
                return None
            if self._clock() - selection.checked_at >= self.settings.model_check_seconds:
                return None
            model = self._models.get((model_type, selection.version))
            if model is None:
                return None
            self._models.move_to_end((model_type, selection.version))
        return ServedModel(model_type, selection.version, get_spec(model_type).task, model)

    def champion_versions(self, model_types: Iterable[str]) -> dict[str, int | None]:
        """The champion version loaded per model type (None: none loaded yet)."""
        with self._lock:
            loaded = {
                key[0]: selection.version
                for key, selection in self._selections.items()
                if key[1] is None and (key[0], selection.version) in self._models
            }
        return {model_type: loaded.get(model_type) for model_type in model_types}

    def invalidate(self, model_type: str) -> None:
        """Forget which versions a model type serves (after a training): re-check on next use."""
        with self._lock:
            for key in [key for key in self._selections if key[0] == model_type]:
                del self._selections[key]

    def clear(self, model_type: str | None = None) -> int:
        """Drop loaded models and selections (of one type, or all); return how many models."""
        with self._lock:
            dropped = [key for key in self._models if model_type in (None, key[0])]
            for key in dropped:
                del self._models[key]
            for selection in [key for key in self._selections if model_type in (None, key[0])]:
                del self._selections[selection]
        logger.info("model cache cleared (%d models dropped)", len(dropped))
        return len(dropped)

    def reload(self, model_types: Iterable[str]) -> tuple[int, dict[str, int | None]]:
        """Drop the given types' models and load their champions again.

        Returns:
            (how many models were dropped, the champion version now loaded per type)

        Raises:
            ModelUnavailableError: MLflow is unreachable; the cache is kept as it is.
        """
        types = tuple(model_types)
        if not self.check_mlflow():
            raise ModelUnavailableError("MLflow cannot be reached: the cached models are kept")
        cleared = sum(self.clear(model_type) for model_type in types)
        self.preload(types)
        return cleared, self.champion_versions(types)

    def preload(self, model_types: Iterable[str]) -> None:
        """Load the champions that exist, so that the first requests do not wait for them."""
        for model_type in model_types:
            try:
                served = self.get(model_type)
                logger.info("serving %s v%d", model_type, served.version)
            except (NoModelError, ModelUnavailableError) as exc:
                logger.info("not serving %s yet: %s", model_type, exc)
            except Exception:  # preloading is a convenience: requests will retry and report
                logger.exception("could not preload %s", model_type)

    def _select(self, key: Key, previous: _Selection | None) -> int:
        """The version the registry names now; the previous one when it cannot be asked."""
        model_type, metric = key
        if not self.check_mlflow():
            return self._fallback(key, previous)
        try:
            return self._resolve(model_type, metric)
        except ModelNotFoundError as exc:
            raise NoModelError(no_model_message(model_type, metric, str(exc))) from None
        except RegistryUnavailableError as exc:
            logger.warning("registry lookup for %s failed: %s", model_type, redact(str(exc)))
            self.mlflow_reachable = False
            return self._fallback(key, previous)
        except Exception as exc:  # anything else MLflow raises: serve what we have
            logger.warning("registry lookup for %s failed: %s", model_type, redact(str(exc)))
            self.mlflow_reachable = False
            return self._fallback(key, previous)

    def _fallback(self, key: Key, previous: _Selection | None) -> int:
        if previous is None:
            uri = redact(self.settings.tracking_uri)
            raise ModelUnavailableError(
                f"MLflow at {uri} cannot be reached and no {key[0]} model is loaded yet; "
                "retry when the tracking server is up"
            )
        logger.warning("MLflow unreachable: serving cached %s v%d", key[0], previous.version)
        return previous.version

    def _model(self, model_type: str, version: int) -> RecordModel:
        key = (model_type, version)
        with self._lock_for(("load", key)):
            with self._lock:
                if key in self._models:
                    self._models.move_to_end(key)
                    return self._models[key]
            started = time.perf_counter()
            try:
                model = self._load(model_type, version)
            except Exception as exc:
                logger.exception("loading %s v%d failed", model_type, version)
                raise ModelUnavailableError(
                    f"{model_type} v{version} could not be loaded from the registry"
                ) from exc
            logger.info(
                "loaded %s v%d in %.1f s", model_type, version, time.perf_counter() - started
            )
            with self._lock:
                self._models[key] = model
                while len(self._models) > MAX_LOADED_MODELS:
                    self._models.popitem(last=False)
            return model

    def _served(self, model_type: str, version: int) -> ServedModel:
        return ServedModel(
            model_type, version, get_spec(model_type).task, self._model(model_type, version)
        )

    def _lock_for(self, key: object) -> threading.Lock:
        with self._lock:
            return self._key_locks.setdefault(key, threading.Lock())
