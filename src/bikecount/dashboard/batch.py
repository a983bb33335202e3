"""Forecasts of an uploaded export file, for "Ask the model": read it, check it, give back a CSV.

A file comes in any spelling of the export (its French labels, the Explore API's field names or
snake_case), as ``;``-CSV (``.csv``, ``.csv.gz``), parquet or JSON records. Its rows are checked
against the record contract (:mod:`bikecount.records`) before anything is sent: the valid ones go
to ``POST /predict``, the refused ones are listed with their row, column and reason. The CSV given
back is the valid rows as uploaded, plus each one's ``prediction`` (``lower`` and ``upper`` where
the API gives intervals) and the model version that made it.

Pure functions of the file's bytes and the API's answers; the page does the uploading and asking.
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

import pandas as pd

from bikecount.dashboard.api_client import ApiError, PredictAnswer, to_api_records
from bikecount.data.io import DataFileError, read_records_from
from bikecount.records import ParsedRecords, RecordError, parse_records

# What the uploader offers (".csv.gz" ends in "gz").
UPLOAD_TYPES = ("csv", "gz", "parquet", "pq", "json")
# Rows of one upload: 10 requests at the API's default bound, answered in seconds.
MAX_UPLOAD_ROWS = 100_000
# The interval asked for when the API gives intervals (issue's default level).
INTERVAL_LEVEL = 0.8
# Where JSON records may sit: a list, the API's request body, the Explore API's answer.
JSON_RECORD_KEYS = ("records", "results")
# Columns a forecast adds to the uploaded rows; lower/upper only when the API answers them.
FORECAST_COLUMNS = ("prediction", "lower", "upper", "label", "model_version")
# Each added column, and the key of ``POST /predict``'s answer holding it.
ANSWER_KEYS = {"prediction": "predictions", "lower": "lower", "upper": "upper", "label": "labels"}


class UploadError(ValueError):
    """An uploaded file that cannot be forecast; the message says why and what is expected."""


@dataclass(frozen=True)
class CheckedUpload:
    """An upload's rows as read, and which of them the record contract accepts."""

    raw: pd.DataFrame
    parsed: ParsedRecords

    @property
    def records(self) -> list[dict[str, str]]:
        """The valid rows as ``POST /predict`` records, in file order."""
        return to_api_records(self.parsed.frame)


def read_upload(name: str, content: bytes) -> pd.DataFrame:
    """An uploaded file's rows, as written (values are parsed later, by the contract).

    Raises:
        UploadError: an unknown kind of file, or one that cannot be read as records.
    """
    if name.lower().endswith(".json"):
        return read_json_records(name, content)
    try:
        return read_records_from(io.BytesIO(content), name)
    except DataFileError as exc:
        raise UploadError(f"{exc}; expected a ';'-separated CSV, parquet or JSON file") from exc


def read_json_records(name: str, content: bytes) -> pd.DataFrame:
    """Records of a JSON file: a list of objects, or an object holding one under ``records``
    (the API's request body) or ``results`` (the Explore API's answer).

    Raises:
        UploadError: not JSON, or no list of objects where records are expected.
    """
    try:
        body = json.loads(content.decode("utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UploadError(f"{name}: not JSON text ({exc})") from exc
    rows = body
    if isinstance(body, dict):
        rows = next((body[key] for key in JSON_RECORD_KEYS if key in body), None)
    if not isinstance(rows, list) or not all(isinstance(row, dict) for row in rows):
        raise UploadError(
            f"{name}: expected a list of records (JSON objects), or an object holding one under "
            f"{' or '.join(map(repr, JSON_RECORD_KEYS))}"
        )
    return pd.DataFrame.from_records(rows)


def check_upload(raw: pd.DataFrame, max_rows: int = MAX_UPLOAD_ROWS) -> CheckedUpload:
    """The rows the contract accepts, and the issues of those it refuses.

    Raises:
        UploadError: no rows, too many, a required column missing (named with its spellings), a
            field spelled twice, or no valid row at all.
    """
    if raw.empty:
        raise UploadError("the file holds no records")
    if len(raw) > max_rows:
        raise UploadError(f"{len(raw):,} records; at most {max_rows:,} per file: split it")
    try:
        parsed = parse_records(raw)
    except RecordError as exc:
        raise UploadError(str(exc)) from exc
    if parsed.frame.empty:
        raise UploadError(f"none of the {len(raw):,} records is valid: {issues_summary(parsed)}")
    return CheckedUpload(raw=raw.reset_index(drop=True), parsed=parsed)


def issues_summary(parsed: ParsedRecords) -> str:
    """How many refused values of each kind, in one line."""
    return "; ".join(f"{count} × {reason}" for reason, count in parsed.drop_reasons().items())


def refused_rows(parsed: ParsedRecords) -> pd.DataFrame:
    """One line per problem: the record (1 = the file's first record), column, value, reason."""
    return pd.DataFrame(
        {
            "record": [issue.row + 1 for issue in parsed.issues],
            "column": [issue.column for issue in parsed.issues],
            "value": [str(issue.value) for issue in parsed.issues],
            "expected": [issue.expected for issue in parsed.issues],
        }
    )


def forecast_table(upload: CheckedUpload, answers: list[PredictAnswer]) -> pd.DataFrame:
    """The valid rows as uploaded, plus their forecasts from ``answers`` (batches in order).

    ``lower`` and ``upper`` are added when every batch's answer has them, ``label`` when the
    model classifies.

    Raises:
        ApiError: the answers hold more or fewer predictions than there were records.
    """
    rows = upload.raw.loc[upload.parsed.frame.index].map(_as_text).reset_index(drop=True)
    table = rows.drop(columns=[c for c in FORECAST_COLUMNS if c in rows.columns])
    for column, key in ANSWER_KEYS.items():
        values = _answered(answers, key)
        if values is None:
            continue
        if len(values) != len(table):
            raise ApiError(f"POST /predict answered {len(values)} {key} for {len(table)} records")
        table[column] = values
    table["model_version"] = [
        answer["model_version"] for answer in answers for _ in answer["predictions"]
    ]
    return table


def _answered(answers: list[PredictAnswer], key: str) -> list[object] | None:
    """Every batch's ``key`` list joined; None when a batch has none (no intervals asked)."""
    parts = [cast(Mapping[str, Any], answer).get(key) for answer in answers]
    lists = [part for part in parts if isinstance(part, list)]
    if not parts or len(lists) < len(parts):
        return None
    return [value for part in lists for value in part]


def _as_text(value: object) -> object:
    """JSON objects (the Explore API's coordinates) as JSON text, so that the CSV reads back."""
    return json.dumps(value, ensure_ascii=False) if isinstance(value, dict | list) else value


def to_csv_bytes(table: pd.DataFrame) -> bytes:
    """The table as the export's ``;``-CSV (UTF-8), readable back by ``bikecount`` commands."""
    return table.to_csv(sep=";", index=False).encode("utf-8")
