"""Frames of the WebSocket gateway (CONTRACT 3)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import IntEnum
from typing import Any


class ReqIdentifier(IntEnum):
    GET_NEWEST_SEQ = 1001
    PULL_MSG_BY_SEQ_LIST = 1002
    SEND_MSG = 1003
    PUSH = 2001
    KICK_ONLINE_MSG = 2002
    LOGOUT = 2003


@dataclass(frozen=True, slots=True)
class Frame:
    """Anything the server sends: a reply (carrying its request's msgIncr) or a push."""

    req_identifier: int
    msg_incr: str
    operation_id: str
    err_code: int
    err_msg: str
    data: Any


def encode_request(req_identifier: int, msg_incr: str, operation_id: str,
                   data: dict[str, Any]) -> str:
    return json.dumps({"reqIdentifier": req_identifier, "msgIncr": msg_incr,
                       "operationID": operation_id, "data": data},
                      separators=(",", ":"), ensure_ascii=False)


def decode_frame(raw: str | bytes) -> Frame:
    """Raises ValueError on anything that is not a JSON object."""
    d = json.loads(raw)
    if not isinstance(d, dict):
        raise ValueError("frame is not a JSON object")
    return Frame(
        req_identifier=int(d.get("reqIdentifier") or 0),
        msg_incr=str(d.get("msgIncr") or ""),
        operation_id=str(d.get("operationID") or ""),
        err_code=int(d.get("errCode") or 0),
        err_msg=str(d.get("errMsg") or ""),
        data=d.get("data"),
    )
