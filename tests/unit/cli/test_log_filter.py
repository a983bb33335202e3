"""The console shows the services' warnings and errors, not their access logs or chatter."""

from __future__ import annotations

import pytest

from bikecount.cli.log_filter import LogFilter

HIDDEN = [
    'INFO:     127.0.0.1:51234 - "GET /health HTTP/1.1" 200 OK',
    "INFO:     Uvicorn running on http://127.0.0.1:8000 (Press CTRL+C to quit)",
    "[2026-12-01 21:00:00 +0000] [123] [INFO] Booting worker with pid: 123",
    "2026/12/01 21:00:01 INFO mlflow.store.db.utils: Creating initial MLflow database tables...",
    "🏃 View run rf-test at: http://127.0.0.1:5000/#/experiments/1/runs/abc",
    "Waiting up to 300 seconds for model version to finish creation. Model name: bikecount-rf",
    "  You can now view your Streamlit app in your browser.",
    "Successfully registered model 'bikecount-gbm'.",
]
SHOWN = [
    "WARNING:  Invalid HTTP request received.",
    "ERROR:    Exception in ASGI application",
    "2026/12/01 21:00:02 WARNING mlflow.models.model: Model logged without a signature",
    "[2026-12-01 21:00:00 +0000] [123] [ERROR] Worker (pid:124) was sent SIGKILL!",
    "/x/site-packages/sklearn/base.py:1: FutureWarning: the default will change",
    "WARNING bikecount.features: counter 'X' unseen: predicted as its nearest known counter",
]


@pytest.mark.parametrize("line", HIDDEN)
def test_chatter_and_access_logs_are_hidden(line: str) -> None:
    assert not LogFilter().show("regmodel", line)


@pytest.mark.parametrize("line", SHOWN)
def test_warnings_and_errors_are_shown(line: str) -> None:
    assert LogFilter().show("regmodel", line)


def test_a_traceback_is_shown_whole_then_chatter_is_hidden_again() -> None:
    log = LogFilter()
    lines = [
        "ERROR:    Exception in ASGI application",
        "Traceback (most recent call last):",
        '  File "/x/app.py", line 3, in call',
        "    raise ValueError('boom')",
        "ValueError: boom",
        'INFO:     127.0.0.1:1 - "GET /health HTTP/1.1" 200 OK',
        "Waiting up to 300 seconds for model version to finish creation.",
    ]
    assert [log.show("regmodel", line) for line in lines] == [True] * 5 + [False, False]


def test_services_are_followed_apart() -> None:
    log = LogFilter()
    assert log.show("mlflow", "ERROR:    something broke")
    assert not log.show("regmodel", "  an indented INFO-less line of another service")
    assert log.show("mlflow", "  the broken thing's detail")


def test_the_supervisors_notices_about_a_service_always_show() -> None:
    notice = "[bikecount up] mlflow exited with code -9; restarting it in 0.5 s (crash 1 of 5)"
    assert LogFilter().show("mlflow", notice)


def test_a_librarys_deprecation_warning_stays_in_the_log_with_its_source_line() -> None:
    # What MLflow's server printed at each start (its FastAPI app on Starlette's WSGI middleware).
    log = LogFilter()
    assert not log.show(
        "mlflow",
        "/x/site-packages/mlflow/server/fastapi_app.py:23: StarletteDeprecationWarning: "
        "starlette.middleware.wsgi is deprecated and will be removed in a future release.",
    )
    assert not log.show("mlflow", "  from starlette.middleware.wsgi import WSGIResponder")
    assert log.show("mlflow", "/x/site-packages/sklearn/base.py:1: FutureWarning: soon")
