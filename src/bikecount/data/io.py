"""Read and write record files in the export format: ``;``-separated CSV, ``.csv.gz``, parquet."""

from __future__ import annotations

import gzip
import logging
import zlib
from pathlib import Path
from typing import BinaryIO

import pandas as pd
import pyarrow as pa

logger = logging.getLogger(__name__)

SUPPORTED_SUFFIXES = (".csv", ".csv.gz", ".parquet", ".pq")


class DataFileError(ValueError):
    """A data file that is missing, of an unknown kind, or unreadable."""


# What readers raise on a damaged or foreign file. gzip raises EOFError for a file cut short
# and zlib.error for corrupt deflate data, neither of which is an OSError or a ValueError.
UNREADABLE = (OSError, ValueError, EOFError, zlib.error, pd.errors.ParserError, pa.ArrowException)


def what_is_wrong(exc: BaseException) -> str:
    """A reader's exception, said as what is wrong with the file."""
    if isinstance(exc, EOFError):
        return f"the compressed file is cut short: it ends before its gzip stream does ({exc})"
    if isinstance(exc, zlib.error | gzip.BadGzipFile):
        return f"the compressed data is damaged or not gzip: it cannot be decompressed ({exc})"
    if isinstance(exc, UnicodeDecodeError):
        return f"not UTF-8 text: is it a record file in the export format? ({exc})"
    return f"cannot be read as a record file ({exc})"


def _kind(path: Path) -> str:
    name = path.name.lower()
    if name.endswith((".parquet", ".pq")):
        return "parquet"
    if name.endswith((".csv", ".csv.gz", ".txt")):
        return "csv"
    raise DataFileError(
        f"{path}: unknown file kind; expected one of {', '.join(SUPPORTED_SUFFIXES)}"
    )


def read_records(path: Path | str) -> pd.DataFrame:
    """Read a raw record file; CSV values stay strings (the contract parses them).

    Raises:
        DataFileError: the file is missing, of an unknown kind, damaged (a gzip cut short or
            failing its check, a broken parquet file), not text, or not in the export format.
    """
    path = Path(path)
    if not path.is_file():
        raise DataFileError(f"{path}: no such file")
    kind = _kind(path)
    logger.info("reading %s", path)
    return _read(path, kind, str(path))


def read_records_from(content: BinaryIO, name: str) -> pd.DataFrame:
    """Like :func:`read_records`, for a file's content (an upload); ``name`` tells its kind."""
    return _read(content, _kind(Path(name)), name)


def _read(source: Path | BinaryIO, kind: str, name: str) -> pd.DataFrame:
    # By name, not left to pandas: a buffer has no suffix to infer the compression from.
    compression = "gzip" if name.lower().endswith(".gz") else None
    try:
        if kind == "parquet":
            return pd.read_parquet(source)
        frame = pd.read_csv(
            source,
            sep=";",
            dtype=str,
            keep_default_na=False,
            na_values=[""],
            encoding="utf-8-sig",
            compression=compression,
        )
    except UNREADABLE as exc:
        raise DataFileError(f"{name}: {what_is_wrong(exc)}") from exc
    if frame.shape[1] == 1 and "," in frame.columns[0]:
        raise DataFileError(f"{name}: looks comma-separated; the export format uses ';'")
    return frame


def write_records(frame: pd.DataFrame, path: Path | str) -> Path:
    """Write records in the export format (``;``-CSV, gzip by suffix, or parquet)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if _kind(path) == "parquet":
        frame.to_parquet(path, index=False)
    else:
        frame.to_csv(path, sep=";", index=False)
    return path
