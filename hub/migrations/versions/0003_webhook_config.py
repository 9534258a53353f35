"""webhook config per tenant

Revision ID: 0003
Revises: 0001
Create Date: 2026-11-28 10:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0001"
branch_labels = ("webhook_config",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "webhook_configs",
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("config", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", name=op.f("pk_webhook_configs")),
    )


def downgrade() -> None:
    op.drop_table("webhook_configs")
