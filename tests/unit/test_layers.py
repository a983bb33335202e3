"""The layers stay apart: what low modules may import, and where a Registry is built.

Read from the source (no import): a leak shows as the module and the import that breaks the rule.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "src" / "bikecount"

# Where one Registry per process (or per app) is built; everything else is given one.
REGISTRY_BUILDERS = {
    "api/regmodel.py",  # the app factories
    "api/classmodel.py",
    "cli/context.py",  # the CLI's invocation
    "dashboard/resources.py",  # the dashboard process's resources
    "stack/__init__.py",  # `bikecount up`, once its MLflow server is up
}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(path: Path) -> set[str]:
    """The modules ``path`` imports, at any depth of its code (lazy imports count)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names |= {f"{node.module}.{alias.name}" for alias in node.names}
    return names


# The pipeline store's tables are the one part of the pipeline the dashboard reads (a shared
# contract, like records.py): its queries are built on them.
STORE = "bikecount.pipeline.store"


def leaks(folder: str, forbidden: tuple[str, ...]) -> list[str]:
    """``module imports name`` for each import under ``folder`` of a ``forbidden`` module."""
    found = []
    for path in sorted((PACKAGE / folder).rglob("*.py")):
        for name in sorted(imported(path)):
            if name.startswith(forbidden) and not name.startswith(STORE):
                found.append(f"{module_name(path)} imports {name}")
    return found


@pytest.mark.parametrize(
    ("folder", "forbidden"),
    [
        ("dashboard", ("bikecount.pipeline", "bikecount.api", "bikecount.cli")),
        ("monitoring", ("bikecount.pipeline", "bikecount.api", "bikecount.cli")),
        ("models", ("bikecount.registry", "bikecount.api", "bikecount.cli", "mlflow")),
    ],
)
def test_lower_layers_do_not_import_higher_ones(folder: str, forbidden: tuple[str, ...]) -> None:
    assert leaks(folder, forbidden) == []


def test_the_settings_import_no_other_module_of_bikecount_but_the_model_names() -> None:
    ours = {name for name in imported(PACKAGE / "config.py") if name.startswith("bikecount")}
    assert ours <= {"bikecount.model_types", "bikecount.model_types.RegressorType"}


def test_the_drift_computation_does_no_io() -> None:
    names = imported(PACKAGE / "monitoring" / "drift.py")
    io = ("mlflow", "bikecount.registry", "bikecount.data.io", "bikecount.fingerprint")
    assert sorted(n for n in names if n.startswith(io)) == []


def test_a_registry_is_built_only_where_a_process_starts() -> None:
    builders = set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id == "Registry"
            ):
                builders.add(path.relative_to(PACKAGE).as_posix())
    assert builders == REGISTRY_BUILDERS
