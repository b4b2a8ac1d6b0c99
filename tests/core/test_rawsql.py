"""Driver-level statements (core.rawsql): ``:name`` parameters in each driver's style, values
converted by the columns' own types, one unit of work driving a sqlite3 cursor."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime

from sqlalchemy import JSON, Column, Integer, MetaData, String, Table
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import make_url

from tollgate.core import rawsql
from tollgate.core.database import UTCDateTime

NOTES = Table(
    "notes",
    MetaData(),
    Column("id", Integer, primary_key=True),
    Column("body", String(50)),
    Column("tags", JSON),
    Column("at", UTCDateTime),
)


def test_parameters_take_each_drivers_style_and_a_repeated_name_its_value_again() -> None:
    template = "UPDATE t SET a = a - :n, b = b - :n WHERE id = :id AND x::int = 1"
    lite = rawsql.statement(template, sqlite.dialect())
    pg = rawsql.statement(template, make_url("postgresql+asyncpg://").get_dialect()())

    assert lite.sql == "UPDATE t SET a = a - ?, b = b - ? WHERE id = ? AND x::int = 1"
    assert pg.sql == "UPDATE t SET a = a - $1, b = b - $2 WHERE id = $3 AND x::int = 1"
    assert lite.values({"n": 2, "id": 7}) == pg.values({"n": 2, "id": 7}) == (2, 2, 7)


def test_an_insert_converts_values_as_the_columns_types_do() -> None:
    insert = rawsql.insert(NOTES, ("body", "tags", "at"), sqlite.dialect(), {"id": "41 + 1"})
    at = datetime(2026, 12, 7, 12, 30, tzinfo=UTC)

    assert insert.sql == "INSERT INTO notes (body, tags, at, id) VALUES (?, ?, ?, 41 + 1)"
    [row] = insert.rows([{"body": "hi", "tags": {"a": [1]}, "at": at}])
    assert row[0] == "hi"
    assert row[1] == '{"a": [1]}'
    assert row[2] == "2026-12-07 12:30:00.000000"


def test_a_unit_of_work_runs_on_a_cursor_and_gets_the_rows_it_asked_for() -> None:
    dialect = sqlite.dialect()
    connection = sqlite3.connect(":memory:")
    connection.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT, tags TEXT, at TEXT)")
    insert = rawsql.insert(NOTES, ("id", "body"), dialect)
    count = rawsql.statement("SELECT count(*), max(body) FROM notes WHERE id > :above", dialect)

    def work() -> rawsql.Steps[tuple[int, str]]:
        yield rawsql.RunMany(insert, [{"id": 1, "body": "a"}, {"id": 2, "body": "b"}])
        yield rawsql.RunMany(insert, [])  # nothing to write: nothing run
        row = yield rawsql.Run(count, {"above": 0}, returns=True)
        assert row is not None
        return int(row[0]), str(row[1])

    assert rawsql.drive_cursor(work(), connection.cursor()) == (2, "b")
