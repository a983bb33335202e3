"""Records as a JSON body carries them, made into one frame: the one way ``/predict`` (both
APIs) and ``/monitor`` read records.

JSON numbers have no size limit and Python reads an integer of any length; pandas and numpy
then fail on one beyond 64 bits (``OverflowError``). Such a value is a record error, named by
its row and column, before any frame is built.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TypeGuard

import pandas as pd

from bikecount.records import ALIASES, RecordError, RecordIssue, spelled_twice

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
HUGE_INTEGER = "a number within 64 bits (from -2^63 to 2^63-1); send longer ones as text"
SHOWN_DIGITS = 20


def records_frame(records: Sequence[Mapping[str, object]]) -> pd.DataFrame:
    """One frame in the export's spelling, each record renamed on its own.

    Records of one request may come in different spellings; only a record that holds both
    spellings of one column is an error, and so is an integer beyond 64 bits.

    Raises:
        RecordError: every row holding a column twice or a huge integer, with its column.
    """
    renamed: list[dict[str, object]] = []
    issues: list[RecordIssue] = []
    for row, record in enumerate(records):
        names = [ALIASES.get(key, key) for key in record]
        if len(set(names)) < len(names):
            doubled = sorted({name for name in names if names.count(name) > 1})
            issues += [spelled_twice(row, name, record) for name in doubled]
        issues += [
            RecordIssue(row, name, shorten(value), HUGE_INTEGER)
            for name, value in zip(names, record.values(), strict=True)
            if is_huge_integer(value)
        ]
        renamed.append(dict(zip(names, record.values(), strict=True)))
    if issues:
        raise RecordError(issues, total_rows=len(records))
    return pd.DataFrame.from_records(renamed)


def is_huge_integer(value: object) -> TypeGuard[int]:
    """Whether ``value`` is an integer (not a bool) that does not fit in 64 signed bits."""
    return (
        isinstance(value, int)
        and not isinstance(value, bool)
        and not INT64_MIN <= value <= INT64_MAX
    )


def shorten(value: int) -> str:
    """A huge integer as short text for an error message: its first digits and its length."""
    digits = str(abs(value))
    sign = "-" if value < 0 else ""
    if len(digits) <= SHOWN_DIGITS:
        return f"{sign}{digits}"
    return f"{sign}{digits[:SHOWN_DIGITS]}... ({len(digits)} digits)"
