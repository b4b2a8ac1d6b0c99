"""Reading what a form sends (text boxes of one item a line, ``name = value`` lines) into
the values the API's bodies take; the bodies themselves still validate them."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from tollgate.broker.catalogue import ServiceField
from tollgate.core.database import MAX_ID
from tollgate.core.errors import BadRequest


def lines(text: str) -> list[str]:
    """The non-empty lines of a text box, trimmed."""
    return [line.strip() for line in text.splitlines() if line.strip()]


def pairs(text: str) -> dict[str, str]:
    """``name = value`` lines (``name: value`` too) as a mapping; BadRequest names the
    first line that is neither."""
    found: dict[str, str] = {}
    for line in lines(text):
        name, sep, value = line.partition("=") if "=" in line else line.partition(":")
        if not sep or not name.strip() or not value.strip():
            raise BadRequest(f"Write each line as name = value: {line!r}", code="invalid_form")
        found[name.strip()] = value.strip()
    return found


def written_pairs(values: dict[str, int]) -> str:
    """A mapping as the ``name = value`` lines :func:`pairs` reads."""
    return "\n".join(f"{name} = {value}" for name, value in sorted(values.items()))


def whole_number(text: str, what: str) -> int:
    """A whole number typed into a field; BadRequest names the field otherwise."""
    try:
        return int(text.strip())
    except ValueError as exc:
        raise BadRequest(f"{what} must be a whole number", code="invalid_form") from exc


CREDENTIAL_FIELD = "field_"
"""Form names of credential fields: ``field_<name>``, apart from the form's own fields."""


def credentials(fields: list[ServiceField], form: Mapping[str, Any]) -> dict[str, Any]:
    """A service's credential values as a form sent them: a box is true when ticked (the
    form shows the stored state); an empty text field is left out, so a change keeps the
    stored value (a secret is never shown back to be sent again)."""
    found: dict[str, Any] = {}
    for field in fields:
        sent = form.get(f"{CREDENTIAL_FIELD}{field.name}")
        if field.type == "boolean":
            found[field.name] = sent == "yes"
        elif isinstance(sent, str) and sent.strip():
            found[field.name] = sent.strip()
    return found


def optional_id(text: str, what: str) -> int | None:
    """An id typed into a filter, or None when the field is empty."""
    if not text.strip():
        return None
    number = whole_number(text, what)
    if not 1 <= number <= MAX_ID:
        raise BadRequest(f"{what} must be between 1 and {MAX_ID}", code="invalid_form")
    return number


def day_start(text: str, what: str, *, days_after: int = 0) -> datetime | None:
    """The start (UTC) of the day typed as ``YYYY-MM-DD``, moved ``days_after`` days on
    (1 makes a day inclusive as an end); None when the field is empty."""
    if not text.strip():
        return None
    try:
        day = date.fromisoformat(text.strip())
    except ValueError as exc:
        raise BadRequest(f"{what} must be a date (YYYY-MM-DD)", code="invalid_form") from exc
    return datetime.combine(day, time(), UTC) + timedelta(days=days_after)
