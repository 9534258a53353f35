"""The gateway's frames (CONTRACT 3): client requests, replies and server pushes, JSON text.

A request is `{"reqIdentifier": int, "msgIncr": str, "operationID": str, "data": {...}}`;
its reply carries the same reqIdentifier, msgIncr and operationID, so a client matches
replies to requests. `operationID` may be left out (one is made, as over HTTP); `data`
may be left out where the request needs none.
"""

from __future__ import annotations

import secrets
from enum import IntEnum
from typing import Any, NamedTuple

import orjson

from ..client_json import NUL_REFUSED, nul_path
from ..context import MAX_OPERATION_ID


class ReqID(IntEnum):
    GET_NEWEST_SEQ = 1001
    PULL_MSG_BY_SEQ = 1002
    SEND_MSG = 1003
    PUSH = 2001
    KICK_ONLINE = 2002
    LOGOUT = 2003


CLIENT_REQUESTS = frozenset({ReqID.GET_NEWEST_SEQ, ReqID.PULL_MSG_BY_SEQ, ReqID.SEND_MSG,
                             ReqID.LOGOUT})


class Request(NamedTuple):
    req_identifier: int
    msg_incr: str
    operation_id: str
    data: dict[str, Any]


class FrameError(Exception):
    """A frame that is not a request; the reply echoes what of it could be read."""

    def __init__(self, msg: str, *, req_identifier: int = 0, msg_incr: str = "",
                 operation_id: str = "") -> None:
        super().__init__(msg)
        self.msg = msg
        self.req_identifier = req_identifier
        self.msg_incr = msg_incr
        self.operation_id = operation_id


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def parse(text: str) -> Request:
    """The request in a text frame, or FrameError."""
    try:
        obj = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise FrameError(f"malformed JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise FrameError("a frame must be a JSON object")
    rid, incr, op = obj.get("reqIdentifier"), obj.get("msgIncr"), obj.get("operationID")
    data = obj.get("data")
    echo: dict[str, Any] = {"req_identifier": rid if _is_int(rid) else 0,
                            "msg_incr": incr if isinstance(incr, str) else "",
                            "operation_id": op if isinstance(op, str) else ""}
    if not _is_int(rid):
        raise FrameError("reqIdentifier: an integer is required", **echo)
    if not isinstance(incr, str):
        raise FrameError("msgIncr: a string is required", **echo)
    if op is not None and not (isinstance(op, str) and len(op) <= MAX_OPERATION_ID):
        raise FrameError(f"operationID: a string of at most {MAX_OPERATION_ID} characters",
                         **echo)
    if data is not None and not isinstance(data, dict):
        raise FrameError("data: must be a JSON object", **echo)
    where = nul_path(obj, text)
    if where is not None:
        raise FrameError(f"{where}: {NUL_REFUSED}", **echo)
    if rid not in CLIENT_REQUESTS:
        raise FrameError(f"reqIdentifier: unknown request {rid}", **echo)
    return Request(rid, incr, op or secrets.token_hex(8), data or {})


def reply(req_identifier: int, msg_incr: str, operation_id: str, *, err_code: int = 0,
          err_msg: str = "", data: Any = None) -> str:
    return orjson.dumps({"reqIdentifier": req_identifier, "msgIncr": msg_incr,
                         "operationID": operation_id, "errCode": err_code,
                         "errMsg": err_msg, "data": data}).decode()


def error_reply(exc: FrameError) -> str:
    return reply(exc.req_identifier, exc.msg_incr, exc.operation_id, err_code=1001,
                 err_msg=exc.msg)


def push(msgs: list[dict[str, Any]]) -> str:
    """A 2001 Push of wire messages, grouped by conversation."""
    by_conv: dict[str, list[dict[str, Any]]] = {}
    for m in msgs:
        by_conv.setdefault(m["conversationID"], []).append(m)
    return reply(ReqID.PUSH, "", "", data={"msgs": by_conv})


def kick(reason: str) -> str:
    return reply(ReqID.KICK_ONLINE, "", "", err_msg=reason)
