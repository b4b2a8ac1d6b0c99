"""Columns stored as AES-GCM envelopes, bound to their row, and their key rotation."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import MetaData, String, Table, TypeDecorator, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from tollgate.core.crypto import Keyring

ROTATION_BATCH_SIZE = 500
"""Rows re-encrypted per statement batch: bounded memory on big tables."""


class Envelope(TypeDecorator[str]):
    """A text column holding AES-GCM envelopes (stored as plain ``VARCHAR``): the type marks
    the column as encrypted, so a test can check that key rotation covers every such column."""

    impl = String
    cache_ok = True


@dataclass(frozen=True)
class EncryptedColumn:
    """A column whose values are envelopes; its table's ``id`` is bound as associated data."""

    table: Table
    column: str

    @property
    def label(self) -> str:
        """``table.column``, as rotation reports it."""
        return f"{self.table.name}.{self.column}"


def encrypted_column(model: type[object], column: str) -> EncryptedColumn:
    """The encrypted column ``column`` of a mapped class (its type must be :class:`Envelope`)."""
    table = getattr(model, "__table__", None)
    if not isinstance(table, Table) or not isinstance(table.c[column].type, Envelope):
        raise TypeError(f"{model.__name__}.{column} is not an Envelope column")
    return EncryptedColumn(table, column)


def envelope_columns(metadata: MetaData) -> set[str]:
    """``table.column`` of every column of ``metadata`` typed :class:`Envelope`."""
    return {
        f"{table.name}.{column.name}"
        for table in metadata.tables.values()
        for column in table.columns
        if isinstance(column.type, Envelope)
    }


def associated_data(table_name: str, column: str, row_id: object) -> str:
    """What binds an envelope to its row: moving it to another row or column breaks it."""
    return f"{table_name}.{column}:{row_id}"


async def reencrypt_column(session: AsyncSession, keyring: Keyring, entry: EncryptedColumn) -> int:
    """Re-seal every value of one column not yet under the primary key."""
    table, column = entry.table, entry.table.c[entry.column]
    rotated, last_id = 0, None
    while True:
        query = select(table.c.id, column).where(column.is_not(None)).order_by(table.c.id)
        if last_id is not None:
            query = query.where(table.c.id > last_id)
        rows = (await session.execute(query.limit(ROTATION_BATCH_SIZE))).all()
        if not rows:
            return rotated
        for row_id, envelope in rows:
            if keyring.needs_rotation(envelope):
                aad = associated_data(table.name, entry.column, row_id)
                fresh = keyring.encrypt(keyring.decrypt(envelope, aad), aad)
                await session.execute(
                    update(table).where(table.c.id == row_id).values({entry.column: fresh})
                )
                rotated += 1
        last_id = rows[-1][0]


async def reencrypt_all(
    session: AsyncSession, keyring: Keyring, columns: Iterable[EncryptedColumn]
) -> dict[str, int]:
    """Re-seal every value of ``columns``; returns how many values each needed."""
    return {entry.label: await reencrypt_column(session, keyring, entry) for entry in columns}
