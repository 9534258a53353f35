"""uvicorn's WebSocket protocols, taught to note when a client last sent anything.

ASGI shows an application data frames only, never the pings and pongs that keep a quiet
connection alive, so the idle sweeper (hub/gateway/gateway.py) could not tell a client
that pings from a dead one. These subclasses stamp the time of every byte received; the
gateway finds the stamp through the `receive` callable uvicorn hands it. Under any other
server the gateway still works, counting data frames only. They also hand /ws straight
to the gateway's endpoint, past the ASGI layers a connection would otherwise keep
suspended for its whole life (see `_direct`); other paths go to the app as usual.

`imhub serve` runs with `uvicorn_options(settings)`: the protocol chosen by
`gateway.ws`, no server-sent pings (the client keeps the connection alive, as OpenIM's
clients do: a 1001 heartbeat or a WebSocket ping), the frame size limit, and
permessage-deflate per `gateway.per_message_deflate`.
"""

from __future__ import annotations

import asyncio
import importlib
import time
from collections.abc import Callable
from functools import cache
from typing import Any

from websockets.protocol import State
from websockets.streams import StreamReader

from ..settings import Settings
from . import framing

_BASES = {
    "websockets-sansio": ("uvicorn.protocols.websockets.websockets_sansio_impl",
                          "WebSocketsSansIOProtocol"),
    "wsproto": ("uvicorn.protocols.websockets.wsproto_impl", "WSProtocol"),
    "websockets": ("uvicorn.protocols.websockets.websockets_impl", "WebSocketProtocol"),
}


