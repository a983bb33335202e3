"""Faults of the machine, not of the input: a store locked by another writer, a disk full,
read-only or closed to this user.

Each is a :class:`MachineFault` whose message says what failed and where (the path, the URL),
whose ``hint`` says what to do, and whose ``exit_code`` tells the kinds apart for scripts (the
values of BSD's ``sysexits.h``). Library code raises them at its edges (the pipeline store, the
artifact store); :func:`as_machine_fault` recognises the raw errors (``OSError`` with its errno,
a database driver's error) that reach the command line, the API or a DAG task unconverted, so the
three say the same line.

PostgreSQL's codes are its SQLSTATEs (appendix A of its manual, "PostgreSQL Error Codes"):
``55P03`` lock_not_available (``lock_timeout``), ``57014`` query_canceled (``statement_timeout``),
``53100`` disk_full.
"""

from __future__ import annotations

import errno
from typing import ClassVar

# sysexits.h: EX_SOFTWARE, EX_CANTCREAT, EX_IOERR, EX_TEMPFAIL, EX_NOPERM.
INTERNAL_ERROR_EXIT_CODE = 70
READ_ONLY_EXIT_CODE = 73
STORAGE_FULL_EXIT_CODE = 74
STORE_BUSY_EXIT_CODE = 75
PERMISSION_EXIT_CODE = 77

LOCK_NOT_AVAILABLE = "55P03"
QUERY_CANCELED = "57014"
DISK_FULL = "53100"
# SQLite's result codes by name (Python 3.11+ puts them on sqlite3's errors); extended codes
# (SQLITE_BUSY_SNAPSHOT, SQLITE_READONLY_DIRECTORY...) start with these.
SQLITE_BUSY = ("SQLITE_BUSY", "SQLITE_LOCKED")
SQLITE_FULL = "SQLITE_FULL"
SQLITE_READONLY = "SQLITE_READONLY"
SQLITE_PERMISSION = ("SQLITE_PERM", "SQLITE_CANTOPEN", "SQLITE_AUTH")


class MachineFault(Exception):
    """The machine failed the work: its message names what and where; ``hint``, what to do."""

    exit_code: ClassVar[int] = INTERNAL_ERROR_EXIT_CODE

    def __init__(self, message: str, hint: str) -> None:
        super().__init__(message)
        self.hint = hint

    @property
    def message(self) -> str:
        return str(self)


class StoreBusyError(MachineFault):
    """A database stayed locked (or a statement ran) past the wait allowed; nothing was written.

    Attributes:
        store: the database, as a URL without its password.
        waited: the seconds waited before giving up (None: unknown, another library waited).
    """

    exit_code = STORE_BUSY_EXIT_CODE

    def __init__(
        self,
        store: str,
        waited: float | None,
        reason: str = "locked by another writer",
        what: str = "store",
        hint: str = "retry once the other writer (a backup, a second scheduler) is done; "
        "BIKECOUNT_STORE_BUSY_TIMEOUT_SECONDS sets how long to wait",
    ) -> None:
        after = f" after {waited:.0f} s" if waited is not None else ""
        super().__init__(
            f"the {what} {store} is busy ({reason}): gave up{after}; nothing was written", hint
        )
        self.store = store
        self.waited = waited


class StorageError(MachineFault):
    """A write failed for want of room or rights on its disk.

    Attributes:
        path: the file or folder (or database URL) the write went to.
    """

    problem: ClassVar[str] = "cannot be written"
    advice: ClassVar[str] = "check that disk, then run again"

    def __init__(self, path: str, doing: str | None = None, setting: str | None = None) -> None:
        while_doing = f" while {doing}" if doing else ""
        advice = self.advice.format(setting=setting or "the setting")
        super().__init__(f"{path}: {self.problem}{while_doing}", advice)
        self.path = path


class StorageFullError(StorageError):
    exit_code = STORAGE_FULL_EXIT_CODE
    problem = "no space left on its device"
    advice = "free space on that disk (or point {setting} at a larger one), then run again"


class ReadOnlyStorageError(StorageError):
    exit_code = READ_ONLY_EXIT_CODE
    problem = "the filesystem is read-only"
    advice = "remount it read-write (or point {setting} at a writable folder), then run again"


class StoragePermissionError(StorageError):
    exit_code = PERMISSION_EXIT_CODE
    problem = "permission denied"
    advice = "give this user write access to it (or point {setting} elsewhere), then run again"


