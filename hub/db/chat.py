"""Tables of chat state that the core tables do not hold: each user's side of a conversation.

A `user_conversations` row says that a user is in a single chat (it is created for both
users when the conversation's first message is stored) and how far the user has read a
conversation (single or group; a group row appears on the first read mark). Group
membership itself stays in `group_members`.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base

_ID = String(64)


class UserConversation(Base):
    __tablename__ = "user_conversations"
    tenant_id: Mapped[str] = mapped_column(_ID, primary_key=True)
    owner_user_id: Mapped[str] = mapped_column(_ID, primary_key=True)
    conversation_id: Mapped[str] = mapped_column(String(160), primary_key=True)
    # 1 single chat, 3 group (OpenIM's conversationType).
    conversation_type: Mapped[int] = mapped_column(Integer)
    # The peer of a single chat; the group of a group conversation.
    user_id: Mapped[str] = mapped_column(_ID, default="")
    group_id: Mapped[str] = mapped_column(_ID, default="")
    has_read_seq: Mapped[int] = mapped_column(BigInteger, default=0)
    create_time: Mapped[int] = mapped_column(BigInteger)
