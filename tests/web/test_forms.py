"""What the pages read from forms and how their lists are paged (no browser needed)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tollgate.core.errors import BadRequest
from tollgate.web import forms
from tollgate.web.service import Window


def test_price_lines_are_read_as_name_value_pairs_and_a_line_without_a_value_is_named() -> None:
    read = forms.pairs("echo = 5\n\n  add: 7  \n")
    written = forms.written_pairs({"echo": 5, "add": 7})

    with pytest.raises(BadRequest, match="'echo five'"):
        forms.pairs("echo = 5\necho five")
    assert read == {"echo": "5", "add": "7"}
    assert forms.pairs(written) == {"add": "7", "echo": "5"}


def test_a_day_filter_starts_at_midnight_utc_and_an_end_day_counts_whole() -> None:
    since = forms.day_start("2026-03-01", "From")
    until = forms.day_start("2026-03-01", "To", days_after=1)

    with pytest.raises(BadRequest, match="From must be a date"):
        forms.day_start("March", "From")
    assert since == datetime(2026, 3, 1, tzinfo=UTC)
    assert until == datetime(2026, 3, 2, tzinfo=UTC)
    assert forms.day_start("  ", "From") is None


def test_an_id_filter_outside_the_database_range_is_refused_before_any_query() -> None:
    with pytest.raises(BadRequest, match="between 1 and"):
        forms.optional_id("99999999999", "The actor's user id")
    assert forms.optional_id("", "The actor's user id") is None
    assert forms.optional_id(" 42 ", "The actor's user id") == 42


def test_a_window_links_to_the_pages_before_and_after_it_only_when_there_are_some() -> None:
    first = Window(offset=0, limit=50, shown=50, total=120)
    middle = Window(offset=50, limit=50, shown=50, total=120)
    last = Window(offset=100, limit=50, shown=20, total=120)
    unknown_total = Window(offset=0, limit=50, shown=50, more=True)

    assert (first.previous, first.next, first.first, first.last) == (None, 50, 1, 50)
    assert (middle.previous, middle.next) == (0, 100)
    assert (last.previous, last.next, last.last) == (50, None, 120)
    assert unknown_total.next == 50
    assert Window(offset=0, limit=50, shown=0, total=0).first == 0
