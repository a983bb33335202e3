"""Which lines of the services' output reach the console: warnings and errors only.

Every line goes to ``logs/<service>.log`` whatever this says; the console shows the stack's own
progress and, from the services, what someone must look at: warnings, errors and tracebacks.
Access logs (``"GET /health HTTP/1.1" 200``), start-up chatter and MLflow's client messages
("🏃 View run ...") stay in the log files; ``bikecount up --verbose`` shows everything.
"""

from __future__ import annotations

import re

# A level word as uvicorn ("WARNING:  ..."), Python logging ("ERROR name: ..."), gunicorn
# ("[2026-01-01 ...] [ERROR] ...") and Airflow write it.
LEVEL = re.compile(r"(?<![\w-])\[?(DEBUG|INFO|WARNING|WARN|ERROR|CRITICAL|FATAL)\]?(?![\w-])")
# Python's warnings module: "path.py:12: FutureWarning: ..." (and Streamlit's own form).
WARNING_CATEGORY = re.compile(r"\b\w*Warning: ")
# A deprecation inside a library the services run (MLflow's server on Starlette's WSGI
# middleware, say) is for that library's developers: nothing an operator can act on. Logs only.
DEPRECATION = re.compile(r"\b\w*DeprecationWarning: ")
TRACEBACK = "Traceback (most recent call last):"
SHOWN_LEVELS = {"WARNING", "WARN", "ERROR", "CRITICAL", "FATAL"}
# The supervisor's own notices about a service (a crash, a restart, giving up) always show.
SUPERVISOR = "[bikecount up] "


class LogFilter:
    """Decides, line by line and per service, whether a line is shown on the console.

    A line with a level shows when the level is a warning or worse; a traceback shows whole; a
    continuation line (indented, or without a level right after a shown one) follows the line
    before it, so that a multi-line warning is not cut in two.
    """

    def __init__(self) -> None:
        self._showing: dict[str, bool] = {}

    def show(self, service: str, line: str) -> bool:
        if line.startswith(SUPERVISOR):
            self._showing[service] = False
            return True
        if TRACEBACK in line:
            self._showing[service] = True
            return True
        level = LEVEL.search(line[:80])
        if level is not None:
            shown = level.group(1) in SHOWN_LEVELS
        elif WARNING_CATEGORY.search(line):
            shown = DEPRECATION.search(line) is None
        elif line[:1].isspace() or (self._showing.get(service) and not _looks_like_new(line)):
            return self._showing.get(service, False)
        else:
            shown = False
        self._showing[service] = shown
        return shown


def _looks_like_new(line: str) -> bool:
    # After a traceback, the exception line ("ValueError: ...") still belongs to it; an empty
    # line or an ordinary message ends it.
    return not line.strip() or re.match(r"^[\w.]+(Error|Exception|Exit)\b", line) is None
