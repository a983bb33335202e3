"""First start on an empty machine: make the data sets, then train a first model of every type.

Runs once the MLflow server is up and before the APIs start, so that ``/predict`` answers at once.
Later starts find the data and the champions and do nothing. Once the stack is up,
:class:`~bikecount.stack.background.BackgroundWork` fills an empty pipeline store and replaces
the fast first models by full ones.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field

from bikecount.config import DATASET_FILES, Settings
from bikecount.data.prepare import prepare_datasets
from bikecount.models import MODEL_TYPES
from bikecount.registry import Registry, RegistryUnavailableError
from bikecount.stack.processes import StackError
from bikecount.train import TrainRequest, TrainResult, train

logger = logging.getLogger(__name__)


def _log_message(message: str) -> None:
    logger.info(message)


def _ignore(*args: object) -> None:
    return None


def _log_trained(model_type: str, result: TrainResult | None, error: Exception | None) -> None:
    if error is not None:
        logger.warning("first %s model failed: %s", model_type, error)
    elif result is not None:
        logger.info("first %s model: version %d", model_type, result.version)


class BootstrapError(StackError):
    """The first-start work could not be done (data sets, or asking MLflow what is registered)."""


@dataclass
class BootstrapHooks:
    """Callbacks through which the bootstrap reports progress (the CLI draws them).

    Attributes:
        on_message: a sentence about what was found or done.
        on_training: the model types about to be trained, once, before the first one.
        on_stage: (model type, stage) while one trains.
        on_trained: (model type, result or None, error or None) when one is done.
        chatter: a context manager around each training, for what MLflow prints.
    """

    on_message: Callable[[str], None] = _log_message
    on_training: Callable[[Sequence[str]], None] = _ignore
    on_stage: Callable[[str, str], None] = _ignore
    on_trained: Callable[[str, TrainResult | None, Exception | None], None] = _log_trained
    # Wraps each first training: the CLI sends MLflow's prints ("🏃 View run ...") to a log.
    chatter: Callable[[], AbstractContextManager[object]] = nullcontext


@dataclass
class BootstrapReport:
    """What the bootstrap did: data made or not, models trained, failed and reused."""

    data_prepared: bool = False
    trained: dict[str, TrainResult] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    reused: list[str] = field(default_factory=list)


def data_missing(settings: Settings) -> bool:
    """Whether any of the three data sets is missing."""
    return not all(settings.dataset_path(name).is_file() for name in DATASET_FILES)


def server_settings(settings: Settings, tracking_uri: str) -> Settings:
    """The stack's settings, pointed at its MLflow server."""
    return settings.model_copy(update={"mlflow_tracking_uri": tracking_uri})


def types_without_champion(registry: Registry, model_types: Sequence[str]) -> list[str]:
    """The model types with no champion in ``registry``.

    Raises:
        RegistryUnavailableError: MLflow could not be asked (never read as "no champion").
    """
    return [t for t in model_types if registry.champion(t) is None]


def bootstrap(
    settings: Settings,
    registry: Registry,
    hooks: BootstrapHooks | None = None,
    model_types: Sequence[str] = MODEL_TYPES,
) -> BootstrapReport:
    """Make missing data sets and train first models (test mode) for types without a champion.

    A model that fails to train is reported, not raised: the stack still starts, and that type
    answers "no model" until one is trained.

    Raises:
        BootstrapError: the data sets could not be made, or the registry could not be read.

    Args:
        settings: the stack's settings (data folder, seed, env, training limits).
        registry: the running MLflow server, where models are looked up and registered.
        hooks: progress callbacks.
        model_types: the types that should have a model.
    """
    hooks = hooks or BootstrapHooks()
    report = BootstrapReport()
    if data_missing(settings):
        hooks.on_message(f"no data sets in {settings.data_dir}/: preparing them")
        try:
            prepare_datasets(settings, on_stage=hooks.on_message)
        except (OSError, ValueError) as exc:
            raise BootstrapError(f"could not prepare the data sets: {exc}") from exc
        report.data_prepared = True
    try:
        missing = types_without_champion(registry, model_types)
    except RegistryUnavailableError as exc:  # MLflow answered /health but not the registry
        raise BootstrapError(f"could not list the models registered in MLflow: {exc}") from exc
    report.reused = [t for t in model_types if t not in missing]
    if report.reused:
        hooks.on_message(f"models found for {', '.join(report.reused)}: reusing them")
    if not missing:
        return report
    hooks.on_message(f"no model registered for {', '.join(missing)}: training first models")
    hooks.on_training(missing)
    for model_type in missing:
        _train_first(model_type, settings, registry, hooks, report)
    return report


def _train_first(
    model_type: str,
    settings: Settings,
    registry: Registry,
    hooks: BootstrapHooks,
    report: BootstrapReport,
) -> None:
    # Fast settings on the test sample: seconds per model, good enough to answer /predict.
    request = TrainRequest(
        model_type=model_type, data_source="reference", env=settings.env, test_mode=True
    )
    try:
        with hooks.chatter():
            result = train(
                request,
                settings,
                registry,
                on_stage=lambda stage: hooks.on_stage(model_type, stage),
            )
    except Exception as exc:  # one broken type must not keep the whole stack down
        logger.debug("first %s model failed", model_type, exc_info=True)
        report.failed[model_type] = str(exc)
        hooks.on_trained(model_type, None, exc)
        return
    report.trained[model_type] = result
    hooks.on_trained(model_type, result, None)
