"""webhook delivery: endpoints, deliveries, attempts

Revision ID: 0004
Revises: 0001
Create Date: 2026-11-27 18:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0001"
branch_labels = ("delivery",)
depends_on = None

_PENDING = sa.text("status = 'pending'")
_FAILED = sa.text("status = 'failed'")
_KEYED = sa.text("status = 'pending' AND okey IS NOT NULL")


def upgrade() -> None:
    op.create_table(
        "webhook_endpoints",
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("endpoint_id", sa.String(length=64), nullable=False),
        sa.Column("url", sa.String(length=1024), nullable=False),
        sa.Column("events", sa.Text(), nullable=False),
        sa.Column("ordering", sa.String(length=8), nullable=False),
        sa.Column("rate_limit", sa.Integer(), nullable=False),
        sa.Column("max_concurrency", sa.Integer(), nullable=False),
        sa.Column("secret", sa.String(length=128), nullable=False),
        sa.Column("previous_secret", sa.String(length=128), nullable=False),
        sa.Column("previous_secret_until", sa.BigInteger(), nullable=False),
        sa.Column("implicit", sa.Integer(), nullable=False),
        sa.Column("disabled", sa.Integer(), nullable=False),
        sa.Column("disabled_reason", sa.Text(), nullable=False),
        sa.Column("deleted", sa.Integer(), nullable=False),
        sa.Column("create_time", sa.BigInteger(), nullable=False),
        sa.Column("update_time", sa.BigInteger(), nullable=False),
        sa.Column("success_count", sa.BigInteger(), nullable=False),
        sa.Column("failure_count", sa.BigInteger(), nullable=False),
        sa.Column("last_status", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=False),
        sa.Column("last_attempt_time", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "endpoint_id", name=op.f("pk_webhook_endpoints")),
    )
    op.create_table(
        "webhook_deliveries",
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("event_id", sa.String(length=40), nullable=False),
        sa.Column("endpoint_id", sa.String(length=64), nullable=False),
        sa.Column("event_pos", sa.BigInteger(), nullable=False),
        sa.Column("okey", sa.String(length=160), nullable=True),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("tries", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.BigInteger(), nullable=False),
        sa.Column("lease_owner", sa.String(length=64), nullable=False),
        sa.Column("lease_until", sa.BigInteger(), nullable=False),
        sa.Column("last_status", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=False),
        sa.Column("create_time", sa.BigInteger(), nullable=False),
        sa.Column("update_time", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "event_id", "endpoint_id",
                                name=op.f("pk_webhook_deliveries")),
    )
    op.create_index("ix_webhook_deliveries_due", "webhook_deliveries", ["next_attempt_at"],
                    postgresql_where=_PENDING, sqlite_where=_PENDING)
    op.create_index("ix_webhook_deliveries_key", "webhook_deliveries",
                    ["tenant_id", "endpoint_id", "okey", "event_pos"],
                    postgresql_where=_KEYED, sqlite_where=_KEYED)
    op.create_index("ix_webhook_deliveries_failed", "webhook_deliveries",
                    ["tenant_id", "endpoint_id", "event_pos"],
                    postgresql_where=_FAILED, sqlite_where=_FAILED)
    op.create_table(
        "webhook_attempts",
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("event_id", sa.String(length=40), nullable=False),
        sa.Column("endpoint_id", sa.String(length=64), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=False),
        sa.Column("latency_ms", sa.Float(), nullable=False),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("response", sa.Text(), nullable=False),
        sa.Column("worker", sa.String(length=64), nullable=False),
        sa.Column("create_time", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "event_id", "endpoint_id", "attempt",
                                name=op.f("pk_webhook_attempts")),
    )


def downgrade() -> None:
    op.drop_table("webhook_attempts")
    op.drop_index("ix_webhook_deliveries_failed", table_name="webhook_deliveries")
    op.drop_index("ix_webhook_deliveries_key", table_name="webhook_deliveries")
    op.drop_index("ix_webhook_deliveries_due", table_name="webhook_deliveries")
    op.drop_table("webhook_deliveries")
    op.drop_table("webhook_endpoints")
