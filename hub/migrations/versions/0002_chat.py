"""chat: per-user conversation state

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27 18:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('user_conversations',
    sa.Column('tenant_id', sa.String(length=64), nullable=False),
    sa.Column('owner_user_id', sa.String(length=64), nullable=False),
    sa.Column('conversation_id', sa.String(length=160), nullable=False),
    sa.Column('conversation_type', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.String(length=64), nullable=False),
    sa.Column('group_id', sa.String(length=64), nullable=False),
    sa.Column('has_read_seq', sa.BigInteger(), nullable=False),
    sa.Column('create_time', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('tenant_id', 'owner_user_id', 'conversation_id',
                            name=op.f('pk_user_conversations'))
    )


def downgrade() -> None:
    op.drop_table('user_conversations')
