"""gateway upstreams

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-21 06:29:52.993268
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from tollgate.core.database import UTCDateTime, utcnow

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "upstreams",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("transport", sa.String(length=16), nullable=False),
        sa.Column("url", sa.String(length=2000), nullable=True),
        sa.Column("command", sa.String(length=2000), nullable=True),
        sa.Column("args", sa.JSON(), nullable=False),
        sa.Column("env_envelope", sa.String(length=20000), nullable=True),
        sa.Column("auth_mode", sa.String(length=16), nullable=False),
        sa.Column("headers_envelope", sa.String(length=20000), nullable=True),
        sa.Column("broker_service", sa.String(length=64), nullable=True),
        sa.Column("broker_header", sa.String(length=500), nullable=True),
        sa.Column("price", sa.Integer(), nullable=False),
        sa.Column("tool_prices", sa.JSON(), nullable=False),
        sa.Column("tools_allowed", sa.JSON(), nullable=False),
        sa.Column("tools_denied", sa.JSON(), nullable=False),
        sa.Column("timeout_seconds", sa.Float(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("protocol_era", sa.String(length=16), nullable=True),
        sa.Column("catalogue", sa.JSON(), nullable=False),
        sa.Column("catalogue_updated_at", UTCDateTime(), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("last_error", sa.String(length=2000), nullable=True),
        sa.Column("last_seen_at", UTCDateTime(), nullable=True),
        sa.Column("created_at", UTCDateTime(), server_default=utcnow(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), server_default=utcnow(), nullable=False),
        sa.CheckConstraint(
            "auth_mode IN ('none', 'static', 'broker')", name=op.f("ck_upstreams_auth_mode_known")
        ),
        sa.CheckConstraint(
            "transport IN ('streamable_http', 'stdio')", name=op.f("ck_upstreams_transport_known")
        ),
        sa.CheckConstraint("price >= 0", name=op.f("ck_upstreams_price_not_negative")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_upstreams")),
        sa.UniqueConstraint("name", name=op.f("uq_upstreams_name")),
    )
    with op.batch_alter_table("tool_calls", schema=None) as batch_op:
        batch_op.add_column(sa.Column("instance_id", sa.String(length=32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("tool_calls", schema=None) as batch_op:
        batch_op.drop_column("instance_id")

    op.drop_table("upstreams")
