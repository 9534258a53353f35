"""The ASGI endpoint at /ws: authenticate before the upgrade, then read frames until the end.

`GET /ws?sendID=USER&token=TOKEN&platformID=N&operationID=X`. The token must be a
live user token of sendID on platformID. Otherwise the upgrade is refused with a plain
HTTP response (ASGI's websocket.http.response extension) carrying the usual JSON
envelope: 401 with 1501 (invalid, expired, another user's or platform's) or 1502
(kicked), 400 with 1001 for a missing or malformed sendID or platformID. A server
without that extension gets a close before the handshake (uvicorn sends 403).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import secrets
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

import orjson

from .. import logs
from ..context import Actor, check_operation_id
from ..errors import ApiError, BadArgument, TokenInvalid
from . import frames
from .protocol import tracked_protocol
from .requests import Requests

if TYPE_CHECKING:
    from ..core import Hub
    from .connection import Connection
    from .gateway import Gateway

log = logging.getLogger("imhub.gateway")

Scope = dict[str, Any]
Receive = Any
Send = Any

_MAX_PLATFORM = 15


def _query(scope: Scope) -> dict[str, str]:
    return dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))


async def _deny(scope: Scope, send: Send, exc: ApiError) -> None:
    body = orjson.dumps({"errCode": exc.code, "errMsg": exc.msg, "errDlt": exc.detail,
                         "data": None})
    if "websocket.http.response" in scope.get("extensions", {}):
        await send({"type": "websocket.http.response.start", "status": exc.status,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "websocket.http.response.body", "body": body})
    else:
        await send({"type": "websocket.close", "code": 1008, "reason": exc.msg[:120]})


class Endpoint:
    """A plain ASGI app, so that Starlette's WebSocketRoute calls it as it is."""

    def __init__(self, hub: Hub, gateway: Gateway) -> None:
        self._hub = hub
        self._gateway = gateway
        self._requests = Requests(hub, gateway.tasks)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (await receive())["type"] != "websocket.connect":
            return
        params = _query(scope)
        op_id = params.get("operationID") or secrets.token_hex(8)
        logs.operation_id.set(op_id)
        try:
            check_operation_id(op_id)
            actor = await self._authenticate(params)
        except ApiError as exc:
            await _deny(scope, send, exc)
            return
        await send({"type": "websocket.accept"})
        proto = tracked_protocol(receive)
        conn = self._gateway.connection(actor, op_id, send, proto)
        try:
            await self._gateway.attach(conn, params["token"])
        except Exception:
            log.exception("could not bring %r online", conn)
            conn.close(1011, "try again later")
        direct = proto is not None and hasattr(proto, "imhub_frames")
        if direct:
            # Text frames straight from the protocol from now on (hub/gateway/protocol.py);
            # _read still takes what was queued before, binary frames and the end.
            proto.imhub_frames = functools.partial(self._on_text, conn)  # type: ignore[union-attr]
        try:
            await self._read(conn, receive)
        finally:
            if direct:
                proto.imhub_frames = None  # type: ignore[union-attr]
            await self._gateway.detach(conn)

    def _on_text(self, conn: Connection, text: str) -> asyncio.Future[None] | None:
        """A text frame from the protocol; a future when reading must wait for it."""
        conn.seen = time.monotonic()
        if conn.closing:
            return None
        wait = self._requests.handle(conn, text)
        if wait is None:
            return None
        task = asyncio.ensure_future(wait)
        tasks = self._gateway.tasks
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        return task

    async def _authenticate(self, params: dict[str, str]) -> Actor:
        send_id = params.get("sendID", "")
        if not send_id:
            raise BadArgument("sendID is required")
        platform = params.get("platformID", "")
        if not platform.isdigit() or not 1 <= int(platform) <= _MAX_PLATFORM:
            raise BadArgument(f"platformID must be an integer from 1 to {_MAX_PLATFORM}")
        token = params.get("token", "")
        if not token:
            raise TokenInvalid("token is required")
        actor = await self._hub.tokens.verify(token)
        if actor.user_id != send_id or actor.platform_id != int(platform):
            raise TokenInvalid("the token is not sendID's on platformID")
        return actor

    async def _read(self, conn: Connection, receive: Receive) -> None:
        requests = self._requests
        while True:
            message = await receive()
            kind = message["type"]
            if kind == "websocket.disconnect":
                return
            if kind != "websocket.receive":
                continue
            conn.seen = time.monotonic()
            if conn.closing:
                continue
            text = message.get("text")
            if text is None:
                conn.write(frames.reply(0, "", "", err_code=1001,
                                        err_msg="binary frames are not accepted: send JSON text"))
                continue
            wait = requests.handle(conn, text)
            if wait is not None:
                await wait
