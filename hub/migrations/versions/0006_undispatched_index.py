"""events: index only the events still to dispatch

Revision ID: 0006
Revises: 0002
Create Date: 2026-12-05 00:45:00

The (dispatched, pos) index took an entry for every event, and moved it when the
dispatcher marked the event; the dispatcher only ever asks for `dispatched = 0` in pos
order. A partial index on pos holds just those: an event stored dispatched (a tenant
with no endpoint) costs no index entry, and marking one removes its entry.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0002"
branch_labels = None
depends_on = None

_UNDISPATCHED = sa.text("dispatched = 0")


def upgrade() -> None:
    op.drop_index("ix_events_dispatched", table_name="events")
    op.create_index("ix_events_undispatched", "events", ["pos"], unique=False,
                    sqlite_where=_UNDISPATCHED, postgresql_where=_UNDISPATCHED)


def downgrade() -> None:
    op.drop_index("ix_events_undispatched", table_name="events")
    op.create_index("ix_events_dispatched", "events", ["dispatched", "pos"], unique=False)
