"""What a client asks over its connection: 1001 GetNewestSeq, 1002 PullMsgBySeqList,
1003 SendMsg and 2003 Logout.

The requests of one connection run concurrently (a slow send does not hold up a
heartbeat), up to `_MAX_INFLIGHT`; past that the reader waits for one to finish, so a
client that floods gets TCP backpressure, not an unbounded pile of tasks. Each reply is
queued on the connection's single writer.

A SendMsg that needs nothing read or asked first (hub/domain/sending.py's `send_now`)
runs no task: its ack is written when its batch commits; one that must read or ask goes
on in a task with the request as validated (`send_waiting`). The `data` of 1002 and 1003
is validated with the request models of hub/domain/messages.py and sending.py, exactly
as over HTTP; `userID` and `sendID` default to the connection's user, and naming
another user is 1002 (a user token acts as itself only).
Logout replies, then closes this connection; the token stays valid (OpenIM's logout
ends the session on this device, it does not revoke the login: /auth/force_logout does).
"""

from __future__ import annotations

import asyncio
import importlib
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from .. import logs
from ..context import Ctx
from ..errors import ApiError
from . import frames
from .connection import Connection
from .frames import FrameError, ReqID, Request

if TYPE_CHECKING:
    from ..core import Hub

log = logging.getLogger("imhub.gateway")

_MAX_INFLIGHT = 32

Handler = Callable[["Hub", Ctx, Connection, dict[str, Any]], Awaitable[Any]]


_domain_modules: dict[str, Any] = {}


def _domain(name: str) -> Any:
    """hub/domain/<name>.py, imported when first used: the domain imports the Hub, which
    imports us."""
    found = _domain_modules.get(name)
    if found is None:
        found = _domain_modules[name] = importlib.import_module(f"..domain.{name}",
                                                                __package__)
    return found


async def _newest_seq(hub: Hub, ctx: Ctx, conn: Connection, data: dict[str, Any]) -> Any:
    m = _domain("messages")
    req = m.NewestSeqReq.model_validate({"userID": conn.user_id, **data})
    return await m.newest_seq(hub, ctx, req)


async def _pull(hub: Hub, ctx: Ctx, conn: Connection, data: dict[str, Any]) -> Any:
    m = _domain("messages")
    req = m.PullReq.model_validate({"userID": conn.user_id, **data})
    return await m.pull_msg_by_seq(hub, ctx, req)


async def _send(hub: Hub, ctx: Ctx, conn: Connection, data: dict[str, Any]) -> Any:
    m = _domain("sending")
    req = m.SendMsgReq.model_validate({"sendID": conn.user_id, **data})
    return await m.send_msg(hub, ctx, req, origin=_origin(conn))


def _origin(conn: Connection) -> tuple[str, int, str]:
    return (conn.user_id, conn.platform_id, conn.conn_id)


_HANDLERS: dict[int, Handler] = {
    ReqID.GET_NEWEST_SEQ: _newest_seq,
    ReqID.PULL_MSG_BY_SEQ: _pull,
    ReqID.SEND_MSG: _send,
}


def _validation_msg(exc: ValidationError) -> str:
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"]) or "data"
    return f"data.{loc}: {err['msg']}"


def _error(exc: BaseException, conn: Connection, req: Request) -> tuple[int, str]:
    """A failed request's errCode and errMsg."""
    if isinstance(exc, ValidationError):
        return 1001, _validation_msg(exc)
    if isinstance(exc, ApiError):
        return exc.code, exc.msg
    # The operationID given: a send answered outside a task has no context of its own.
    log.error("request %s on %r", req.req_identifier, conn, exc_info=exc,
              extra={"operationID": req.operation_id})
    return 500, "internal error"


class Requests:
    def __init__(self, hub: Hub, tasks: set[asyncio.Task[None]]) -> None:
        self._hub = hub
        self._tasks = tasks

    def handle(self, conn: Connection, text: str) -> Awaitable[None] | None:
        """Take one text frame; return an awaitable when the reader must wait for it."""
        try:
            req = frames.parse(text)
        except FrameError as exc:
            conn.write(frames.error_reply(exc))
            return None
        if req.req_identifier == ReqID.LOGOUT:
            conn.write(frames.reply(req.req_identifier, req.msg_incr, req.operation_id))
            conn.close(1000, "logged out")
            return None
        if (req.req_identifier == ReqID.SEND_MSG and conn.inflight < _MAX_INFLIGHT
                and self._send_now(conn, req)):
            return None
        conn.inflight += 1
        run = self._run(conn, req)
        if conn.inflight > _MAX_INFLIGHT:
            return run
        task = asyncio.create_task(run)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return None

    def _send_now(self, conn: Connection, req: Request) -> bool:
        """A SendMsg that needs nothing read or asked first goes from here to the send
        queue, and its ack is written when its batch commits: no task, no future
        (hub/domain/sending.py, send_queue.py). One that must read its checks or ask a
        hook goes on in a task, with the request as validated here. False for a frame
        whose data does not validate, which `_run` answers as any other request's."""
        m = _domain("sending")
        data = req.data  # the frame's own dict, parsed for this request alone
        if "sendID" not in data:
            data["sendID"] = conn.user_id
        try:
            send = m.SendMsgReq.model_validate(data)
        except ValidationError:
            return False
        conn.inflight += 1
        done = _answerer(conn, req)
        ctx = _ctx(conn, req)
        try:
            if m.send_now(self._hub, ctx, send, done, origin=_origin(conn)):
                return True
        except Exception as exc:
            done(None, exc)
            return True
        task = asyncio.create_task(self._send_waiting(m, ctx, conn, send, done))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return True

    async def _send_waiting(self, m: Any, ctx: Ctx, conn: Connection, send: Any,
                            done: Callable[[Any, BaseException | None], None]) -> None:
        logs.operation_id.set(ctx.operation_id)
        try:
            await m.send_waiting(self._hub, ctx, send, done, _origin(conn))
        except Exception as exc:  # before `done` was called: it is called once
            done(None, exc)

    async def _run(self, conn: Connection, req: Request) -> None:
        logs.operation_id.set(req.operation_id)
        code, msg, data = 0, "", None
        try:
            data = await _HANDLERS[req.req_identifier](self._hub, _ctx(conn, req), conn,
                                                       req.data)
        except Exception as exc:
            code, msg = _error(exc, conn, req)
        finally:
            conn.inflight -= 1
        conn.write(frames.reply(req.req_identifier, req.msg_incr, req.operation_id,
                                err_code=code, err_msg=msg, data=data))


def _ctx(conn: Connection, req: Request) -> Ctx:
    return Ctx(conn.actor, req.operation_id)


def _answerer(conn: Connection, req: Request) -> Callable[[Any, BaseException | None], None]:
    """What answers a request once its outcome is known, outside a task of its own."""
    def done(data: Any, exc: BaseException | None) -> None:
        conn.inflight -= 1
        code, msg = _error(exc, conn, req) if exc is not None else (0, "")
        conn.write(frames.reply(req.req_identifier, req.msg_incr, req.operation_id,
                                err_code=code, err_msg=msg, data=data))

    return done
