"""The dashboard's clear states: what is missing, and the command that gets it.

Pure functions returning text, so that the pages show them and the tests check them.
"""

from __future__ import annotations

from datetime import date

START_STACK = "bikecount up"


def api_down(api_url: str, detail: str) -> str:
    return (
        f"**The RegModel API at {api_url} does not answer**, so the model cannot be asked. "
        f"Start the stack with `{START_STACK}` (or set `BIKECOUNT_PIPELINE_API_URL`). "
        f"Detail: {detail}"
    )


def mlflow_down(tracking_uri: str, detail: str) -> str:
    return (
        f"**MLflow at {tracking_uri} does not answer**, so the models and their metrics cannot "
        f"be listed. Start the stack with `{START_STACK}` (or set `BIKECOUNT_MLFLOW_TRACKING_URI`)."
        f" Detail: {detail}"
    )


def store_empty(db_url: str) -> str:
    return (
        f"**The pipeline store holds no counts yet** ({db_url}). A first `{START_STACK}` fills it "
        "with the generated recent weeks and a forecast of the coming day; or ingest days "
        "yourself: `bikecount pipeline ingest --date YYYY-MM-DD --source synthetic`."
    )


def no_forecast(day: date) -> str:
    return (
        f"**No forecast of {day} in the store yet.** Make it with "
        f"`bikecount pipeline predict --date {day}` (the daily predict DAG does it after midnight)."
    )


def no_health(day: date) -> str:
    return (
        f"**No counter health in the store yet.** Check a day with "
        f"`bikecount pipeline health --date {day}` (the daily ingest DAG does it after each day)."
    )


def no_champion(model_type: str) -> str:
    return (
        f"**No {model_type} champion yet**: nothing is served for this type. Train one with "
        f"`bikecount train --model {model_type}` (a first `{START_STACK}` trains every type)."
    )


def no_audit() -> str:
    return (
        "**No monitor-and-retrain decision recorded yet.** Run one with "
        "`bikecount pipeline monitor-retrain` (the weekly DAG does it)."
    )


def no_daily_errors() -> str:
    return (
        "**No daily forecast error yet**: a day is scored once both its forecast and its counts "
        "are stored (`bikecount pipeline score --date YYYY-MM-DD`)."
    )


def unknown_counter(counter: str) -> str:
    return f"**No counter named {counter!r} in the store.** Choose one in the list."
