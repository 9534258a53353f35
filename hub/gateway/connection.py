"""One client connection: who it is, when it last spoke, and its one writer.

Frames to a client (replies, pushes, a kick, the close) are queued in order and written
together at the end of the current loop iteration, so that replies of concurrent
requests and pushes never interleave on the socket, a burst of frames costs one socket
write, and an idle connection holds nothing scheduled. Under `imhub serve` (uvicorn's
sans-I/O protocol, hub/gateway/protocol.py) the frames are written synchronously from a
loop callback; under any other server, by a short-lived task per burst through ASGI's
`send`. A client that stops reading while more than `_MAX_BUFFERED` bytes wait for it
(or `_MAX_QUEUED` frames, on the ASGI path) is cut off. State is in __slots__: a node
holds tens of thousands of these.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from ..context import Actor

log = logging.getLogger("imhub.gateway")

Send = Callable[[dict[str, Any]], Awaitable[None]]

# Frames queued, or bytes unread, for a client that does not read: past this, it is cut
# off (it syncs by seq when it comes back, so nothing is lost).
_MAX_QUEUED = 2048
_MAX_BUFFERED = 8 << 20
# How long writing the close frame may take before the socket is dropped.
_CLOSE_WRITE_SECONDS = 5.0


@dataclass(frozen=True, slots=True)
class _Close:
    code: int
    reason: str


class Connection:
    __slots__ = ("_out", "_proto", "_send", "_tasks", "actor", "closing", "conn_id", "inflight",
                 "kicked", "online", "operation_id", "platform_id", "seen", "tenant_id",
                 "user_id")

    def __init__(self, conn_id: str, actor: Actor, operation_id: str, send: Send, proto: Any,
                 tasks: set[asyncio.Task[None]]) -> None:
        assert actor.user_id is not None, "a connection is a user's"
        self.conn_id = conn_id
        self.actor = actor  # the authenticated one: every request of the connection acts as it
        # Its fields again, as plain attributes: read on every frame and push.
        self.tenant_id = actor.tenant_id
        self.user_id: str = actor.user_id
        self.platform_id = actor.platform_id
        self.operation_id = operation_id
        self.seen = time.monotonic()
        self.inflight = 0
        self.closing = False
        self.kicked: str | None = None  # why this connection was kicked, if it was
        self.online = False  # its afterUserOnline is written (so its offline will be)
        self._send = send
        # The uvicorn protocol when it stamps every byte received (hub/gateway/protocol.py).
        self._proto = proto
        self._tasks = tasks
        self._out: list[bytes | _Close] | None = None

    def __repr__(self) -> str:
        return f"<Connection {self.conn_id} {self.tenant_id}/{self.user_id}/{self.platform_id}>"

    def last_seen(self) -> float:
        """When the client last sent anything (pings and pongs count when we can see them)."""
        proto = self._proto
        return max(self.seen, proto.imhub_seen) if proto is not None else self.seen

    @property
    def reads_frames_itself(self) -> bool:
        """Whether its text frames are read by hub/gateway/framing.py rather than by
        websockets (diagnostics and tests; see hub/gateway/protocol.py)."""
        return getattr(self._proto, "imhub_reading", None) is True

    def write(self, frame: bytes) -> None:
        """Queue a text frame (its UTF-8 payload); dropped once the connection is closing."""
        if not self.closing:
            self._queue(frame)

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Close after the frames already queued have been written."""
        if not self.closing:
            self._queue(_Close(code, reason))
            self.closing = True

    def abort(self) -> None:
        """Drop the socket at once (a peer that neither reads nor answers)."""
        self.closing = True
        transport = getattr(self._proto, "transport", None)
        if transport is not None:
            transport.abort()

    def _queue(self, item: bytes | _Close) -> None:
        if self._out is None:
            self._out = [item]
            if hasattr(self._proto, "imhub_write"):
                asyncio.get_running_loop().call_soon(self._flush)
            else:
                self._start_drain()
        elif len(self._out) < _MAX_QUEUED:
            self._out.append(item)
        else:
            self._cut_off()

    def _cut_off(self) -> None:
        log.warning("%r reads too slowly; cut off", self)
        if self._out is not None:
            self._out.clear()
        self.abort()

    def _start_drain(self) -> None:
        task = asyncio.get_running_loop().create_task(self._drain())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _flush(self) -> None:
        """Write the queued text frames at once; a close goes the ASGI way, in a task."""
        out = self._out or []
        texts: list[bytes] = []
        for i, item in enumerate(out):
            if isinstance(item, _Close):
                self._out = out[i:]
                break
            texts.append(item)
        else:
            self._out = None
        if texts and not self._proto.imhub_write(texts):
            self.closing = True  # the peer is gone or going: nothing more to write
        if self._out is not None:
            self._start_drain()  # the close, after the frames before it
        elif not self.closing and self._proto.imhub_buffered() > _MAX_BUFFERED:
            self._cut_off()

    async def _drain(self) -> None:
        try:
            while self._out:
                batch, self._out = self._out, []
                for item in batch:
                    if isinstance(item, _Close):
                        await self._write_close(item)
                        return
                    await self._send({"type": "websocket.send", "text": item.decode()})
        except Exception as exc:  # the client went away while we wrote: nothing to do
            log.debug("%r: write failed: %r", self, exc)
            self.closing = True
        finally:
            self._out = None

    async def _write_close(self, item: _Close) -> None:
        try:
            async with asyncio.timeout(_CLOSE_WRITE_SECONDS):
                await self._send({"type": "websocket.close", "code": item.code,
                                  "reason": item.reason})
        except TimeoutError:
            self.abort()