class Tracked:
    """Mixin for a uvicorn WebSocket protocol: `imhub_seen` is when bytes last came in, and
    /ws goes straight to the gateway."""

    imhub_seen: float = 0.0

    def __init__(self, config: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(config, *args, **kwargs)  # type: ignore[call-arg]
        self.app = _direct(config)

    def data_received(self, data: bytes) -> None:
        self.imhub_seen = time.monotonic()
        super().data_received(data)  # type: ignore[misc]


def _direct(config: Any) -> Any:
    """The ASGI app for this server's connections: /ws to the gateway's endpoint itself,
    the rest to the app as loaded.

    A connection's coroutine stays suspended for as long as the connection lives, and
    each ASGI layer it passes through (proxy headers, Starlette's two exception layers,
    the router, the route) keeps a frame of it: about 5 KB per connection, a fifth of the
    total. The endpoint answers its own errors, and uses neither the client address nor
    anything else those layers add. Built once per server.
    """
    app = getattr(config, "_imhub_direct", None)
    if app is not None:
        return app
    loaded = config.loaded_app
    state = getattr(config.app, "state", None)
    hub = getattr(state, "hub", None)
    gateway = getattr(hub, "gateway", None)
    if gateway is None:  # not imhub's app: leave it as it is
        app = loaded
    else:
        from .gateway import PATH

        endpoint = gateway.endpoint

        async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
            if scope["type"] == "websocket" and scope["path"] == scope.get("root_path",
                                                                            "") + PATH:
                await endpoint(scope, receive, send)
            else:
                await loaded(scope, receive, send)

    config._imhub_direct = app
    return app


class _SansIOFast:
    """Mixin for uvicorn's sans-I/O protocol (the default `gateway.ws`): text frames are
    written without a coroutine and read without the ASGI queue. It reaches into that
    protocol's attributes, so it is mixed into that one only; the gateway falls back to
    ASGI where a protocol lacks `imhub_write` / `imhub_frames`.

    Once the gateway takes a connection's frames, its final, masked text frames are
    also parsed here (hub/gateway/framing.py) rather than by websockets' parser; a
    whole control or binary frame is handed to websockets as it came, and at the first
    frame only websockets may judge (a fragment, a frame too big or malformed, a
    close) websockets reads the connection for good, from that frame on. websockets
    is thus only ever given whole frames, so its parser stays at a frame boundary.
    """

    # Set by the gateway once a connection is online: takes each text frame as it is
    # parsed, and returns a future when reading must pause until it is done.
    imhub_frames: Callable[[str], asyncio.Future[None] | None] | None = None

    # Whether client frames are read here (framing.py) rather than by websockets: None
    # until the gateway takes frames and websockets' parser waits at a frame boundary,
    # False for good once a frame only websockets may judge came (a fragment, a frame
    # too big, a close).
    imhub_reading: bool | None = None
    # The start of a frame not all received yet: grown in place, so that a big frame
    # trickling in does not cost a copy of all of it per read.
    _imhub_rest: bytearray | None = None
    _imhub_max: int | None = None  # websockets' limit on a message's size

    def data_received(self, data: bytes) -> None:
        if self.imhub_reading is not True and not self._imhub_start_reading():
            super().data_received(data)  # type: ignore[misc]
            return
        proto: Any = self
        rest = self._imhub_rest
        buf: bytes | bytearray = data
        if rest:
            rest += data
            buf = rest
        max_size = self._imhub_max
        pos = 0
        while True:
            kind, end, payload = framing.next_frame(buf, pos, max_size)
            if kind == framing.TEXT:
                proto.curr_msg_data_type = "text"
                proto.frames = [payload]
                self.send_receive_event_to_app()
            elif kind == framing.INCOMPLETE:
                if buf is rest:
                    del rest[:pos]
                else:
                    self._imhub_rest = bytearray(buf[pos:])
                return
            elif kind == framing.OTHER:
                self._imhub_stop_reading(bytes(buf[pos:]))
                return
            else:  # a whole control or binary frame: websockets answers it as ever
                super().data_received(bytes(buf[pos:end]))  # type: ignore[misc]
            pos = end
            if proto.conn.state is not _OPEN:  # closing: websockets sees the rest
                self._imhub_stop_reading(bytes(buf[pos:]))
                return
            if pos == len(buf):
                if rest:
                    rest.clear()
                return

    def _imhub_start_reading(self) -> bool:
        """Start reading frames here if websockets' parser waits for the first byte of a
        frame, with nothing buffered and no fragmented message under way."""
        if self.imhub_reading is False or self.imhub_frames is None:
            return False
        conn: Any = self.conn  # type: ignore[attr-defined]
        try:
            if (conn.state is not _OPEN or conn.extensions or conn.current_size is not None
                    or conn.reader.buffer):
                return False
            gen = conn.parser
            while gen.gi_yieldfrom is not None:
                gen = gen.gi_yieldfrom
            if gen.gi_code is not _AT_EOF:
                return False
            self._imhub_max = conn.max_message_size
        except AttributeError:  # a websockets whose insides differ: it reads, as ever
            self.imhub_reading = False
            return False
        self.imhub_reading = True
        return True

    def _imhub_stop_reading(self, rest: bytes) -> None:
        self.imhub_reading = False
        self._imhub_rest = None
        if rest:
            super().data_received(rest)  # type: ignore[misc]

    def send_receive_event_to_app(self) -> None:
        """A text frame goes straight to the gateway, when it has said it takes them,
        reading is not paused and nothing is queued for the app before it (so frames keep
        their order).

        The ASGI way puts each frame in a queue for the connection's task, pauses reading
        until that task takes it, and resumes reading after: a task wake-up and two
        epoll changes per frame. When the gateway's limit of requests in flight is
        reached, reading pauses until that request is done, and the frames already
        received meanwhile go the ASGI way, where the connection's task takes them one
        by one as requests finish."""
        proto: Any = self
        handler = self.imhub_frames
        if (handler is None or proto.curr_msg_data_type != "text" or proto.close_sent
                or proto.read_paused or not proto.queue.empty()):
            super().send_receive_event_to_app()  # type: ignore[misc]
            return
        frames = proto.frames
        data = frames[0] if len(frames) == 1 else b"".join(frames)
        try:
            text = data.decode()
        except UnicodeDecodeError:
            super().send_receive_event_to_app()  # type: ignore[misc]  # closes with 1007
            return
        proto.frames = []
        wait = handler(text)
        if wait is not None:
            if not proto.read_paused:
                proto.read_paused = True
                proto.transport.pause_reading()
            wait.add_done_callback(self._imhub_resume)

    def _imhub_resume(self, _: object) -> None:
        proto: Any = self
        if proto.read_paused and proto.queue.empty() and not proto.transport.is_closing():
            proto.read_paused = False
            proto.transport.resume_reading()

    def imhub_write(self, texts: list[bytes]) -> bool:
        """Write text frames now, in one transport write; False when this connection can
        no longer take frames (closing, closed, never accepted).

        Its ASGI `send` does the same work for one frame, but as a coroutine, which the
        gateway would have to run in a task per burst: two loop iterations and a task
        for a few microseconds of framing, on every reply and push."""
        proto: Any = self
        if (not proto.handshake_complete or proto.close_sent
                or proto.initial_response is not None or proto.transport.is_closing()):
            return False
        conn = proto.conn
        if conn.extensions or conn.expect_continuation_frame or conn.state is not _OPEN:
            try:  # websockets frames it (compression) or refuses (the close under way)
                for text in texts:
                    conn.send_text(text)
            except Exception:  # websockets' InvalidState
                return False
            proto.transport.write(b"".join(conn.data_to_send()))
            return True
        # An unmasked, uncompressed text frame is a header and the payload: framed here,
        # without websockets' Frame object per frame (docs/performance.md, eighth session).
        out = conn.data_to_send() if conn.writes else []
        for text in texts:
            out.append(framing.text_header(len(text)))
            out.append(text)
        proto.transport.write(b"".join(out))
        return True

    def imhub_buffered(self) -> int:
        """Bytes written but not yet taken by the kernel (a client that does not read)."""
        proto: Any = self
        return int(proto.transport.get_write_buffer_size())


_OPEN = State.OPEN
# Where websockets' frame parser waits when it is between frames (see _imhub_start_reading).
_AT_EOF = StreamReader.at_eof.__code__


class _QuietRefusal:
    """Mixin for the sans-I/O and wsproto protocols: a refused upgrade (our 401) is a
    complete answer.

    uvicorn logs "ASGI callable returned without completing handshake" at ERROR level after
    a websocket.http.response, which would put an error line in the log for every bad
    token a client tries.
    """

    async def send(self, message: dict[str, Any]) -> None:
        await super().send(message)  # type: ignore[misc]
        if message["type"] == "websocket.http.response.body" and not message.get("more_body"):
            self.handshake_complete = True


@cache
def protocol_class(name: str) -> type[asyncio.Protocol]:
    """The tracked subclass of uvicorn's protocol `name` (see GatewaySettings.ws)."""
    module, cls = _BASES[name]
    base = getattr(importlib.import_module(module), cls)
    # The legacy "websockets" protocol has a `send` of its own (and no such log line).
    mixins: tuple[type, ...] = {
        "websockets-sansio": (Tracked, _SansIOFast, _QuietRefusal),
        "wsproto": (Tracked, _QuietRefusal),
    }.get(name, (Tracked,))
    return type(f"Tracked{cls}", (*mixins, base), {})


def tracked_protocol(receive: Any) -> Tracked | None:
    """The tracked protocol behind an ASGI `receive`, if the server runs one."""
    proto = getattr(receive, "__self__", None)
    return proto if isinstance(proto, Tracked) else None


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """uvicorn.Config keyword arguments for the gateway."""
    gw = settings.gateway
    return {
        "ws": protocol_class(gw.ws),
        "ws_max_size": settings.server.max_body_bytes,
        "ws_per_message_deflate": gw.per_message_deflate,
        "ws_ping_interval": None,
        "ws_ping_timeout": None,
    }
