"""live connections and gateway node beats

Revision ID: 0005
Revises: 0001
Create Date: 2026-11-28 01:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0001"
branch_labels = ("presence",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "online_connections",
        sa.Column("conn_id", sa.String(length=64), nullable=False),
        sa.Column("node_id", sa.String(length=16), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.String(length=64), nullable=False),
        sa.Column("platform_id", sa.Integer(), nullable=False),
        sa.Column("operation_id", sa.String(length=128), nullable=False),
        sa.Column("create_time", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("conn_id", name=op.f("pk_online_connections")),
    )
    op.create_index("ix_online_connections_node", "online_connections", ["node_id"])
    op.create_table(
        "gateway_nodes",
        sa.Column("node_id", sa.String(length=16), nullable=False),
        sa.Column("beat_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("node_id", name=op.f("pk_gateway_nodes")),
    )


def downgrade() -> None:
    op.drop_table("gateway_nodes")
    op.drop_index("ix_online_connections_node", table_name="online_connections")
    op.drop_table("online_connections")
