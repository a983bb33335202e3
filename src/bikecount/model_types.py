"""The names of the model types and their tasks: the one list.

A module of names only, so that the settings (which validate the pipeline's regressor with it)
and the model catalogue can both import it, and the settings never import the models.
The API's schema shows :data:`ModelType` as its enum; a test checks each catalogue spec's task.
"""

from __future__ import annotations

from typing import Literal, get_args

Task = Literal["regression", "classification"]
# In the order they are listed.
RegressorType = Literal["rf", "gbm", "nn", "ensemble"]
ClassifierType = Literal["rf_class"]
ModelType = Literal[RegressorType, ClassifierType]

MODEL_TYPES: tuple[ModelType, ...] = get_args(ModelType)
REGRESSOR_TYPES: tuple[RegressorType, ...] = get_args(RegressorType)
CLASSIFIER_TYPES: tuple[ClassifierType, ...] = get_args(ClassifierType)
