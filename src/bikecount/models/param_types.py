"""Types of hyperparameter fields that refuse what lax parsing would let through.

Hyperparameters come from JSON (``POST /train``) and from the command line (``--param k=v``,
strings). Pydantic's lax mode is right for the strings (``"200"`` is 200) but reads ``true`` as
1 and ``1`` as true: an ``n_estimators: true`` would train one tree. These types keep the string
parsing and refuse booleans for numbers and numbers for booleans. Floats must be finite
(``PARAMS_CONFIG``): JSON as Python reads it has ``NaN`` and ``Infinity``.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BeforeValidator, ConfigDict

PARAMS_CONFIG = ConfigDict(extra="forbid", allow_inf_nan=False)

# A hyperparameter's value, as the parsed hyperparameters hold it (``hidden_sizes`` is a tuple).
ParamValue = int | float | bool | str | tuple[int, ...] | None


# The validators see a value before pydantic parses it: anything, passed on unchanged.
def _no_bool(value: object) -> object:
    if isinstance(value, bool):
        raise ValueError(f"expected a number, not a boolean ({value})")
    return value


def _only_bool(value: object) -> object:
    if isinstance(value, int | float) and not isinstance(value, bool):
        raise ValueError(f"expected true or false, not a number ({value})")
    return value


Int = Annotated[int, BeforeValidator(_no_bool)]
Float = Annotated[float, BeforeValidator(_no_bool)]
Bool = Annotated[bool, BeforeValidator(_only_bool)]
