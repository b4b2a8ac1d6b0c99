"""Calendar helpers: UTC days and months, and times read from requests."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Annotated

from pydantic import AfterValidator, AwareDatetime


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


def in_utc(moment: datetime) -> datetime:
    """``moment`` in UTC (a naive one taken as UTC); ValueError when UTC cannot hold it.

    ``0001-01-01T00:00+14:00`` and ``9999-12-31T23:59-14:00`` parse, but fall outside the
    years 1 to 9999 once in UTC: a request giving one is refused (422), never a 500.
    """
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC)
    except OverflowError as exc:
        raise ValueError("the time is outside the years 1 to 9999 in UTC") from exc


UTCMoment = Annotated[AwareDatetime, AfterValidator(in_utc)]
"""A time a request gives with its offset, held in UTC."""

UTCMomentOrNaive = Annotated[datetime, AfterValidator(in_utc)]
"""A time a request gives with or without an offset (without: UTC), held in UTC."""
