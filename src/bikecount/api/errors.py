"""The one place where errors become HTTP responses.

Library exceptions (``RecordError``, ``HyperparameterError``, ``ModelNotFoundError``...) map to
4xx/5xx here; the API's own conditions are :class:`ApiError` subclasses. Two ASGI middlewares
guard the edges: a bound on request bodies (413 before a huge body is read) and a catch-all that
logs an unexpected exception and answers a JSON 500 without the trace.
"""

from __future__ import annotations

import logging
import math
import re
import uuid
from collections.abc import Sequence

from fastapi import FastAPI, HTTPException, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from mlflow.exceptions import MlflowException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bikecount.data.io import DataFileError
from bikecount.faults import MachineFault, StoreBusyError, as_machine_fault
from bikecount.isolated_fit import FitProcessError
from bikecount.models import HyperparameterError, UnknownModelTypeError
from bikecount.records import RecordError, RecordIssue
from bikecount.registry import ModelNotFoundError, RegistryUnavailableError, shown_uri
from bikecount.stopping import TrainingCancelledError, TrainingTimeoutError

logger = logging.getLogger(__name__)

MAX_LISTED_ISSUES = 50
# A record in the export's 16 columns is about 600 bytes as JSON: 2 KiB each is generous.
BYTES_PER_RECORD = 2048
BODY_SLACK_BYTES = 64 * 1024
# A busy store is worth retrying soon (clients honouring Retry-After wait this long).
BUSY_RETRY_AFTER_SECONDS = 10
_USERINFO = re.compile(r"(?<=://)[^/@\s]+@")

# One item of a 422 ``detail``, as FastAPI reports validation errors: ``type``, ``loc`` (where),
# ``msg``, and the ``input`` at fault, which may be any value a request held.
ErrorItem = dict[str, object]


class ApiError(Exception):
    """An error with its HTTP status; ``detail`` is a message or a list of ``{loc, msg, type}``."""

    status_code = 500

    def __init__(
        self,
        detail: str | list[ErrorItem],
        *,
        status_code: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail if isinstance(detail, str) else "invalid request")
        self.detail = detail
        self.headers = headers
        if status_code is not None:
            self.status_code = status_code


class InvalidFieldError(ApiError):
    """One field of the body is wrong, reported as FastAPI reports validation errors."""

    status_code = 422

    def __init__(self, field: str, message: str, kind: str = "value_error") -> None:
        super().__init__([{"type": kind, "loc": ["body", field], "msg": message}])
        self.field = field
        self.message = message


class UnauthorizedError(ApiError):
    status_code = 401


class NoModelError(ApiError):
    status_code = 404


class JobNotFoundError(ApiError):
    status_code = 404


class JobFinishedError(ApiError):
    """A job that cannot be cancelled: it has already finished."""

    status_code = 409


class TrainingBusyError(ApiError):
    """A training is already running; its job id is in the detail and the ``Location`` header."""

    status_code = 409

    def __init__(self, job_id: str) -> None:
        super().__init__(
            f"a training is already running (job {job_id}); poll GET /train/{job_id} "
            "and retry when it has finished",
            headers={"Location": f"/train/{job_id}"},
        )
        self.job_id = job_id


class TooManyRecordsError(ApiError):
    status_code = 413


class ModelUnavailableError(ApiError):
    """The registry cannot be reached (or a model not loaded) and nothing cached can stand in."""

    status_code = 503


def redact(text: str) -> str:
    """Remove credentials (``user:password@``) from URIs quoted in a message."""
    return _USERINFO.sub("***@", text)


