"""Write the settings reference, ``docs/settings.md``, from the ``Settings`` model.

Usage: ``python tools/settings_doc.py`` writes it; ``--check`` exits 1 when the file differs
from what the model gives (``make lint`` runs that, so the reference cannot go stale).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from pydantic import AliasChoices, TypeAdapter
from pydantic.fields import FieldInfo
from pydantic_settings import NoDecode

from tollgate.core.settings import Settings

REFERENCE = Path(__file__).resolve().parents[1] / "docs" / "settings.md"

HEADER = """\
# Settings reference

<!-- Generated from src/tollgate/core/settings.py by `python tools/settings_doc.py`: do not
edit by hand. `make lint` and tests/core/test_settings_reference.py fail when it is stale. -->

Tollgate reads its settings from the environment, or from a `.env` file in the folder it
starts in; names are case-insensitive. The names the source systems use (`DATABASE_URL`,
`LOG_LEVEL`, `MCP_TOKEN`, ...) are accepted as they are, and also with a `TOLLGATE_` prefix;
Tollgate's own settings always start with `TOLLGATE_`. Lists are comma-separated unless the
setting says JSON. Secrets left empty are generated on the first start into the data
directory (mode 0600) and announced once in the log. `DEBUG` is accepted and ignored:
Tollgate never serves debug pages.

| setting | default | meaning |
|---|---|---|
"""


def names(field: FieldInfo, attribute: str) -> list[str]:
    """The environment names of one setting, the first being the one to document."""
    alias = field.validation_alias
    if isinstance(alias, AliasChoices):
        return [str(choice) for choice in alias.choices]
    if isinstance(alias, str):
        return [alias]
    return [attribute.upper()]


def shown_default(field: FieldInfo) -> str:
    """A setting's default as it would be written in the environment."""
    value = field.get_default(call_default_factory=True)
    if value is None:
        return "(unset)"
    if value == "" or value == []:
        return "(empty)"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, list) and NoDecode in field.metadata:
        return f"`{','.join(str(item) for item in value)}`"
    if isinstance(value, list | dict):
        plain = TypeAdapter(Any).dump_python(value, mode="json")
        return f"`{json.dumps(plain, separators=(',', ':'))}`"
    return f"`{value}`"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def row(attribute: str, field: FieldInfo) -> str:
    """One table row: the names, the default and the description."""
    first, *others = names(field, attribute)
    name = f"`{first}`" + "".join(f" (or `{other}`)" for other in others)
    return f"| {name} | {_cell(shown_default(field))} | {_cell(field.description or '')} |\n"


def render() -> str:
    """The whole reference, one row per setting in the model's order."""
    rows = "".join(row(attribute, field) for attribute, field in Settings.model_fields.items())
    return HEADER + rows


def main(argv: list[str]) -> int:
    """Write the reference, or with ``--check`` report whether it is current."""
    text = render()
    if "--check" in argv:
        if not REFERENCE.exists() or REFERENCE.read_text(encoding="utf-8") != text:
            print(f"{REFERENCE} is stale: run python tools/settings_doc.py", file=sys.stderr)
            return 1
        return 0
    REFERENCE.parent.mkdir(parents=True, exist_ok=True)
    REFERENCE.write_text(text, encoding="utf-8")
    print(f"wrote {REFERENCE}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
