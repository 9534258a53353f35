"""A message about to be stored, without the ORM: its columns, its row and its insert.

Chat sends (hub/domain/sending.py) and notifications (hub/domain/notify.py) build their
messages this way: an ORM object per row cost far more in SQLAlchemy than the insert in
the database. A `Draft` satisfies `StoredMessage` (hub/domain/wire.py), so the pushed
copy is built from it before the row exists.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import bindparam, insert

from ..db.fast import Statement
from ..db.models import Message

__all__ = ["INSERT_MESSAGE", "Draft"]

# Every column, by name: a Draft is its row (its attributes are the binds).
INSERT_MESSAGE = Statement(insert(Message).values(
    {c.name: bindparam(c.name) for c in Message.__table__.columns}), attributes=True)


@dataclass(slots=True)
class Draft:
    """The columns of `Message`."""

    tenant_id: str
    conversation_id: str
    seq: int
    server_msg_id: str
    client_msg_id: str
    send_id: str
    recv_id: str
    group_id: str
    session_type: int
    content_type: int
    content: str
    send_time: int
    status: int
    sender_platform_id: int
    sender_nickname: str
    offline_push_info: str
    at_user_ids: str
    ex: str
