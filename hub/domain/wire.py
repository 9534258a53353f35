"""The wire form of a stored message (CONTRACT 3), shared by push, pull and events."""

from __future__ import annotations

from typing import Any

import orjson

from ..db.models import Message

_EMPTY_PUSH = {"title": "", "desc": "", "ex": ""}


def message_to_wire(m: Message) -> dict[str, Any]:
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
