"""credit holds: credits a process drew from an account's balance to reserve calls in memory

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03 16:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from tollgate.core.database import UTCDateTime, utcnow

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("mcp_accounts", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("credits_held", sa.Integer(), server_default="0", nullable=False)
        )
        batch_op.create_check_constraint(
            "credits_held_within_balance", "credits_held >= 0 AND credits_held <= credits_balance"
        )
    op.create_table(
        "credit_holds",
        sa.Column("instance_id", sa.String(length=32), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("amount", sa.Integer(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), server_default=utcnow(), nullable=False),
        sa.CheckConstraint("amount >= 0", name=op.f("ck_credit_holds_amount_not_negative")),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["mcp_accounts.id"],
            name=op.f("fk_credit_holds_account_id_mcp_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("instance_id", "account_id", name=op.f("pk_credit_holds")),
    )


def downgrade() -> None:
    op.drop_table("credit_holds")
    with op.batch_alter_table("mcp_accounts", schema=None) as batch_op:
        batch_op.drop_constraint("ck_mcp_accounts_credits_held_within_balance", type_="check")
        batch_op.drop_column("credits_held")