def json_safe(value: object) -> object:
    """JSON has no NaN or infinity (Python's parser accepts them): echo them back as text.
    Other values pass unchanged (the JSON encoder turns them to JSON)."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {str(key): json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(item) for item in value]
    return value


def record_issue_detail(issue: RecordIssue) -> ErrorItem:
    """One invalid value as a validation item naming its row, its column and what was expected."""
    where: list[int | str] = [issue.row, issue.column] if issue.row >= 0 else [issue.column]
    return {
        "type": "record_invalid",
        "loc": ["body", "records", *where],
        "msg": f"expected {issue.expected}",
        "input": json_safe(issue.value),
        "row": issue.row if issue.row >= 0 else None,
        "column": issue.column,
    }


def record_error_detail(exc: RecordError) -> list[ErrorItem]:
    """Every invalid value (the first ``MAX_LISTED_ISSUES``), then how many more there are."""
    items = [record_issue_detail(issue) for issue in exc.issues[:MAX_LISTED_ISSUES]]
    hidden = len(exc.issues) - MAX_LISTED_ISSUES
    if hidden > 0:
        message = f"{hidden} more invalid values not listed"
        items.append({"type": "too_many_errors", "loc": ["body", "records"], "msg": message})
    return items


def describe_error(exc: BaseException, tracking_store: str | None = None) -> tuple[int, str]:
    """The HTTP status of a library exception and a message safe to show.

    ``ValueError`` covers the user errors ``train()`` documents; a fault of the machine (a
    store busy, a disk full, read-only or forbidden) is a 503 naming where, in the words the
    command line uses; anything else is internal and its message stays in the server log.
    ``tracking_store`` names MLflow's store in the message when it is the one busy.
    """
    if isinstance(exc, ApiError):
        return exc.status_code, str(exc)
    fault = as_machine_fault(exc, tracking_store=tracking_store)
    if fault is not None:
        return 503, redact(fault.message)
    if isinstance(exc, ModelNotFoundError):
        return 404, redact(str(exc))
    if isinstance(exc, RegistryUnavailableError):
        return 503, redact(str(exc))
    if isinstance(exc, RecordError | UnknownModelTypeError | HyperparameterError | DataFileError):
        return 422, redact(str(exc))
    if isinstance(exc, ValueError):
        return 422, redact(str(exc))
    if isinstance(exc, MlflowException):
        return 503, f"MLflow failed: {redact(exc.message)}"
    if isinstance(exc, TrainingCancelledError):
        return 409, str(exc)
    if isinstance(exc, TrainingTimeoutError):
        return 504, str(exc)
    if isinstance(exc, FitProcessError):
        return 500, str(exc)
    return 500, "internal error; see the server log"


def _json_error(
    status_code: int, detail: str | Sequence[object], headers: dict[str, str] | None = None
) -> JSONResponse:
    content = jsonable_encoder({"detail": json_safe(detail)})
    return JSONResponse(content, status_code=status_code, headers=headers)


async def _api_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return _json_error(exc.status_code, exc.detail, exc.headers)


async def _record_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RecordError)
    return _json_error(422, record_error_detail(exc))


def field_at_fault(exc: BaseException) -> str | None:
    """The ``/train`` request field a library error is about (None: no single field)."""
    if isinstance(exc, UnknownModelTypeError):
        return "model_type"
    if isinstance(exc, HyperparameterError):
        return "hyperparams"
    if isinstance(exc, DataFileError | RecordError):
        return "data_source"
    return None


async def _field_error(request: Request, exc: Exception) -> JSONResponse:
    field = field_at_fault(exc) or "body"
    item = {"type": "value_error", "loc": ["body", field], "msg": redact(str(exc))}
    return _json_error(422, [item])


async def _library_error(request: Request, exc: Exception) -> JSONResponse:
    status_code, message = describe_error(exc, _tracking_store(request))
    busy = isinstance(as_machine_fault(exc, tracking_store=""), StoreBusyError)
    headers = {"Retry-After": str(BUSY_RETRY_AFTER_SECONDS)} if busy else None
    return _json_error(status_code, message, headers)


def _tracking_store(request: Request) -> str | None:
    """The app's MLflow tracking URI as messages show it (None: an app without settings)."""
    state = getattr(request.app.state, "bikecount", None)
    return shown_uri(state.settings.tracking_uri) if state is not None else None


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    # FastAPI's own handler, except that a NaN or infinity echoed back cannot break the JSON.
    assert isinstance(exc, RequestValidationError)
    return _json_error(422, exc.errors())


def install_error_handling(app: FastAPI, max_records: int) -> None:
    """Register the exception handlers and the two guarding middlewares on ``app``."""
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(RecordError, _record_error)
    for kind in (UnknownModelTypeError, HyperparameterError, DataFileError):
        app.add_exception_handler(kind, _field_error)
    for library_error in (
        ModelNotFoundError,
        RegistryUnavailableError,
        MlflowException,
        MachineFault,
    ):
        app.add_exception_handler(library_error, _library_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=max_body_bytes(max_records))
    app.add_middleware(CatchAllMiddleware)


def max_body_bytes(max_records: int) -> int:
    return max_records * BYTES_PER_RECORD + BODY_SLACK_BYTES


class BodySizeLimitMiddleware:
    """Answer 413 to bodies above ``max_bytes``: by ``Content-Length`` before reading, else as
    the bytes arrive (a chunked upload cannot announce its size)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_bytes:
            await _json_error(413, self._message())(scope, receive, send)
            return
        received = 0

        async def bounded_receive() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                # FastAPI re-raises an HTTPException met while reading the body.
                raise HTTPException(status_code=413, detail=self._message())
            return message

        await self.app(scope, bounded_receive, send)

    def _message(self) -> str:
        return f"request body larger than {self.max_bytes:,} bytes"


class CatchAllMiddleware:
    """Log an unexpected exception with an id, and answer a JSON 500 that quotes only the id."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception:
            error_id = uuid.uuid4().hex[:12]
            logger.exception("error %s on %s %s", error_id, scope["method"], scope["path"])
            if started:  # too late for a clean answer: let the server close the connection
                raise
            detail = f"internal error (id {error_id}); see the server log"
            await _json_error(500, detail)(scope, receive, send)
