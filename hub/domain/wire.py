"""The wire form of a stored message (CONTRACT 3), shared by push, pull and events."""

from __future__ import annotations

from typing import Any, Protocol

import orjson

_EMPTY_PUSH = {"title": "", "desc": "", "ex": ""}


class StoredMessage(Protocol):
    """A `Message` row, or anything with its attributes (a message about to be stored)."""

    server_msg_id: str
    client_msg_id: str
    conversation_id: str
    send_id: str
    recv_id: str
    group_id: str
    session_type: int
    content_type: int
    content: str
    seq: int
    send_time: int
    status: int
    sender_platform_id: int
    sender_nickname: str
    offline_push_info: str
    at_user_ids: str
    ex: str


def message_to_wire(m: StoredMessage) -> dict[str, Any]:
    return {
        "serverMsgID": m.server_msg_id,
        "clientMsgID": m.client_msg_id,
        "conversationID": m.conversation_id,
        "sendID": m.send_id,
        "recvID": m.recv_id,
        "groupID": m.group_id,
        "sessionType": m.session_type,
        "contentType": m.content_type,
        "content": m.content,
        "seq": m.seq,
        "sendTime": m.send_time,
        "createTime": m.send_time,
        "status": m.status,
        "senderPlatformID": m.sender_platform_id,
        "senderNickname": m.sender_nickname,
        "offlinePushInfo": orjson.loads(m.offline_push_info) if m.offline_push_info
        else dict(_EMPTY_PUSH),
        "atUserIDList": orjson.loads(m.at_user_ids) if m.at_user_ids else [],
        "ex": m.ex,
    }
