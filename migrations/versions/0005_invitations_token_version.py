"""organization invitations and user token versions

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22 09:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from tollgate.core.database import UTCDateTime, utcnow

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("token_version", sa.Integer(), server_default="1", nullable=False)
        )

    op.create_table(
        "organization_invitations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("organization_id", sa.Integer(), nullable=False),
        sa.Column("invitee_user_id", sa.Integer(), nullable=True),
        sa.Column("invitee_email", sa.String(length=320), nullable=True),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("invited_by_user_id", sa.Integer(), nullable=True),
        sa.Column("created_at", UTCDateTime(), server_default=utcnow(), nullable=False),
        sa.Column("responded_at", UTCDateTime(), nullable=True),
        sa.CheckConstraint(
            "role IN ('owner', 'admin', 'member')",
            name=op.f("ck_organization_invitations_role_known"),
        ),
        sa.CheckConstraint(
            "status IN ('pending', 'accepted', 'declined', 'cancelled')",
            name=op.f("ck_organization_invitations_status_known"),
        ),
        sa.CheckConstraint(
            "invitee_user_id IS NOT NULL OR invitee_email IS NOT NULL",
            name=op.f("ck_organization_invitations_invitee_named"),
        ),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_organization_invitations_organization_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["invited_by_user_id"],
            ["users.id"],
            name=op.f("fk_organization_invitations_invited_by_user_id_users"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_organization_invitations")),
    )
    with op.batch_alter_table("organization_invitations", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_organization_invitations_organization_id"),
            ["organization_id"],
            unique=False,
        )
        batch_op.create_index(
            batch_op.f("ix_organization_invitations_invitee_user_id"),
            ["invitee_user_id"],
            unique=False,
        )
        batch_op.create_index(
            batch_op.f("ix_organization_invitations_invitee_email"),
            ["invitee_email"],
            unique=False,
        )


def downgrade() -> None:
    op.drop_table("organization_invitations")
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("token_version")
