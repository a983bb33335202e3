"""The dependencies pyproject declares match what the code imports.

A package imported by ``src/`` must be a runtime dependency (else a plain ``pip install bikecount``
breaks); one imported only by the tests, benchmarks, DAGs or CI scripts belongs in an extra; and a
runtime dependency that nothing imports needs a stated reason (a program run as a command, a
backend another library loads).
"""

from __future__ import annotations

import ast
import sys
import tomllib
from collections.abc import Iterable
from importlib.metadata import packages_distributions, requires

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from helpers import REPO

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
# Code beside the package: imported by the tests, or run as scripts (deploy/ci/).
BESIDE_THE_PACKAGE = ("tests", "benchmarks", "dags", "deploy/ci")
LOCAL_MODULES = {"bikecount"} | {
    path.stem for folder in BESIDE_THE_PACKAGE for path in (REPO / folder).rglob("*.py")
}
# Runtime dependencies used without an import of their own, and why.
USED_WITHOUT_IMPORT = {
    "pyarrow": "pandas' parquet engine (read_parquet, to_parquet)",
    "dvc": "the `dvc repro` pipeline of dvc.yaml",
    "uvicorn": "serves the APIs (`python -m uvicorn`)",
    "google-cloud-storage": "MLflow's gs:// artifact store (env=prod)",
}


def declared(*groups: str) -> set[str]:
    """The distribution names of the runtime dependencies and of the given extras.

    A metapackage (``apache-airflow``: no module of its own) declares its direct requirements.
    """
    specs = list(PYPROJECT["project"]["dependencies"])
    for group in groups:
        specs += PYPROJECT["project"]["optional-dependencies"][group]
    names = {canonicalize_name(Requirement(spec).name) for spec in specs}
    providing = {canonicalize_name(n) for ns in packages_distributions().values() for n in ns}
    for name in names - providing:
        wanted = [Requirement(spec) for spec in requires(name) or []]
        names |= {canonicalize_name(req.name) for req in wanted if req.marker is None}
    return names


def imported_modules(folders: Iterable[str]) -> set[str]:
    """The top-level third-party modules imported anywhere under ``folders``."""
    found: set[str] = set()
    for folder in folders:
        for path in (REPO / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Import):
                    found |= {alias.name.split(".")[0] for alias in node.names}
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    found.add(node.module.split(".")[0])
    return {
        name for name in found if name not in sys.stdlib_module_names and name not in LOCAL_MODULES
    }


def distributions(modules: Iterable[str]) -> dict[str, set[str]]:
    """Module -> the installed distributions that provide it."""
    providers = packages_distributions()
    return {
        module: {canonicalize_name(name) for name in providers.get(module, [])}
        for module in modules
    }


def undeclared(folders: Iterable[str], allowed: set[str]) -> dict[str, set[str]]:
    return {
        module: names
        for module, names in distributions(imported_modules(folders)).items()
        if not names & allowed
    }


def test_every_import_of_the_package_is_a_runtime_dependency() -> None:
    assert undeclared(["src"], declared()) == {}


def test_every_import_of_tests_benchmarks_dags_and_ci_scripts_is_declared() -> None:
    assert undeclared(BESIDE_THE_PACKAGE, declared("dev", "airflow")) == {}


def test_every_runtime_dependency_is_used_by_the_package() -> None:
    used = set().union(*distributions(imported_modules(["src"])).values())
    unused = declared() - used - set(USED_WITHOUT_IMPORT)
    assert unused == set(), "a runtime dependency nothing in src/ imports: move it to an extra"


@pytest.mark.parametrize("name", sorted(USED_WITHOUT_IMPORT))
def test_dependencies_used_without_import_are_declared(name: str) -> None:
    assert name in declared()