STORAGE_ERRORS: dict[int, type[StorageError]] = {
    errno.ENOSPC: StorageFullError,
    errno.EDQUOT: StorageFullError,
    errno.EROFS: ReadOnlyStorageError,
    errno.EACCES: StoragePermissionError,
    errno.EPERM: StoragePermissionError,
}


def storage_fault(
    exc: OSError, path: str | None = None, doing: str | None = None, setting: str | None = None
) -> StorageError | None:
    """The :class:`StorageError` an ``OSError`` is, or None when it is another error.

    Args:
        exc: the error; a copy between two files names both (``filename``, ``filename2``).
        path: where the write went when the error does not say (``write()`` names no file).
        doing: what was being written, for the message ("logging the model").
        setting: the setting that chose the folder, for the hint (``BIKECOUNT_ARTIFACTS_DIR``).
    """
    kind = STORAGE_ERRORS.get(exc.errno or 0)
    if kind is None:
        return None
    # A failed copy names its source first: the destination is what could not be written.
    where = exc.filename2 or exc.filename or path or "a file (no path given)"
    return kind(str(where), doing, setting)


def database_fault(
    exc: BaseException,
    store: str,
    waited: float,
    path: str | None = None,
    what: str = "store",
) -> MachineFault | None:
    """The fault a database driver's error is (SQLite's or PostgreSQL's), or None.

    Args:
        exc: the driver's error (SQLAlchemy's ``.orig``).
        store: the database as shown in messages (a URL without its password).
        waited: seconds since the operation began.
        path: the database's file (SQLite), named when its disk fails (default: ``store``).
        what: what the database is to bikecount ("pipeline store").
    """
    where = path or store
    sqlstate = getattr(exc, "sqlstate", None) or getattr(exc, "pgcode", None)
    if sqlstate == LOCK_NOT_AVAILABLE:
        return StoreBusyError(store, waited, "locked by another transaction: lock_timeout", what)
    if sqlstate == QUERY_CANCELED:
        return StoreBusyError(store, waited, "a write ran past statement_timeout", what)
    if sqlstate == DISK_FULL:
        return StorageFullError(where, f"writing to the {what}")
    name = str(getattr(exc, "sqlite_errorname", "") or "")
    text = str(exc).lower()
    if name.startswith(SQLITE_BUSY) or "database is locked" in text:
        return StoreBusyError(store, waited, what=what)
    if name.startswith(SQLITE_FULL) or "database or disk is full" in text:
        return StorageFullError(where, f"writing to the {what}")
    if name.startswith(SQLITE_READONLY) or "readonly database" in text:
        return ReadOnlyStorageError(where, f"writing to the {what}")
    if name.startswith(SQLITE_PERMISSION):
        return StoragePermissionError(where, f"opening the {what}")
    return None


def tracking_store_busy(exc: BaseException, tracking_store: str | None) -> StoreBusyError | None:
    """MLflow's error for its SQL store locked by another writer (its own wait, 20 s, is over),
    as a :class:`StoreBusyError` naming ``tracking_store``; None for any other error."""
    unavailable = getattr(exc, "error_code", None) == "TEMPORARILY_UNAVAILABLE"
    if not (unavailable and "database is locked" in str(exc)):
        return None
    store = tracking_store or "(BIKECOUNT_MLFLOW_TRACKING_URI)"
    hint = "retry once the other writer is done (MLflow waits 20 s for its SQLite store)"
    return StoreBusyError(store, None, what="MLflow tracking store", hint=hint)


def as_machine_fault(
    exc: BaseException,
    doing: str | None = None,
    setting: str | None = None,
    tracking_store: str | None = None,
) -> MachineFault | None:
    """``exc`` as a :class:`MachineFault` when it is one, raw or converted; else None.

    Looks through the chain of causes: a library may wrap an ``OSError`` (MLflow does).
    ``doing`` and ``setting`` describe a raw ``OSError`` (see :func:`storage_fault`);
    ``tracking_store`` names MLflow's store when it is the one busy.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, MachineFault):
            return current
        fault: MachineFault | None = tracking_store_busy(current, tracking_store)
        if fault is None and isinstance(current, OSError):
            fault = storage_fault(current, doing=doing, setting=setting)
        if fault is not None:
            return fault
        current = current.__cause__ or current.__context__
    return None
