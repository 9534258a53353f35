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
    # `type(...) is` rather than isinstance: a bool is no reqIdentifier, and JSON gives
    # plain ints and strs only.
    if (type(rid) is int and type(incr) is str and rid in CLIENT_REQUESTS
            and (op is None or (type(op) is str and len(op) <= MAX_OPERATION_ID))
            and (data is None or type(data) is dict)
            and nul_path(obj, text) is None):
        return Request(rid, incr, op or secrets.token_hex(8), data or {})
    raise _refusal(obj, text, rid, incr, op, data)


def _refusal(obj: dict[str, Any], text: str, rid: Any, incr: Any, op: Any, data: Any
             ) -> FrameError:
    """Why a frame that is a JSON object is not a request, echoing what of it is valid."""
    echo: dict[str, Any] = {"req_identifier": rid if type(rid) is int else 0,
                            "msg_incr": incr if isinstance(incr, str) else "",
                            "operation_id": op if isinstance(op, str) else ""}
    if type(rid) is not int:
        return FrameError("reqIdentifier: an integer is required", **echo)
    if not isinstance(incr, str):
        return FrameError("msgIncr: a string is required", **echo)
    if op is not None and not (isinstance(op, str) and len(op) <= MAX_OPERATION_ID):
        return FrameError(f"operationID: a string of at most {MAX_OPERATION_ID} characters",
                          **echo)
    if data is not None and not isinstance(data, dict):
        return FrameError("data: must be a JSON object", **echo)
    where = nul_path(obj, text)
    if where is not None:
        return FrameError(f"{where}: {NUL_REFUSED}", **echo)
    return FrameError(f"reqIdentifier: unknown request {rid}", **echo)


# Frames are built as the UTF-8 bytes of their JSON text, as written to the socket: a
# str would be decoded from orjson's bytes here only to be encoded again there.

def reply(req_identifier: int, msg_incr: str, operation_id: str, *, err_code: int = 0,
          err_msg: str = "", data: Any = None) -> bytes:
    return orjson.dumps({"reqIdentifier": req_identifier, "msgIncr": msg_incr,
                         "operationID": operation_id, "errCode": err_code,
                         "errMsg": err_msg, "data": data})


def error_reply(exc: FrameError) -> bytes:
    return reply(exc.req_identifier, exc.msg_incr, exc.operation_id, err_code=1001,
                 err_msg=exc.msg)


def push(msgs: list[dict[str, Any]]) -> bytes:
    """A 2001 Push of wire messages, grouped by conversation."""
    by_conv: dict[str, list[dict[str, Any]]] = {}
    for m in msgs:
        by_conv.setdefault(m["conversationID"], []).append(m)
    return reply(ReqID.PUSH, "", "", data={"msgs": by_conv})


def kick(reason: str) -> bytes:
    return reply(ReqID.KICK_ONLINE, "", "", err_msg=reason)
