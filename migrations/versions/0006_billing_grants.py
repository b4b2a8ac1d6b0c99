"""billing grants: the credits each subscription's billing period was granted

Revision ID: 0006
Revises: 0004
Create Date: 2026-11-24 10:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from tollgate.core.database import UTCDateTime, utcnow

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "billing_grants",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("subscription_id", sa.String(length=100), nullable=False),
        sa.Column("period_start", sa.BigInteger(), nullable=False),
        sa.Column("tier", sa.String(length=32), nullable=False),
        sa.Column("allocation", sa.Integer(), nullable=False),
        sa.Column("created_at", UTCDateTime(), server_default=utcnow(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), server_default=utcnow(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["mcp_accounts.id"],
            name=op.f("fk_billing_grants_account_id_mcp_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_billing_grants")),
        sa.UniqueConstraint(
            "subscription_id", "period_start", name="uq_billing_grants_subscription_period"
        ),
    )
    with op.batch_alter_table("billing_grants", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_billing_grants_account_id"), ["account_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("billing_grants", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_billing_grants_account_id"))
    op.drop_table("billing_grants")
