"""The one place where the command line turns a failure into a message and an exit code.

A command's expected errors (bad input, a source failing) keep the command's own message, exit
code 1, through :func:`fail_for`. Faults of the machine (a locked store, a full, read-only or
forbidden disk: :mod:`bikecount.faults`) get their own line naming the path or URL, a hint and an
exit code per kind, whichever command meets them. Anything else is reported by
:class:`ReportingGroup` in one line, exit code 70. The traceback goes to the log at debug level:
``bikecount --verbose ...`` shows it.

Exit codes: 0 done; 1 an error of the input or of a service (the message says which); 2 a usage
error; 70 an unexpected error; 73 a read-only filesystem; 74 no space left; 75 a store busy
(retry later); 77 permission denied; 130 stopped (Ctrl-C, a training's time limit).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import typer
from typer.core import TyperGroup

from bikecount.cli.console import fail
from bikecount.faults import INTERNAL_ERROR_EXIT_CODE, as_machine_fault, storage_fault

logger = logging.getLogger(__name__)

VERBOSE_HINT = "run it again as `bikecount --verbose ...` to see the traceback"


@dataclass(frozen=True)
class Failure:
    """What the command line says of an error: one line, a hint, an exit code."""

    message: str
    hint: str | None
    exit_code: int


def describe_failure(exc: BaseException, path: Path | str | None = None) -> Failure | None:
    """The machine fault ``exc`` is, as the command line says it; None when it is no fault.

    Args:
        exc: the error, raw (``OSError``) or converted (``MachineFault``) anywhere in its chain.
        path: where the write went, for an ``OSError`` that names no file.
    """
    fault = as_machine_fault(exc)
    if fault is None and path is not None and isinstance(exc, OSError):
        fault = storage_fault(exc, str(path))
    if fault is None:
        return None
    return Failure(fault.message, fault.hint, fault.exit_code)


def describe_unexpected(exc: BaseException) -> Failure:
    """Any other error: its kind and the first line of its message (drivers add SQL and URLs
    of their documentation on the next lines)."""
    first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    message = f"unexpected {type(exc).__name__}" + (f": {first_line}" if first_line else "")
    return Failure(message, VERBOSE_HINT, INTERNAL_ERROR_EXIT_CODE)


def fail_for(
    exc: BaseException,
    message: str | None = None,
    hint: str | None = None,
    path: Path | str | None = None,
) -> NoReturn:
    """End a command on an error it expects: a machine fault as :func:`describe_failure` says
    it; any other with ``message`` (default: the error's own) and exit code 1."""
    failure = describe_failure(exc, path)
    if failure is not None:
        _log_traceback(exc)
        fail(failure.message, failure.hint, failure.exit_code)
    fail(message if message is not None else str(exc), hint=hint)


def _log_traceback(exc: BaseException) -> None:
    logger.debug("what failed, for a bug report:", exc_info=exc)


class ReportingGroup(TyperGroup):
    """The root command: an error no command handled ends in one line, never a traceback."""

    def invoke(self, ctx: typer.Context) -> Any:  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort, typer.TyperException):  # usage errors, exits
            raise
        except Exception as exc:
            _log_traceback(exc)
            failure = describe_failure(exc) or describe_unexpected(exc)
            fail(failure.message, failure.hint, failure.exit_code)
