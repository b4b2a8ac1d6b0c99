"""Statements the background writers run thousands of times a second (a call's record and
charge, its analytics rows), on the database driver's own cursor.

Building and executing a statement through SQLAlchemy costs several times what the database
takes to run it; for a handful of fixed statements that is most of a call's recording cost.
So their SQL is written once with ``:name`` parameters, turned into the driver's parameter
style for the dialect at hand, and values are converted by the columns' own SQLAlchemy types
(JSON, timestamps), so the rows read back exactly as ORM-written ones. Every value is a bound
parameter: nothing is ever formatted into the SQL.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Generator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

from sqlalchemy import ColumnElement, Table
from sqlalchemy.engine import Dialect

_PARAMETER = re.compile(r"(?<![:\w]):([a-z_][a-z0-9_]*)")

Processor = Callable[[Any], Any]

T = TypeVar("T")


def sql_text(expression: ColumnElement[Any], dialect: Dialect) -> str:
    """The SQL of an expression without parameters (such as the database clock)."""
    return str(expression.compile(dialect=dialect))


@dataclass(frozen=True)
class Statement:
    """One SQL statement in a dialect's parameter style, its parameters by name."""

    sql: str
    names: tuple[str, ...]
    processors: Mapping[str, Processor] = field(default_factory=dict)

    def values(self, params: Mapping[str, Any]) -> tuple[Any, ...]:
        """The positional values for one execution."""
        processors = self.processors
        return tuple(
            processors[name](params[name]) if name in processors else params[name]
            for name in self.names
        )

    def rows(self, params: Iterable[Mapping[str, Any]]) -> list[tuple[Any, ...]]:
        """The positional values for an ``executemany``."""
        return [self.values(row) for row in params]


def statement(
    template: str, dialect: Dialect, processors: Mapping[str, Processor] | None = None
) -> Statement:
    """``template`` (SQL with ``:name`` parameters) in the dialect's parameter style."""
    names: list[str] = []

    def placeholder(match: re.Match[str]) -> str:
        names.append(match.group(1))
        style = dialect.paramstyle
        if style == "qmark":
            return "?"
        if style == "numeric_dollar":
            return f"${len(names)}"
        if style in ("format", "pyformat"):
            return "%s"
        raise ValueError(f"unsupported parameter style {style}")

    sql = _PARAMETER.sub(placeholder, template)
    return Statement(sql, tuple(names), dict(processors or {}))


def insert(
    table: Table,
    columns: Sequence[str],
    dialect: Dialect,
    expressions: Mapping[str, str] | None = None,
) -> Statement:
    """An INSERT of ``columns`` (bound, converted by their types) and of ``expressions``
    (column -> SQL, such as the database clock)."""
    fixed = dict(expressions or {})
    names = [*columns, *fixed]
    values = [f":{name}" for name in columns] + list(fixed.values())
    # Identifiers from our own table metadata (checked against it below); values all bound.
    template = f"INSERT INTO {table.name} ({', '.join(names)}) VALUES ({', '.join(values)})"  # noqa: S608
    return statement(template, dialect, converters(table, columns, dialect))


def converters(table: Table, columns: Sequence[str], dialect: Dialect) -> dict[str, Processor]:
    """The bind processors of ``columns`` that do something for this dialect."""
    found: dict[str, Processor] = {}
    for name in columns:
        processor = table.c[name].type.dialect_impl(dialect).bind_processor(dialect)
        if processor is not None:
            found[name] = processor
    return found


@dataclass(frozen=True)
class Run:
    """One execution of a statement; with ``returns``, its first row is sent back."""

    statement: Statement
    params: Mapping[str, Any]
    returns: bool = False


@dataclass(frozen=True)
class RunMany:
    """An ``executemany`` of a statement over rows."""

    statement: Statement
    rows: Sequence[Mapping[str, Any]]


Step = Run | RunMany
Steps = Generator[Step, tuple[Any, ...] | None, T]
"""A unit of work written once for any driver: it yields the statements to run and is sent
the row a ``Run(returns=True)`` produced; its return value is the work's."""


class _Finished:
    def __init__(self, value: Any) -> None:
        self.value = value


def _advance(steps: Steps[T], sent: tuple[Any, ...] | None) -> Step | _Finished:
    """The next statement of a unit of work, or its result once it has returned."""
    try:
        return steps.send(sent)
    except StopIteration as finished:
        return _Finished(finished.value)


def drive_cursor(steps: Steps[T], cursor: Any) -> T:
    """Run ``steps`` on a DBAPI cursor (synchronous drivers: sqlite3)."""
    step = _advance(steps, None)
    while not isinstance(step, _Finished):
        row: tuple[Any, ...] | None = None
        if isinstance(step, RunMany):
            if step.rows:
                cursor.executemany(step.statement.sql, step.statement.rows(step.rows))
        else:
            cursor.execute(step.statement.sql, step.statement.values(step.params))
            found = cursor.fetchone() if step.returns else None
            row = tuple(found) if found is not None else None
        step = _advance(steps, row)
    return cast(T, step.value)


async def drive_asyncpg(steps: Steps[T], connection: Any) -> T:
    """Run ``steps`` on an asyncpg connection (its ``$n`` parameter style)."""
    step = _advance(steps, None)
    while not isinstance(step, _Finished):
        row: tuple[Any, ...] | None = None
        if isinstance(step, RunMany):
            if step.rows:
                await connection.executemany(step.statement.sql, step.statement.rows(step.rows))
        elif step.returns:
            found = await connection.fetchrow(
                step.statement.sql, *step.statement.values(step.params)
            )
            row = tuple(found) if found is not None else None
        else:
            await connection.execute(step.statement.sql, *step.statement.values(step.params))
        step = _advance(steps, row)
    return cast(T, step.value)
