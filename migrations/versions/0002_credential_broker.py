"""credential broker

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21 06:19:03.184257
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from tollgate.core.database import UTCDateTime, utcnow

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "service_definitions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("slug", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("description", sa.String(length=500), nullable=True),
        sa.Column("fields", sa.JSON(), nullable=False),
        sa.Column("created_at", UTCDateTime(), server_default=utcnow(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_service_definitions")),
        sa.UniqueConstraint("slug", name=op.f("uq_service_definitions_slug")),
    )
    op.create_table(
        "user_activity_logs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("actor_user_id", sa.Integer(), nullable=True),
        sa.Column("actor_token_prefix", sa.String(length=16), nullable=True),
        sa.Column("target_type", sa.String(length=32), nullable=True),
        sa.Column("target_id", sa.String(length=64), nullable=True),
        sa.Column("client_address", sa.String(length=64), nullable=True),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("created_at", UTCDateTime(), server_default=utcnow(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_user_activity_logs")),
    )
    with op.batch_alter_table("user_activity_logs", schema=None) as batch_op:
        batch_op.create_index(
            "ix_user_activity_logs_action_created", ["action", "created_at"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_user_activity_logs_actor_user_id"), ["actor_user_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_user_activity_logs_created_at"), ["created_at"], unique=False
        )

    op.create_table(
        "access_tokens",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("token_prefix", sa.String(length=16), nullable=False),
        sa.Column("scopes", sa.JSON(), nullable=False),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=True),
        sa.Column("last_used_at", UTCDateTime(), nullable=True),
        sa.Column("revoked_at", UTCDateTime(), nullable=True),
        sa.Column("created_at", UTCDateTime(), server_default=utcnow(), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_access_tokens_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_access_tokens")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_access_tokens_token_hash")),
    )
    with op.batch_alter_table("access_tokens", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_access_tokens_user_id"), ["user_id"], unique=False)

    op.create_table(
        "integrations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("owner_key", sa.String(length=32), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("organization_id", sa.Integer(), nullable=True),
        sa.Column("service", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("status_message", sa.String(length=500), nullable=True),
        sa.Column("credentials_envelope", sa.String(length=20000), nullable=True),
        sa.Column("shared_with", sa.String(length=16), nullable=False),
        sa.Column("shared_user_ids", sa.JSON(), nullable=False),
        sa.Column("created_by", sa.Integer(), nullable=True),
        sa.Column("created_at", UTCDateTime(), server_default=utcnow(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), server_default=utcnow(), nullable=False),
        sa.CheckConstraint(
            "shared_with IN ('all_members', 'admins_only', 'users')",
            name=op.f("ck_integrations_shared_with_known"),
        ),
        sa.CheckConstraint(
            "status IN ('ACTIVE', 'DISABLED', 'ERROR')", name=op.f("ck_integrations_status_known")
        ),
        sa.CheckConstraint(
            "(user_id IS NULL) <> (organization_id IS NULL)",
            name=op.f("ck_integrations_exactly_one_owner"),
        ),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_integrations_organization_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_integrations_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_integrations")),
        sa.UniqueConstraint("owner_key", "service", name="uq_integrations_owner_service"),
    )
    with op.batch_alter_table("integrations", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_integrations_organization_id"), ["organization_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_integrations_user_id"), ["user_id"], unique=False)

    op.create_table(
        "leases",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("token_id", sa.Integer(), nullable=True),
        sa.Column("server_id", sa.String(length=200), nullable=True),
        sa.Column("services", sa.JSON(), nullable=False),
        sa.Column("credential_scope", sa.String(length=16), nullable=False),
        sa.Column("included_org_credentials", sa.JSON(), nullable=False),
        sa.Column("credentials_envelope", sa.String(length=100000), nullable=False),
        sa.Column("ttl_seconds", sa.Integer(), nullable=False),
        sa.Column("max_renewals", sa.Integer(), nullable=False),
        sa.Column("renewal_count", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", UTCDateTime(), server_default=utcnow(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.Column("max_expires_at", UTCDateTime(), nullable=False),
        sa.Column("last_renewed_at", UTCDateTime(), nullable=True),
        sa.Column("revoked_at", UTCDateTime(), nullable=True),
        sa.Column("revoke_reason", sa.String(length=500), nullable=True),
        sa.CheckConstraint(
            "status IN ('active', 'expired', 'revoked')", name=op.f("ck_leases_status_known")
        ),
        sa.CheckConstraint(
            "renewal_count <= max_renewals", name=op.f("ck_leases_renewals_within_limit")
        ),
        sa.ForeignKeyConstraint(
            ["token_id"],
            ["access_tokens.id"],
            name=op.f("fk_leases_token_id_access_tokens"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_leases_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_leases")),
    )
    with op.batch_alter_table("leases", schema=None) as batch_op:
        batch_op.create_index("ix_leases_status_expires", ["status", "expires_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_leases_user_id"), ["user_id"], unique=False)

    op.create_table(
        "lease_integrations",
        sa.Column("lease_id", sa.String(length=40), nullable=False),
        sa.Column("integration_id", sa.Integer(), nullable=False),
        sa.Column("organization_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["lease_id"],
            ["leases.id"],
            name=op.f("fk_lease_integrations_lease_id_leases"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("lease_id", "integration_id", name=op.f("pk_lease_integrations")),
    )
    with op.batch_alter_table("lease_integrations", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_lease_integrations_integration_id"), ["integration_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_lease_integrations_organization_id"), ["organization_id"], unique=False
        )
    _make_audit_append_only()


def _make_audit_append_only() -> None:
    """Refuse UPDATE and DELETE on the audit trail in the database itself."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE FUNCTION tollgate_audit_append_only() RETURNS trigger AS $$ BEGIN "
            "RAISE EXCEPTION 'user_activity_logs is append-only'; END $$ LANGUAGE plpgsql"
        )
        op.execute(
            "CREATE TRIGGER user_activity_logs_append_only BEFORE UPDATE OR DELETE "
            "ON user_activity_logs FOR EACH ROW EXECUTE FUNCTION tollgate_audit_append_only()"
        )
        return
    for event in ("UPDATE", "DELETE"):
        op.execute(
            f"CREATE TRIGGER user_activity_logs_no_{event.lower()} BEFORE {event} "
            "ON user_activity_logs BEGIN "
            "SELECT RAISE(ABORT, 'user_activity_logs is append-only'); END"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS user_activity_logs_append_only ON user_activity_logs")
        op.execute("DROP FUNCTION IF EXISTS tollgate_audit_append_only()")
    with op.batch_alter_table("lease_integrations", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_lease_integrations_organization_id"))
        batch_op.drop_index(batch_op.f("ix_lease_integrations_integration_id"))

    op.drop_table("lease_integrations")
    with op.batch_alter_table("leases", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_leases_user_id"))
        batch_op.drop_index("ix_leases_status_expires")

    op.drop_table("leases")
    with op.batch_alter_table("integrations", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_integrations_user_id"))
        batch_op.drop_index(batch_op.f("ix_integrations_organization_id"))

    op.drop_table("integrations")
    with op.batch_alter_table("access_tokens", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_access_tokens_user_id"))

    op.drop_table("access_tokens")
    with op.batch_alter_table("user_activity_logs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_user_activity_logs_created_at"))
        batch_op.drop_index(batch_op.f("ix_user_activity_logs_actor_user_id"))
        batch_op.drop_index("ix_user_activity_logs_action_created")

    op.drop_table("user_activity_logs")
    op.drop_table("service_definitions")
