"""The gateway: connections in, pushes and kicks out, on this node and through the others.

- A connection is registered once accepted; one per user and platform, so a newer one
  kicks the older (2002, then close), on whichever node it is.
- `Signals.messages_stored` pushes (2001) to every connection of each recipient except
  the one that sent, here and, with Redis, on the other nodes.
- `Signals.token_replaced` (a re-login or /auth/force_logout) kicks that user's
  connections of that platform everywhere.
- One sweeper task closes connections silent for `gateway.idle_timeout_seconds`; a
  connection holds no task of its own while idle.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from typing import TYPE_CHECKING, Any

from starlette.routing import WebSocketRoute

from ..context import Actor
from ..errors import ApiError
from . import frames
from .connection import Connection, Send
from .endpoint import Endpoint

if TYPE_CHECKING:
    from ..core import Hub

log = logging.getLogger("imhub.gateway")

Origin = tuple[str, int, str]  # (userID, platformID, connID), as in hub/signals.py
Msgs = dict[str, list[dict[str, Any]]]

PATH = "/ws"
REPLACED = "logged in again on this platform"
TOKEN_REPLACED = "token replaced: logged in again or logged out"
IDLE = "idle timeout"


class Gateway:
    def __init__(self, hub: Hub) -> None:
        self._hub = hub
        self._registry = hub.presence.local
        self._cluster = hub.cluster
        self._node = hub.node_id
        self._serial = itertools.count(1)
        self._idle = hub.settings.gateway.idle_timeout_seconds
        self._sweeper: asyncio.Task[None] | None = None
        self.tasks: set[asyncio.Task[None]] = set()
        self.endpoint = Endpoint(hub, self)
        hub.signals.on_messages_stored.append(self._messages_stored)
        hub.signals.on_token_replaced.append(self._token_replaced)
        if self._cluster is not None:
            self._cluster.on("push", self._remote_push)
            self._cluster.on("kick", self._remote_kick)

    def route(self) -> WebSocketRoute:
        return WebSocketRoute(PATH, self.endpoint)

    async def start(self) -> None:
        if self._cluster is not None:
            await self._cluster.start()
        await self._hub.presence.start()
        self._sweeper = asyncio.create_task(self._sweep(), name="gateway-sweeper")

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        for conn in self._registry:
            conn.close(1001, "server shutting down")
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(5):
                while self.tasks:
                    await asyncio.gather(*list(self.tasks), return_exceptions=True)
        await self._hub.presence.close()
        if self._cluster is not None:
            await self._cluster.close()

    # --- connections --------------------------------------------------------------------

    def connection(self, actor: Actor, operation_id: str, send: Send, proto: Any
                   ) -> Connection:
        return Connection(f"{self._node}.{next(self._serial):x}", actor, operation_id, send,
                          proto, self.tasks)

    async def attach(self, conn: Connection, token: str) -> None:
        """Register an accepted connection, kick the one it replaces, and go online."""
        older = self._registry.add(conn)
        if older is not None:
            _kick(older, REPLACED)
        if self._cluster is not None:
            self._cluster.publish("kick", {"t": conn.tenant_id, "u": conn.user_id,
                                           "p": conn.platform_id, "x": conn.conn_id,
                                           "r": REPLACED})
        await self._hub.presence.connected(conn)
        # A re-login that committed after this token was checked, but before the
        # connection was registered, kicked nobody: check once more now.
        try:
            await self._hub.tokens.verify(token)
        except ApiError:
            _kick(conn, TOKEN_REPLACED)

    async def detach(self, conn: Connection) -> None:
        conn.closing = True
        self._registry.remove(conn)
        try:
            await self._hub.presence.disconnected(conn)
        except Exception:
            log.exception("could not record %r going offline", conn)

    # --- pushes and kicks ---------------------------------------------------------------

    def _messages_stored(self, tenant_id: str, by_user: Msgs, origin: Origin | None) -> None:
        skip = origin[2] if origin else ""
        self._deliver(tenant_id, by_user, skip)
        if self._cluster is not None and by_user:
            self._cluster.publish("push", {"t": tenant_id, "o": skip, **_pack(by_user)})

    def _deliver(self, tenant_id: str, by_user: Msgs, skip: str) -> None:
        # Users given the same list (a group message) share one encoded frame.
        encoded: dict[int, bytes] = {}
        registry = self._registry
        for user_id, msgs in by_user.items():
            conns = registry.of_user(tenant_id, user_id)
            if not conns:
                continue
            for conn in conns.values():
                if conn.conn_id == skip:
                    continue  # the sending connection, answered by its ack
                frame = encoded.get(id(msgs))
                if frame is None:
                    frame = encoded[id(msgs)] = frames.push(msgs)
                conn.write(frame)

    def _remote_push(self, msg: dict[str, Any]) -> None:
        self._deliver(msg["t"], _unpack(msg, self._registry.of_user), msg["o"])

    def _token_replaced(self, tenant_id: str, user_id: str, platform_id: int) -> None:
        conn = self._registry.get(tenant_id, user_id, platform_id)
        if conn is not None:
            _kick(conn, TOKEN_REPLACED)
        if self._cluster is not None:
            self._cluster.publish("kick", {"t": tenant_id, "u": user_id, "p": platform_id,
                                           "x": "", "r": TOKEN_REPLACED})

    def _remote_kick(self, msg: dict[str, Any]) -> None:
        conn = self._registry.get(msg["t"], msg["u"], int(msg["p"]))
        if conn is not None and conn.conn_id != msg["x"]:
            _kick(conn, msg["r"])

    # --- idle connections ---------------------------------------------------------------

    async def _sweep(self) -> None:
        period = min(max(self._idle / 4, 0.05), 5.0)
        while True:
            await asyncio.sleep(period)
            now = time.monotonic()
            for conn in self._registry:
                silent = now - conn.last_seen()
                if silent <= self._idle:
                    continue
                if not conn.closing:
                    conn.close(1000, IDLE)
                elif silent > 2 * self._idle + 10:
                    conn.abort()  # closing for long and still here: the peer is gone


def _kick(conn: Connection, reason: str) -> None:
    if conn.closing:
        return
    conn.kicked = reason
    conn.write(frames.kick(reason))
    conn.close(1000, "kicked")


def _pack(by_user: Msgs) -> dict[str, Any]:
    """Each distinct message once, and for each user the indexes of theirs."""
    msgs: list[dict[str, Any]] = []
    index: dict[int, int] = {}
    users: dict[str, list[int]] = {}
    for user_id, user_msgs in by_user.items():
        mine = users[user_id] = []
        for m in user_msgs:
            i = index.get(id(m))
            if i is None:
                i = index[id(m)] = len(msgs)
                msgs.append(m)
            mine.append(i)
    return {"m": msgs, "r": users}


def _unpack(msg: dict[str, Any], local: Any) -> Msgs:
    """The users of a packed push that have connections here, with their messages; users
    sharing the same indexes share one list (and so one encoded frame)."""
    msgs = msg["m"]
    lists: dict[tuple[int, ...], list[dict[str, Any]]] = {}
    out: Msgs = {}
    for user_id, idx in msg["r"].items():
        if not local(msg["t"], user_id):
            continue
        key = tuple(idx)
        got = lists.get(key)
        if got is None:
            got = lists[key] = [msgs[i] for i in idx]
        out[user_id] = got
    return out
