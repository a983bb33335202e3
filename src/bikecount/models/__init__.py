"""The model types (rf, gbm, nn, ensemble, rf_class): one interface, fit and predict on records."""

from bikecount.models.catalog import (
    MODEL_TYPES,
    HyperparameterError,
    ModelSpec,
    UnknownModelTypeError,
    build_model,
    get_spec,
    parse_params,
    stops_early,
)
from bikecount.models.protocol import RecordClassifier, RecordModel, as_classifier

__all__ = [
    "MODEL_TYPES",
    "HyperparameterError",
    "ModelSpec",
    "RecordClassifier",
    "RecordModel",
    "UnknownModelTypeError",
    "as_classifier",
    "build_model",
    "get_spec",
    "parse_params",
    "stops_early",
]
