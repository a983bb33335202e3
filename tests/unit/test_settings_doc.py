"""docs/configuration.md is the page scripts/settings_doc.py makes from ``Settings``."""

from __future__ import annotations

import importlib.util
from types import ModuleType

from bikecount.config import Settings
from helpers import REPO


def settings_doc() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "settings_doc", REPO / "scripts" / "settings_doc.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_setting_has_a_description() -> None:
    missing = [name for name, field in Settings.model_fields.items() if not field.description]
    assert not missing, f"add Field(description=...) in src/bikecount/config.py for {missing}"


def test_the_configuration_page_is_up_to_date() -> None:
    doc = settings_doc()
    page = (REPO / "docs" / "configuration.md").read_text(encoding="utf-8")
    assert page == doc.render(), (
        "docs/configuration.md is out of date with bikecount.config.Settings: regenerate it "
        "with `make docs` (python scripts/settings_doc.py > docs/configuration.md)"
    )


def test_the_page_names_every_variable_once() -> None:
    page = (REPO / "docs" / "configuration.md").read_text(encoding="utf-8")
    for name in Settings.model_fields:
        assert page.count(f"| `BIKECOUNT_{name.upper()}` |") == 1, name
