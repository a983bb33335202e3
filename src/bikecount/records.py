"""The raw-record contract: a row of the Paris Open Data export "comptage-velo-donnees-compteurs".

Records arrive in one of three spellings of the same fields: the export's French labels (the
portal's download, ``use_labels=true``), the Explore API's field names (``nom_compteur``,
``sum_counts``, ``date``, ``coordinates``: its JSON keys, and its CSV headers by default) and the
snake_case spelling of the labels used by API clients. :func:`parse_records` accepts all three
(one spelling per field), checks every row and returns a canonical frame
(``counter``, ``timestamp`` in Europe/Paris local time, ``lat``, ``lon``, ``count``) together with
the problems found, each naming the row, the column, the bad value and what was expected.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

PARIS_TZ = "Europe/Paris"

# The 16 columns of the Open Data export, in file order.
EXPORT_COLUMNS: tuple[str, ...] = (
    "Identifiant du compteur",
    "Nom du compteur",
    "Identifiant du site de comptage",
    "Nom du site de comptage",
    "Comptage horaire",
    "Date et heure de comptage",
    "Date d'installation du site de comptage",
    "Lien vers photo du site de comptage",
    "Coordonnées géographiques",
    "Identifiant technique compteur",
    "ID Photos",
    "test_lien_vers_photos_du_site_de_comptage_",
    "id_photo_1",
    "url_sites",
    "type_dimage",
    "mois_annee_comptage",
)

COUNTER = "Nom du compteur"
TIMESTAMP = "Date et heure de comptage"
COORDINATES = "Coordonnées géographiques"
COUNT = "Comptage horaire"

# The columns a record needs to be predicted; training also needs COUNT.
REQUIRED_COLUMNS: tuple[str, ...] = (COUNTER, TIMESTAMP, COORDINATES)

# The canonical frame that parse_records returns, one row per counter and local hour.
COUNTER_COLUMN = "counter"
TIMESTAMP_COLUMN = "timestamp"  # tz-aware, Europe/Paris
LAT_COLUMN = "lat"
LON_COLUMN = "lon"
COUNT_COLUMN = "count"  # float, NaN where the record has none
# What a model predicts from (a forecast's grid has only these), then all the frame's columns.
CANONICAL_INPUTS: tuple[str, ...] = (COUNTER_COLUMN, TIMESTAMP_COLUMN, LAT_COLUMN, LON_COLUMN)
CANONICAL_COLUMNS: tuple[str, ...] = (*CANONICAL_INPUTS, COUNT_COLUMN)
# What identifies a record: one count per counter and hour.
RECORD_KEY: tuple[str, ...] = (COUNTER_COLUMN, TIMESTAMP_COLUMN)

# API clients send snake_case names of the labels.
SNAKE_TO_EXPORT: dict[str, str] = {
    "identifiant_du_compteur": "Identifiant du compteur",
    "nom_du_compteur": COUNTER,
    "identifiant_du_site_de_comptage": "Identifiant du site de comptage",
    "nom_du_site_de_comptage": "Nom du site de comptage",
    "comptage_horaire": COUNT,
    "date_et_heure_de_comptage": TIMESTAMP,
    "date_d_installation_du_site_de_comptage": "Date d'installation du site de comptage",
    "date_d'installation_du_site_de_comptage": "Date d'installation du site de comptage",
    "lien_vers_photo_du_site_de_comptage": "Lien vers photo du site de comptage",
    "coordonnées_géographiques": COORDINATES,
    "coordonnees_geographiques": COORDINATES,
    "identifiant_technique_compteur": "Identifiant technique compteur",
    "id_photos": "ID Photos",
}

# The Explore API v2.1's field names (its JSON keys, and its CSV headers unless the query says
# use_labels=true), as the dataset's schema on opendata.paris.fr lists them. The last five
# fields have no label of their own: their names are the export's headers too.
FIELD_TO_EXPORT: dict[str, str] = {
    "id_compteur": "Identifiant du compteur",
    "nom_compteur": COUNTER,
    "id": "Identifiant du site de comptage",
    "name": "Nom du site de comptage",
    "sum_counts": COUNT,
    "date": TIMESTAMP,
    "installation_date": "Date d'installation du site de comptage",
    "url_photos_n1": "Lien vers photo du site de comptage",
    "coordinates": COORDINATES,
    "counter": "Identifiant technique compteur",
    "photos": "ID Photos",
}

# Every other spelling of a field, to the export's label.
ALIASES: dict[str, str] = {**SNAKE_TO_EXPORT, **FIELD_TO_EXPORT}


def spellings(label: str) -> tuple[str, ...]:
    """Every accepted name of the field an export ``label`` names, the label first."""
    return (label, *(alias for alias, target in ALIASES.items() if target == label))


# A generous box around Paris and its inner suburbs (counters stand on the city's edge too).
PARIS_LAT = (48.70, 49.00)
PARIS_LON = (2.15, 2.55)


@dataclass(frozen=True)
class RecordIssue:
    """One problem in one record: ``row`` is the 0-based position of the record in its input."""

    row: int
    column: str
    value: object
    expected: str

    def __str__(self) -> str:
        where = f"row {self.row}, column" if self.row >= 0 else "column"
        return f"{where} {self.column!r}: got {self.value!r}, expected {self.expected}"


class RecordError(ValueError):
    """Records that cannot be used; ``issues`` lists every problem found (or the first ones)."""

    def __init__(self, issues: list[RecordIssue], total_rows: int | None = None) -> None:
        self.issues = issues
        self.total_rows = total_rows
        shown = "; ".join(str(issue) for issue in issues[:5])
        more = f" (and {len(issues) - 5} more)" if len(issues) > 5 else ""
        super().__init__(f"{len(issues)} invalid record value(s): {shown}{more}")


class MissingColumnsError(RecordError):
    """Records without a column the contract needs, in any of its spellings: the message names
    the columns they have and the ones expected."""

    def __init__(self, missing: Sequence[str], present: Sequence[object], total_rows: int) -> None:
        issues = [
            RecordIssue(-1, label, None, "a column " + " or ".join(map(repr, spellings(label))))
            for label in missing
        ]
        super().__init__(issues, total_rows=total_rows)
        names = [str(name) for name in present]
        shown = ", ".join(map(repr, names[:20])) + (" ..." if len(names) > 20 else "")
        self.args = (
            f"no column for {', '.join(map(repr, missing))} in the records, whose columns are "
            f"{shown or '(none)'}; expected rows of the Paris Open Data export with its labels "
            f"({', '.join(map(repr, missing))}), the API's field names "
            f"({', '.join(repr(_field_name(label)) for label in missing)}) or snake_case "
            f"({', '.join(repr(_snake_name(label)) for label in missing)})",
        )


def _field_name(label: str) -> str:
    return next(name for name, target in FIELD_TO_EXPORT.items() if target == label)


def _snake_name(label: str) -> str:
    return next(name for name, target in SNAKE_TO_EXPORT.items() if target == label)


@dataclass
class ParsedRecords:
    """The canonical frame of the valid rows, and the issues of the rows that were dropped."""

    frame: pd.DataFrame
    issues: list[RecordIssue] = field(default_factory=list)
    total_rows: int = 0

    @property
    def dropped_rows(self) -> int:
        return self.total_rows - len(self.frame)

    def drop_reasons(self) -> dict[str, int]:
        """How many issues of each kind (column and expectation), for a one-line summary."""
        reasons: dict[str, int] = {}
        for issue in self.issues:
            key = f"{issue.column}: expected {issue.expected}"
            reasons[key] = reasons.get(key, 0) + 1
        return reasons


def to_export_columns(raw: pd.DataFrame) -> pd.DataFrame:
    """Rename every spelling of a field to the export's label; other names are kept.

    Raises:
        RecordError: two columns spell one field (``nom_compteur`` and ``Nom du compteur``):
            which one holds the data cannot be told, so both are named.
    """
    renames = {col: ALIASES[col] for col in raw.columns if col in ALIASES}
    targets = [renames.get(col, col) for col in raw.columns]
    doubled = sorted({label for label in targets if targets.count(label) > 1})
    if doubled:
        raise RecordError([spelled_twice(-1, label, raw.columns) for label in doubled])
    return raw.rename(columns=renames)


def spelled_twice(row: int, label: str, names: Iterable[str]) -> RecordIssue:
    """The issue of a record or file holding one field under two of its spellings."""
    both = [name for name in names if ALIASES.get(name, name) == label]
    return RecordIssue(
        row, label, " and ".join(repr(name) for name in both), "one spelling of the field, not two"
    )


def parse_timestamps(values: pd.Series) -> pd.Series:
    """Turn export timestamps into Europe/Paris local time; unparsable values become NaT.

    Values with a UTC offset (the export's form) are exact. Values without one are read as Paris
    local time; a wall-clock hour that does not exist or is ambiguous on a daylight-saving night
    becomes NaT, since only an offset can say which instant it was.
    """
    text = values.astype("string").str.strip()
    has_offset = text.str.contains(r"(?:[+-]\d{2}:?\d{2}|Z)$", regex=True, na=False)
    result = pd.Series(pd.NaT, index=values.index, dtype=f"datetime64[ns, {PARIS_TZ}]")
    if has_offset.any():
        aware = pd.to_datetime(text[has_offset], utc=True, errors="coerce", format="ISO8601")
        result.loc[has_offset] = aware.dt.tz_convert(PARIS_TZ)
    naive_mask = ~has_offset & text.notna()
    if naive_mask.any():
        naive = pd.to_datetime(text[naive_mask], errors="coerce", format="ISO8601")
        result.loc[naive_mask] = naive.dt.tz_localize(PARIS_TZ, ambiguous="NaT", nonexistent="NaT")
    return result


def parse_coordinates(values: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Read ``"lat,lon"``, ``"lat, lon"`` or ``{"lon": .., "lat": ..}`` (the Explore API's JSON)
    into two float series, NaN where unparsable."""
    is_object = values.map(lambda value: isinstance(value, Mapping)).astype(bool)
    lat = pd.Series(np.nan, index=values.index)
    lon = pd.Series(np.nan, index=values.index)
    if is_object.any():
        points = values[is_object]
        lat.loc[is_object] = points.map(lambda point: _number(point.get("lat")))
        lon.loc[is_object] = points.map(lambda point: _number(point.get("lon")))
    text = values[~is_object]
    if not text.empty:
        parts = text.astype("string").str.split(",", n=1, expand=True)
        if parts.shape[1] == 2:
            lat.loc[~is_object] = _numbers(parts[0])
            lon.loc[~is_object] = _numbers(parts[1])
    return lat.astype(float), lon.astype(float)


def _numbers(text: pd.Series) -> np.ndarray:
    numbers = pd.to_numeric(text.str.strip(), errors="coerce").astype("Float64")
    return numbers.to_numpy(dtype=float, na_value=np.nan)


def _number(value: object) -> float:
    """A JSON coordinate as a float; NaN for anything that is not a finite number."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return np.nan
    try:
        return float(value)
    except (ValueError, OverflowError):
        return np.nan


def is_nested(values: pd.Series) -> pd.Series:
    """Where a value is a JSON object or list: only ``coordinates`` may be one."""
    return values.map(lambda value: isinstance(value, Mapping | list)).astype(bool)


def _issues_where(mask: pd.Series, raw: pd.Series, column: str, expected: str) -> list[RecordIssue]:
    positions = np.flatnonzero(mask.to_numpy())
    values = raw.to_numpy()
    return [RecordIssue(int(pos), column, _plain(values[pos]), expected) for pos in positions]


def _plain(value: object) -> object:
    if value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value)):
        return None
    return value.item() if isinstance(value, np.generic) else value


def parse_records(raw: pd.DataFrame, *, require_count: bool = False) -> ParsedRecords:
    """Validate raw records (any spelling) and return the canonical frame of the valid rows.

    Args:
        raw: records as read from a file or received by the API, one row each.
        require_count: training and evaluation need ``Comptage horaire``; prediction does not.

    Returns:
        ParsedRecords whose ``frame`` has columns ``counter``, ``timestamp``, ``lat``, ``lon`` and
        ``count`` (NaN when absent) for the valid rows, indexed by their position in ``raw``.

    Raises:
        RecordError: a required column is missing altogether.
    """
    records = to_export_columns(raw).reset_index(drop=True)
    required = REQUIRED_COLUMNS + ((COUNT,) if require_count else ())
    missing = [col for col in required if col not in records.columns]
    if missing:
        raise MissingColumnsError(missing, list(raw.columns), total_rows=len(records))

    counter = records[COUNTER].astype("string").str.strip()
    lat, lon = parse_coordinates(records[COORDINATES])
    count = (
        pd.to_numeric(records[COUNT], errors="coerce")
        if COUNT in records.columns
        else pd.Series(np.nan, index=records.index)
    )
    frame = pd.DataFrame(
        {
            COUNTER_COLUMN: counter.astype(object),
            TIMESTAMP_COLUMN: parse_timestamps(records[TIMESTAMP]),
            LAT_COLUMN: lat,
            LON_COLUMN: lon,
            COUNT_COLUMN: count.astype(float),
        }
    )
    issues = sorted(value_issues(records, frame, require_count), key=lambda issue: issue.row)
    keep = ~records.index.isin(sorted({issue.row for issue in issues}))
    return ParsedRecords(frame=frame[keep], issues=issues, total_rows=len(records))


def value_issues(
    records: pd.DataFrame, parsed: pd.DataFrame, require_count: bool
) -> list[RecordIssue]:
    """Every value of ``records`` (export labels) whose ``parsed`` form breaks the contract."""
    counter, lat, lon = parsed[COUNTER_COLUMN], parsed[LAT_COLUMN], parsed[LON_COLUMN]
    issues = _issues_where(
        counter.isna() | (counter == "") | is_nested(records[COUNTER]),
        records[COUNTER],
        COUNTER,
        "a counter name",
    )
    issues += _issues_where(
        parsed[TIMESTAMP_COLUMN].isna(),
        records[TIMESTAMP],
        TIMESTAMP,
        "an ISO 8601 date and time such as 2021-06-01T08:00:00+02:00",
    )
    outside = lat.isna() | lon.isna() | ~lat.between(*PARIS_LAT) | ~lon.between(*PARIS_LON)
    issues += _issues_where(
        outside,
        records[COORDINATES],
        COORDINATES,
        '\'lat,lon\' or {"lon": .., "lat": ..} inside Paris (e.g. 48.8566,2.3522)',
    )
    if COUNT in records.columns:
        count = parsed[COUNT_COLUMN]
        bad_count = count.notna() & ((count < 0) | np.isinf(count) | (count != np.floor(count)))
        bad_count |= is_nested(records[COUNT])
        if require_count:
            bad_count |= count.isna()
        issues += _issues_where(
            bad_count, records[COUNT], COUNT, "a whole number of bikes, 0 or more"
        )
    return issues


def require_valid(raw: pd.DataFrame, *, require_count: bool = False) -> pd.DataFrame:
    """Like :func:`parse_records`, but any invalid row is an error (the API's strict mode)."""
    parsed = parse_records(raw, require_count=require_count)
    if parsed.issues:
        raise RecordError(parsed.issues, total_rows=parsed.total_rows)
    return parsed.frame


def to_raw_records(frame: pd.DataFrame) -> pd.DataFrame:
    """Canonical records back to the export's required columns (a model's input example)."""
    return pd.DataFrame(
        {
            COUNTER: frame[COUNTER_COLUMN].astype(str).to_numpy(),
            TIMESTAMP: [ts.isoformat() for ts in frame[TIMESTAMP_COLUMN]],
            COORDINATES: [
                f"{lat:.6f},{lon:.6f}"
                for lat, lon in zip(frame[LAT_COLUMN], frame[LON_COLUMN], strict=True)
            ],
        }
    )
