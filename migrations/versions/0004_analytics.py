"""analytics

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-21 07:03:08.383955
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from tollgate.core.database import UTCDateTime, utcnow

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "cost_tracking",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("timestamp", UTCDateTime(), server_default=utcnow(), nullable=False),
        sa.Column("service_name", sa.String(length=64), nullable=False),
        sa.Column("operation_type", sa.String(length=64), nullable=True),
        sa.Column("tokens_used", sa.Integer(), nullable=True),
        sa.Column("cost_usd", sa.Numeric(precision=14, scale=6), nullable=False),
        sa.Column("session_id", sa.String(length=128), nullable=True),
        sa.Column("metadata", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cost_tracking")),
    )
    with op.batch_alter_table("cost_tracking", schema=None) as batch_op:
        batch_op.create_index(
            "ix_cost_tracking_service_timestamp", ["service_name", "timestamp"], unique=False
        )

    op.create_table(
        "error_logs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("timestamp", UTCDateTime(), server_default=utcnow(), nullable=False),
        sa.Column("error_type", sa.String(length=128), nullable=False),
        sa.Column("error_message", sa.Text(), nullable=False),
        sa.Column("stack_trace", sa.Text(), nullable=True),
        sa.Column("session_id", sa.String(length=128), nullable=True),
        sa.Column("tool_name", sa.String(length=200), nullable=True),
        sa.Column("service", sa.String(length=64), nullable=True),
        sa.Column("resolved", sa.Boolean(), nullable=False),
        sa.Column("resolved_at", UTCDateTime(), nullable=True),
        sa.Column("resolved_by", sa.String(length=320), nullable=True),
        sa.Column("metadata", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_error_logs")),
    )
    with op.batch_alter_table("error_logs", schema=None) as batch_op:
        batch_op.create_index(
            "ix_error_logs_resolved_timestamp", ["resolved", "timestamp"], unique=False
        )
        batch_op.create_index("ix_error_logs_timestamp", ["timestamp"], unique=False)

    op.create_table(
        "performance_metrics",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("timestamp", UTCDateTime(), server_default=utcnow(), nullable=False),
        sa.Column("metric_name", sa.String(length=128), nullable=False),
        sa.Column("metric_value", sa.Float(), nullable=False),
        sa.Column("metric_unit", sa.String(length=32), nullable=True),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_performance_metrics")),
    )
    with op.batch_alter_table("performance_metrics", schema=None) as batch_op:
        batch_op.create_index(
            "ix_performance_metrics_name_timestamp", ["metric_name", "timestamp"], unique=False
        )

    op.create_table(
        "sessions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("session_id", sa.String(length=128), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=True),
        sa.Column("started_at", UTCDateTime(), server_default=utcnow(), nullable=False),
        sa.Column("last_activity_at", UTCDateTime(), server_default=utcnow(), nullable=False),
        sa.Column("ended_at", UTCDateTime(), nullable=True),
        sa.Column("total_requests", sa.Integer(), nullable=False),
        sa.Column("total_errors", sa.Integer(), nullable=False),
        sa.Column("total_processing_ms", sa.Float(), nullable=False),
        sa.Column("metadata", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sessions")),
        sa.UniqueConstraint("session_id", name=op.f("uq_sessions_session_id")),
    )
    with op.batch_alter_table("sessions", schema=None) as batch_op:
        batch_op.create_index("ix_sessions_last_activity", ["last_activity_at"], unique=False)

    op.create_table(
        "usage_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("timestamp", UTCDateTime(), server_default=utcnow(), nullable=False),
        sa.Column("session_id", sa.String(length=128), nullable=True),
        sa.Column("event_type", sa.String(length=64), nullable=False),
        sa.Column("tool_name", sa.String(length=200), nullable=True),
        sa.Column("service", sa.String(length=64), nullable=True),
        sa.Column("response_time_ms", sa.Float(), nullable=True),
        sa.Column("success", sa.Boolean(), nullable=False),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("credits", sa.Integer(), nullable=False),
        sa.Column("metadata", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_usage_events")),
    )
    with op.batch_alter_table("usage_events", schema=None) as batch_op:
        batch_op.create_index("ix_usage_events_session", ["session_id"], unique=False)
        batch_op.create_index("ix_usage_events_timestamp", ["timestamp"], unique=False)
        batch_op.create_index(
            "ix_usage_events_tool_timestamp", ["tool_name", "timestamp"], unique=False
        )

    op.create_table(
        "usage_hourly",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("hour", UTCDateTime(), nullable=False),
        sa.Column("tool_name", sa.String(length=200), nullable=False),
        sa.Column("calls", sa.Integer(), nullable=False),
        sa.Column("errors", sa.Integer(), nullable=False),
        sa.Column("total_response_ms", sa.Float(), nullable=False),
        sa.Column("credits", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_usage_hourly")),
        sa.UniqueConstraint("hour", "tool_name", name="uq_usage_hourly_hour_tool"),
    )
    _hypertables_when_timescaledb_is_available()


TIME_SERIES = ("usage_events", "performance_metrics", "error_logs", "cost_tracking")


def _hypertables_when_timescaledb_is_available() -> None:
    """On PostgreSQL with TimescaleDB installable, make the time series hypertables.

    A hypertable's unique keys must include its time column, so the primary key becomes
    (id, timestamp) there. Elsewhere the tables stay plain, indexed on their timestamps.
    """
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    available = bind.execute(
        sa.text("SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'")
    ).first()
    if available is None:
        return
    op.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
    for table in TIME_SERIES:
        op.execute(f"ALTER TABLE {table} DROP CONSTRAINT pk_{table}")
        op.execute(f"ALTER TABLE {table} ADD CONSTRAINT pk_{table} PRIMARY KEY (id, timestamp)")
        op.execute(f"SELECT create_hypertable('{table}', 'timestamp', migrate_data => true)")


def downgrade() -> None:
    op.drop_table("usage_hourly")
    with op.batch_alter_table("usage_events", schema=None) as batch_op:
        batch_op.drop_index("ix_usage_events_tool_timestamp")
        batch_op.drop_index("ix_usage_events_timestamp")
        batch_op.drop_index("ix_usage_events_session")

    op.drop_table("usage_events")
    with op.batch_alter_table("sessions", schema=None) as batch_op:
        batch_op.drop_index("ix_sessions_last_activity")

    op.drop_table("sessions")
    with op.batch_alter_table("performance_metrics", schema=None) as batch_op:
        batch_op.drop_index("ix_performance_metrics_name_timestamp")

    op.drop_table("performance_metrics")
    with op.batch_alter_table("error_logs", schema=None) as batch_op:
        batch_op.drop_index("ix_error_logs_timestamp")
        batch_op.drop_index("ix_error_logs_resolved_timestamp")

    op.drop_table("error_logs")
    with op.batch_alter_table("cost_tracking", schema=None) as batch_op:
        batch_op.drop_index("ix_cost_tracking_service_timestamp")

    op.drop_table("cost_tracking")
