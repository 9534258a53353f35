"""Tables of the IM core: tenants, tokens, users, relations, groups and the event outbox.

Every tenant-owned row carries tenant_id as the first primary-key column, so no
query can reach another tenant's rows without naming it.
Times are unix milliseconds, as in OpenIM.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base

_ID = String(64)


class Tenant(Base):
    __tablename__ = "tenants"
    tenant_id: Mapped[str] = mapped_column(_ID, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    admin_token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    # Key of the HMAC that signs this tenant's user tokens.
    token_secret: Mapped[str] = mapped_column(String(64))
    create_time: Mapped[int] = mapped_column(BigInteger)


class UserToken(Base):
    """The one live token per user and platform; a re-login replaces jti (the old one is kicked)."""

    __tablename__ = "user_tokens"
    tenant_id: Mapped[str] = mapped_column(_ID, primary_key=True)
    user_id: Mapped[str] = mapped_column(_ID, primary_key=True)
    platform_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    jti: Mapped[str] = mapped_column(String(32))
    expire_time: Mapped[int] = mapped_column(BigInteger)


class User(Base):
    __tablename__ = "users"
    tenant_id: Mapped[str] = mapped_column(_ID, primary_key=True)
    user_id: Mapped[str] = mapped_column(_ID, primary_key=True)
    nickname: Mapped[str] = mapped_column(String(255), default="")
    face_url: Mapped[str] = mapped_column(String(1024), default="")
    ex: Mapped[str] = mapped_column(Text, default="")
    create_time: Mapped[int] = mapped_column(BigInteger)


class FriendRequest(Base):
    __tablename__ = "friend_requests"
    tenant_id: Mapped[str] = mapped_column(_ID, primary_key=True)
    from_user_id: Mapped[str] = mapped_column(_ID, primary_key=True)
    to_user_id: Mapped[str] = mapped_column(_ID, primary_key=True)
    req_msg: Mapped[str] = mapped_column(Text, default="")
    # 0 pending, 1 agreed, -1 refused (OpenIM's handleResult).
    handle_result: Mapped[int] = mapped_column(Integer, default=0)
    handle_msg: Mapped[str] = mapped_column(Text, default="")
    ex: Mapped[str] = mapped_column(Text, default="")
    create_time: Mapped[int] = mapped_column(BigInteger)
    handle_time: Mapped[int] = mapped_column(BigInteger, default=0)
    __table_args__ = (Index("ix_friend_requests_to", "tenant_id", "to_user_id"),)


class Friend(Base):
    """One row per direction: A's list holds B and B's list holds A."""

    __tablename__ = "friends"
    tenant_id: Mapped[str] = mapped_column(_ID, primary_key=True)
    owner_user_id: Mapped[str] = mapped_column(_ID, primary_key=True)
    friend_user_id: Mapped[str] = mapped_column(_ID, primary_key=True)
    remark: Mapped[str] = mapped_column(String(255), default="")
    add_source: Mapped[int] = mapped_column(Integer, default=0)
    operator_user_id: Mapped[str] = mapped_column(_ID, default="")
    ex: Mapped[str] = mapped_column(Text, default="")
    create_time: Mapped[int] = mapped_column(BigInteger)


class Black(Base):
    __tablename__ = "blacks"
    tenant_id: Mapped[str] = mapped_column(_ID, primary_key=True)
    owner_user_id: Mapped[str] = mapped_column(_ID, primary_key=True)
    block_user_id: Mapped[str] = mapped_column(_ID, primary_key=True)
    operator_user_id: Mapped[str] = mapped_column(_ID, default="")
    ex: Mapped[str] = mapped_column(Text, default="")
    create_time: Mapped[int] = mapped_column(BigInteger)


class Group(Base):
    __tablename__ = "groups"
    tenant_id: Mapped[str] = mapped_column(_ID, primary_key=True)
    group_id: Mapped[str] = mapped_column(_ID, primary_key=True)
    group_name: Mapped[str] = mapped_column(String(255))
    notification: Mapped[str] = mapped_column(Text, default="")
    introduction: Mapped[str] = mapped_column(Text, default="")
    face_url: Mapped[str] = mapped_column(String(1024), default="")
    ex: Mapped[str] = mapped_column(Text, default="")
    owner_user_id: Mapped[str] = mapped_column(_ID)
    creator_user_id: Mapped[str] = mapped_column(_ID)
    # 0 normal, 2 dismissed, 3 muted (OpenIM's GroupStatus values).
    status: Mapped[int] = mapped_column(Integer, default=0)
    # 0 applications need approval, 1 anyone joins, 2 invite only.
    need_verification: Mapped[int] = mapped_column(Integer, default=0)
    group_type: Mapped[int] = mapped_column(Integer, default=2)
    create_time: Mapped[int] = mapped_column(BigInteger)
    notification_update_time: Mapped[int] = mapped_column(BigInteger, default=0)
    notification_user_id: Mapped[str] = mapped_column(_ID, default="")


class GroupMember(Base):
    __tablename__ = "group_members"
    tenant_id: Mapped[str] = mapped_column(_ID, primary_key=True)
    group_id: Mapped[str] = mapped_column(_ID, primary_key=True)
    user_id: Mapped[str] = mapped_column(_ID, primary_key=True)
    nickname: Mapped[str] = mapped_column(String(255), default="")
    face_url: Mapped[str] = mapped_column(String(1024), default="")
    # 100 owner, 60 admin, 20 member (OpenIM's role levels).
    role_level: Mapped[int] = mapped_column(Integer, default=20)
    join_time: Mapped[int] = mapped_column(BigInteger)
    join_source: Mapped[int] = mapped_column(Integer, default=0)
    inviter_user_id: Mapped[str] = mapped_column(_ID, default="")
    operator_user_id: Mapped[str] = mapped_column(_ID, default="")
    mute_end_time: Mapped[int] = mapped_column(BigInteger, default=0)
    ex: Mapped[str] = mapped_column(Text, default="")
    __table_args__ = (Index("ix_group_members_user", "tenant_id", "user_id"),)


class GroupRequest(Base):
    __tablename__ = "group_requests"
    tenant_id: Mapped[str] = mapped_column(_ID, primary_key=True)
    group_id: Mapped[str] = mapped_column(_ID, primary_key=True)
    user_id: Mapped[str] = mapped_column(_ID, primary_key=True)
    req_msg: Mapped[str] = mapped_column(Text, default="")
    handle_result: Mapped[int] = mapped_column(Integer, default=0)
    handled_msg: Mapped[str] = mapped_column(Text, default="")
    handle_user_id: Mapped[str] = mapped_column(_ID, default="")
    join_source: Mapped[int] = mapped_column(Integer, default=0)
    inviter_user_id: Mapped[str] = mapped_column(_ID, default="")
    ex: Mapped[str] = mapped_column(Text, default="")
    req_time: Mapped[int] = mapped_column(BigInteger)
    handled_time: Mapped[int] = mapped_column(BigInteger, default=0)


_UNDISPATCHED = text("dispatched = 0")


class Event(Base):
    """The outbox: one row per after-event, written in the transaction of its state change.

    `pos` orders events by commit within a node's writer; webhook delivery reads from here.
    """

    __tablename__ = "events"
    pos: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    event_id: Mapped[str] = mapped_column(String(40), unique=True)
    tenant_id: Mapped[str] = mapped_column(_ID)
    callback_command: Mapped[str] = mapped_column(String(96))
    key: Mapped[str] = mapped_column(String(160))
    operation_id: Mapped[str] = mapped_column(String(128))
    occurred_at: Mapped[int] = mapped_column(BigInteger)
    payload: Mapped[str] = mapped_column(Text)
    # 0 new, 1 fanned out to webhook endpoints (set by delivery).
    dispatched: Mapped[int] = mapped_column(Integer, default=0)
    __table_args__ = (
        Index("ix_events_tenant_pos", "tenant_id", "pos"),
        # The dispatcher's queue: only the events still to fan out. A tenant without
        # endpoints stores its events dispatched already, and they never enter it.
        Index("ix_events_undispatched", "pos", sqlite_where=_UNDISPATCHED,
              postgresql_where=_UNDISPATCHED),
    )


class ConversationSeq(Base):
    """The newest seq of a conversation: seqs are allocated by incrementing max_seq in the
    transaction that stores the message, so they are gap-free and unique."""

    __tablename__ = "conversation_seqs"
    tenant_id: Mapped[str] = mapped_column(_ID, primary_key=True)
    conversation_id: Mapped[str] = mapped_column(String(160), primary_key=True)
    max_seq: Mapped[int] = mapped_column(BigInteger, default=0)
    min_seq: Mapped[int] = mapped_column(BigInteger, default=0)


class Message(Base):
    """A stored message: chat (sessionType 1/3) or notification (4), keyed by conversation+seq."""

    __tablename__ = "messages"
    tenant_id: Mapped[str] = mapped_column(_ID, primary_key=True)
    conversation_id: Mapped[str] = mapped_column(String(160), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    server_msg_id: Mapped[str] = mapped_column(String(40))
    client_msg_id: Mapped[str] = mapped_column(String(64))
    send_id: Mapped[str] = mapped_column(_ID)
    recv_id: Mapped[str] = mapped_column(_ID, default="")
    group_id: Mapped[str] = mapped_column(_ID, default="")
    session_type: Mapped[int] = mapped_column(Integer)
    content_type: Mapped[int] = mapped_column(Integer)
    content: Mapped[str] = mapped_column(Text)
    send_time: Mapped[int] = mapped_column(BigInteger)
    # 2 sent, 4 revoked (as far as the server cares; OpenIM's MsgStatus).
    status: Mapped[int] = mapped_column(Integer, default=2)
    sender_platform_id: Mapped[int] = mapped_column(Integer, default=0)
    sender_nickname: Mapped[str] = mapped_column(String(255), default="")
    # JSON text: offlinePushInfo object and atUserIDList array.
    offline_push_info: Mapped[str] = mapped_column(Text, default="")
    at_user_ids: Mapped[str] = mapped_column(Text, default="")
    ex: Mapped[str] = mapped_column(Text, default="")
    __table_args__ = (
        Index("ux_messages_client", "tenant_id", "send_id", "client_msg_id", "conversation_id",
              unique=True),
    )
