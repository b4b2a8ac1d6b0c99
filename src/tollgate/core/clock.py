"""Calendar helpers: UTC days and months."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta


def utc_now() -> datetime:
    """The worker's clock in UTC; never used for expiry decisions (see database.utcnow)."""
    return datetime.now(UTC)


def start_of_day(moment: datetime) -> datetime:
    """Midnight UTC of ``moment``'s day."""
    return moment.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def start_of_month(moment: datetime) -> datetime:
    """Midnight UTC on the first of ``moment``'s month."""
    return start_of_day(moment).replace(day=1)


def first_of_next_month(day: date) -> date:
    """The first day of the month after ``day``'s."""
    return (day.replace(day=28) + timedelta(days=4)).replace(day=1)


def month_key(moment: datetime) -> str:
    """``YYYY-MM`` for ``moment`` in UTC."""
    return moment.astimezone(UTC).strftime("%Y-%m")
