"""What one call of ``bikecount`` shares between its root callback and its command: the settings
and the registry, each made once."""

from __future__ import annotations

import typer
from pydantic import ValidationError

from bikecount.cli.console import fail
from bikecount.config import Settings
from bikecount.registry import Registry, bound_mlflow_requests

ENV_PREFIX = str(Settings.model_config.get("env_prefix", ""))


class Invocation:
    """The root callback's ``ctx.obj``: one per call of the command line.

    The settings are read when the command first asks for them, not by the callback: the
    callback also runs for ``bikecount train --help``, which must work whatever the settings.
    """

    def __init__(self) -> None:
        self._settings: Settings | None = None
        self._registry: Registry | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = read_settings()
        return self._settings

    @property
    def registry(self) -> Registry:
        if self._registry is None:
            self._registry = Registry(self.settings)
        return self._registry


def settings_of(ctx: typer.Context) -> Settings:
    """The settings of this call of the command line, read at the first ask."""
    return ctx.ensure_object(Invocation).settings


def registry_of(ctx: typer.Context) -> Registry:
    """The registry of this call's settings (its MLflow client is made at its first use)."""
    return ctx.ensure_object(Invocation).registry


def read_settings() -> Settings:
    """The ``BIKECOUNT_*`` settings, with MLflow's client bounded by them.

    Exits with one line naming each invalid variable (not pydantic's report, which quotes the
    values given: a secret's among them).
    """
    try:
        settings = Settings()
    except ValidationError as exc:
        fail(f"invalid settings: {describe_invalid(exc)}")
    # The process's start: no thread runs yet to race with this write of the environment.
    bound_mlflow_requests(settings)
    return settings


def describe_invalid(exc: ValidationError) -> str:
    """``BIKECOUNT_ENV: Input should be 'dev' or 'prod'; ...``: each problem with the variable
    it comes from (a rule spanning several variables names them in its message)."""
    problems = []
    for error in exc.errors(include_url=False, include_input=False):
        message = error["msg"].removeprefix("Value error, ")
        if error["loc"]:
            message = f"{ENV_PREFIX}{str(error['loc'][0]).upper()}: {message}"
        problems.append(message)
    return "; ".join(problems)
