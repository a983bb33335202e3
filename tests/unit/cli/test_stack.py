"""`bikecount up`: its options override the settings they are named for, and what it prints
under "Try:" are commands that work as pasted into bash."""

from __future__ import annotations

import inspect
import json
import shutil
import subprocess

import pytest

from bikecount.cli.stack.ready import FALLBACK_RECORD, example_commands
from bikecount.cli.stack.up import LISTEN_SETTINGS, up_command, with_listen_options
from bikecount.config import Settings
from bikecount.stack.services import ServiceSpec

# A real counter whose name has an apostrophe, as the export writes it.
QUAI = {
    "nom_compteur": "18 quai de l'Hôtel de Ville NO-SE",
    "date": "2021-06-01T08:00:00+02:00",
    "coordinates": "48.853720,2.357020",
}


def bodies_as_bash_reads_them(command: str) -> list[dict[str, object]]:
    """Run ``command`` in bash with ``curl`` a function that prints its arguments, one a line,
    and return the JSON bodies it was given after ``-d``."""
    script = "curl() { printf '%s\\n' \"$@\"; }\n" + command
    arguments = subprocess.run(
        ["bash", "-c", script], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    return [json.loads(arguments[i + 1]) for i, arg in enumerate(arguments) if arg == "-d"]


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash is not installed")
@pytest.mark.parametrize("record", [QUAI, FALLBACK_RECORD], ids=["apostrophe", "fallback"])
def test_every_try_line_reaches_curl_whole(record: dict[str, str]) -> None:
    legacy = ServiceSpec("classmodel", ("true",), "127.0.0.1", 8080, "--port", "the legacy API")
    commands = example_commands("http://127.0.0.1:8000", legacy, record)

    bodies = [body for command in commands for body in bodies_as_bash_reads_them(command)]

    assert bodies[0] == {"records": [record], "model_type": "rf"}
    assert bodies[1]["model_type"] == "rf" and bodies[1]["test_mode"] is True
    assert bodies[2] == {"records": [record]}


def test_every_listen_option_is_a_setting_and_an_option_of_up() -> None:
    options = inspect.signature(up_command).parameters

    assert set(LISTEN_SETTINGS) <= set(Settings.model_fields)
    assert set(LISTEN_SETTINGS) <= set(options)
    assert {name for name in options if name.endswith("_port")} <= set(LISTEN_SETTINGS)


def test_only_the_listen_options_given_override_the_settings() -> None:
    settings = Settings(api_port=8100, mlflow_port=5100)
    params = {"mlflow_port": 5200, "api_port": None, "host": "0.0.0.0", "legacy": True}

    run = with_listen_options(settings, params)

    assert (run.mlflow_port, run.api_port, run.host) == (5200, 8100, "0.0.0.0")
    assert (settings.mlflow_port, settings.host) == (5100, Settings().host)
