"""Typed models of what the wire carries (CONTRACT 3): messages, acks, seq ranges."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# Re-exported: the SDK's public models include the contract's numeric types.
from ..wire_types import ContentType as ContentType
from ..wire_types import NotificationType as NotificationType
from ..wire_types import SessionType as SessionType
from ..wire_types import group_conversation_id as group_conversation_id
from ..wire_types import notification_conversation_id as notification_conversation_id
from ..wire_types import single_conversation_id as single_conversation_id


def _int(value: Any) -> int:
    """Absent and null are 0: a server may send null for a field that does not apply."""
    return int(value) if value is not None else 0


def _str(value: Any) -> str:
    return str(value) if value is not None else ""


def conversation_id_of(session_type: int, send_id: str, recv_id: str, group_id: str) -> str:
    if session_type == SessionType.GROUP:
        return group_conversation_id(group_id)
    if session_type == SessionType.NOTIFICATION:
        return notification_conversation_id(recv_id)
    return single_conversation_id(send_id, recv_id)


@dataclass(frozen=True, slots=True)
class OfflinePushInfo:
    title: str = ""
    desc: str = ""
    ex: str = ""

    def to_wire(self) -> dict[str, str]:
        return {"title": self.title, "desc": self.desc, "ex": self.ex}

    @classmethod
    def from_wire(cls, d: Mapping[str, Any] | None) -> OfflinePushInfo:
        d = d or {}
        return cls(_str(d.get("title")), _str(d.get("desc")), _str(d.get("ex")))


@dataclass(frozen=True, slots=True, kw_only=True)
class Message:
    """A stored message as the server sends it, with the conversation it belongs to."""

    conversation_id: str
    seq: int
    client_msg_id: str
    server_msg_id: str = ""
    send_id: str
    recv_id: str = ""
    group_id: str = ""
    session_type: int
    content_type: int
    content: str
    send_time: int = 0
    status: int = 0
    sender_platform_id: int = 0
    sender_nickname: str = ""
    offline_push_info: OfflinePushInfo = field(default_factory=OfflinePushInfo)
    at_user_ids: tuple[str, ...] = ()
    ex: str = ""

    @property
    def is_notification(self) -> bool:
        return self.session_type == SessionType.NOTIFICATION

    @property
    def text(self) -> str | None:
        """The text of a text or @text message; None for other kinds."""
        if self.content_type not in (ContentType.TEXT, ContentType.AT_TEXT):
            return None
        try:
            body = json.loads(self.content)
        except ValueError:
            return self.content
        return str(body.get("content", "")) if isinstance(body, dict) else self.content

    @property
    def detail(self) -> dict[str, Any]:
        """A notification's tips (its content is `{"detail": "<tips as JSON>"}`)."""
        try:
            body = json.loads(self.content)
            inner = body.get("detail", "{}") if isinstance(body, dict) else "{}"
            tips = json.loads(inner) if isinstance(inner, str) else inner
        except ValueError:
            return {}
        return tips if isinstance(tips, dict) else {}

    @classmethod
    def from_wire(cls, d: Mapping[str, Any], conversation_id: str = "") -> Message:
        session_type = _int(d.get("sessionType"))
        send_id, recv_id = _str(d.get("sendID")), _str(d.get("recvID"))
        group_id = _str(d.get("groupID"))
        conv = (conversation_id or _str(d.get("conversationID"))
                or conversation_id_of(session_type, send_id, recv_id, group_id))
        return cls(
            conversation_id=conv,
            seq=_int(d.get("seq")),
            client_msg_id=_str(d.get("clientMsgID")),
            server_msg_id=_str(d.get("serverMsgID")),
            send_id=send_id,
            recv_id=recv_id,
            group_id=group_id,
            session_type=session_type,
            content_type=_int(d.get("contentType")),
            content=_str(d.get("content")),
            send_time=_int(d.get("sendTime")),
            status=_int(d.get("status")),
            sender_platform_id=_int(d.get("senderPlatformID")),
            sender_nickname=_str(d.get("senderNickname")),
            offline_push_info=OfflinePushInfo.from_wire(d.get("offlinePushInfo")),
            at_user_ids=tuple(str(u) for u in d.get("atUserIDList") or ()),
            ex=_str(d.get("ex")),
        )

    def to_wire(self) -> dict[str, Any]:
        return {
            "conversationID": self.conversation_id,
            "seq": self.seq,
            "clientMsgID": self.client_msg_id,
            "serverMsgID": self.server_msg_id,
            "sendID": self.send_id,
            "recvID": self.recv_id,
            "groupID": self.group_id,
            "sessionType": self.session_type,
            "contentType": self.content_type,
            "content": self.content,
            "sendTime": self.send_time,
            "status": self.status,
            "senderPlatformID": self.sender_platform_id,
            "senderNickname": self.sender_nickname,
            "offlinePushInfo": self.offline_push_info.to_wire(),
            "atUserIDList": list(self.at_user_ids),
            "ex": self.ex,
        }


@dataclass(frozen=True, slots=True)
class SendAck:
    """The answer to SendMsg (1003)."""

    server_msg_id: str
    client_msg_id: str
    send_time: int
    seq: int

    @classmethod
    def from_wire(cls, d: Mapping[str, Any]) -> SendAck:
        return cls(_str(d.get("serverMsgID")), _str(d.get("clientMsgID")),
                   _int(d.get("sendTime")), _int(d.get("seq")))


@dataclass(frozen=True, slots=True)
class NewestSeqs:
    """The answer to GetNewestSeq (1001): each conversation's max and min seq."""

    max_seqs: dict[str, int]
    min_seqs: dict[str, int]

    @classmethod
    def from_wire(cls, d: Mapping[str, Any]) -> NewestSeqs:
        return cls({str(k): int(v) for k, v in (d.get("maxSeqs") or {}).items()},
                   {str(k): int(v) for k, v in (d.get("minSeqs") or {}).items()})


@dataclass(frozen=True, slots=True)
class SeqRange:
    """Seqs begin..end (inclusive) of one conversation."""

    conversation_id: str
    begin: int
    end: int

    def to_wire(self) -> dict[str, Any]:
        return {"conversationID": self.conversation_id, "begin": self.begin, "end": self.end,
                "num": self.end - self.begin + 1}


def messages_from_wire(msgs: Mapping[str, Any] | None) -> dict[str, list[Message]]:
    """`{conversationID: [msg]}` (push and pull answers), typed and each list in seq order."""
    out: dict[str, list[Message]] = {}
    for conv, items in (msgs or {}).items():
        typed = [Message.from_wire(m, str(conv)) for m in items or ()]
        out[str(conv)] = sorted(typed, key=lambda m: m.seq)
    return out
