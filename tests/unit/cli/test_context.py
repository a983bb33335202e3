"""The command line's settings: read once per call, invalid ones named in one line."""

from __future__ import annotations

from typer.testing import CliRunner

from bikecount.cli import app

INVALID = {"BIKECOUNT_ENV": "staging", "BIKECOUNT_API_INSTANCE": "not a secret?"}


def test_help_works_whatever_the_settings() -> None:
    result = CliRunner().invoke(app, ["train", "--help"], env=INVALID)
    assert result.exit_code == 0, result.output
    assert "--holdout-from" in result.output


def test_invalid_settings_are_one_error_naming_each_variable() -> None:
    result = CliRunner().invoke(app, ["models"], env=INVALID)
    assert result.exit_code == 1
    shown = " ".join(result.output.split())  # as Rich wraps it to the terminal's width
    assert shown.startswith("error: invalid settings: BIKECOUNT_ENV: Input should be 'dev' or")
    assert "; BIKECOUNT_API_INSTANCE: String should match pattern" in shown
    assert "not a secret?" not in shown and "Traceback" not in shown
