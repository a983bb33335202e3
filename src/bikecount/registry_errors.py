"""What the registry raises: "not there" (:class:`ModelNotFoundError`) told apart from "cannot be
asked" (:class:`RegistryUnavailableError`), and MLflow's failures turned into the latter with no
credentials in the message."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from mlflow.exceptions import MlflowException

from bikecount.mlflow_setup import shown_uri

# MLflow's error codes for "no such model, version or alias" (a missing alias is reported as an
# invalid parameter by the registry store).
NOT_FOUND_CODES = frozenset({"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"})


class ModelNotFoundError(LookupError):
    """No registered model (or version, or champion) matches the request."""


class RegistryUnavailableError(RuntimeError):
    """MLflow cannot be reached, or failed to answer: nothing can be said about what exists."""


def unavailable(tracking_uri: str, what: str, detail: str) -> RegistryUnavailableError:
    """The error saying MLflow at ``tracking_uri`` could not do ``what``, with no credentials of
    the URI in it (MLflow's own message quotes the URLs it asked)."""
    shown = shown_uri(tracking_uri)
    detail = detail.replace(tracking_uri.rstrip("/"), shown)
    return RegistryUnavailableError(f"MLflow at {shown} could not {what}: {detail}")


@contextmanager
def asking(tracking_uri: str, what: str) -> Iterator[None]:
    """MLflow's failures as RegistryUnavailableError (callers handle "not found" first)."""
    try:
        yield
    except MlflowException as exc:
        raise unavailable(tracking_uri, what, exc.message) from exc
    except OSError as exc:  # a local store's disk, a connection the client did not wrap
        raise unavailable(tracking_uri, what, str(exc)) from exc
