"""docs/settings.md lists every setting with its description, as the model has them now."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import TEST_CLIENT_HOST
from tollgate.core.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = ROOT / "docs" / "settings.md"
GENERATOR = ROOT / "tools" / "settings_doc.py"


def _rows() -> dict[str, str]:
    """The reference's table rows, by the first setting name they show."""
    rows: dict[str, str] = {}
    for line in REFERENCE.read_text(encoding="utf-8").splitlines():
        if line.startswith("| `"):
            rows[line.split("`")[1]] = line
    return rows


def _primary_name(attribute: str) -> str:
    alias = Settings.model_fields[attribute].validation_alias
    choices = getattr(alias, "choices", [alias])
    return str(choices[0])


@pytest.mark.parametrize("attribute", list(Settings.model_fields))
def test_every_setting_has_a_description(attribute: str) -> None:
    description = Settings.model_fields[attribute].description
    assert description, f"{attribute} has no description"
    assert description.endswith("."), description


@pytest.mark.parametrize("attribute", list(Settings.model_fields))
def test_the_settings_reference_lists_every_setting_with_its_description(
    attribute: str,
) -> None:
    row = _rows().get(_primary_name(attribute))
    assert row is not None, f"{_primary_name(attribute)} is missing from {REFERENCE}"
    description = Settings.model_fields[attribute].description or ""
    assert description.replace("|", "\\|") in row


def test_the_settings_reference_lists_no_setting_the_model_lacks() -> None:
    names = {_primary_name(attribute) for attribute in Settings.model_fields}
    assert set(_rows()) == names


def test_the_settings_reference_is_what_the_generator_writes_now() -> None:
    result = subprocess.run(
        [sys.executable, str(GENERATOR), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_the_test_client_host_is_no_production_default() -> None:
    assert TEST_CLIENT_HOST not in Settings().allowed_hosts
