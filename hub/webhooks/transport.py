"""A fast HTTP/1.1 transport for httpx, built on asyncio protocols.

httpx's default transport (httpcore) spends a millisecond or more of CPU per
request (``bench/transport.py``); a webhook fan-out sends many small POSTs to
few origins, so that cost decides throughput. :class:`FastTransport` keeps httpx's API::

    client = httpx.AsyncClient(transport=FastTransport())
    await client.post(url, content=body, headers=headers)

and offers a lower-level path on the same pool that skips
``httpx.AsyncClient``'s own per-request work (URL merging, cookies, auth
flow, ``Response`` decoding), which costs more than the transport itself::

    status, headers, body, truncated = await transport.post(url, body, headers)

Scope: HTTP/1.1 only, whole (small) request bodies, response bodies capped
at ``max_response_bytes`` (a capped connection is closed, not drained),
redirects are returned rather than followed.
"""

from __future__ import annotations

import asyncio
import enum
import functools
import re
import select
import ssl
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, NamedTuple, TypeAlias, cast

import certifi
import httpx

__all__ = ["ConnectGuard", "FastTransport", "RawResponse"]

ConnectGuard: TypeAlias = Callable[[str, int], Awaitable[list[str]]]
"""``(host, port) -> addresses``: resolve and vet a host before connecting."""

Headers: TypeAlias = Mapping[str, str] | Iterable[tuple[str, str]]


class RawResponse(NamedTuple):
    """Result of the low-level :meth:`FastTransport.request` path."""

    status: int
    headers: list[tuple[bytes, bytes]]
    """Raw header pairs, names in the case the server sent."""
    body: bytes
    truncated: bool
    """The body was longer than ``max_response_bytes`` and was cut."""


# (connect, read, write, pool) in seconds; None means no limit.
_Timeouts: TypeAlias = tuple[float | None, float | None, float | None, float | None]
# status, reason, headers, body, truncated, http version
_Result: TypeAlias = tuple[int, bytes, list[tuple[bytes, bytes]], bytes, bool, bytes]

_MAX_HEAD = 64 * 1024
_MAX_CHUNK_LINE = 1024
_HEX = re.compile(rb"[0-9A-Fa-f]{1,15}")
_STATUS_PREFIX = b"HTTP/"
_NO_BODY_METHODS = frozenset((b"HEAD",))
_BODYLESS_METHODS = frozenset((b"GET", b"HEAD", b"DELETE", b"OPTIONS", b"TRACE"))


class _Unset(enum.Enum):
    UNSET = enum.auto()


_UNSET = _Unset.UNSET

# Parser states.
_HEAD, _LENGTH, _UNTIL_CLOSE, _CHUNK_SIZE, _CHUNK_DATA, _CHUNK_CRLF, _TRAILER, _DONE = range(8)


class _BadResponse(Exception):
    pass


class _Stale(Exception):
    """The pooled connection died before the request was written."""


def _server_disconnected() -> httpx.RemoteProtocolError:
    # httpcore's wording, so logs read the same whichever transport is used.
    return httpx.RemoteProtocolError("Server disconnected without sending a response.")


def _incomplete_body() -> httpx.RemoteProtocolError:
    return httpx.RemoteProtocolError("peer closed connection without sending complete body")


def _set_if_pending(fut: asyncio.Future[Any], exc: BaseException) -> None:
    if not fut.done():
        fut.set_exception(exc)


class _Conn(asyncio.Protocol):
    """One keep-alive connection and the parser for its current response."""

    __slots__ = (
        "_buf", "_drain", "_fd", "_got", "_headers", "_last", "_loop", "_max_body", "_need",
        "_no_body", "_parts", "_read_timeout", "_reason", "_scan", "_seen_bytes", "_state",
        "_status", "_timer", "_version", "_waiter", "alive", "counted", "idle_since", "in_idle",
        "keep", "origin", "paused", "transport",
    )  # fmt: skip

    def __init__(self, origin: _Origin) -> None:
        self.origin = origin
        self.alive = True
        self.keep = True
        self.counted = True
        self.in_idle = False
        self.idle_since = 0.0
        self.transport: asyncio.Transport | None = None
        self._fd = -1
        self._loop = origin.loop
        self._max_body = origin.max_body
        self._buf = bytearray()
        self._scan = 0
        self._state = _DONE
        self._need = 0
        self._parts: list[bytes | bytearray] = []
        self._got = 0
        self._no_body = False
        self._waiter: asyncio.Future[_Result] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._read_timeout = 0.0
        self._last = 0.0
        self._seen_bytes = False
        self._status = 0
        self._reason = b""
        self._version = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self.paused = False
        self._drain: asyncio.Future[None] | None = None

    # -- asyncio.Protocol ---------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A cast, not isinstance: uvloop's transports do not subclass asyncio's.
        self.transport = cast(asyncio.Transport, transport)
        sock = transport.get_extra_info("socket")
        self._fd = sock.fileno() if sock is not None else -1

    def readable(self) -> bool:
        """Whether the idle socket has bytes or EOF waiting (so it is stale).

        The loop may not have delivered a FIN yet when we pick a pooled
        connection; asking the kernel closes most of that window (httpcore
        does the same). Costs one non-blocking select() per reuse.
        """
        if self._fd < 0:
            return False
        return bool(select.select((self._fd,), (), (), 0)[0])

    def connection_lost(self, exc: Exception | None) -> None:
        self.alive = False
        self._wake_drain()
        fut = self._waiter
        if fut is not None and not fut.done():
            if self._state == _UNTIL_CLOSE:
                self._finish(truncated=False)  # EOF is how this body ends
            elif isinstance(exc, OSError):
                error = httpx.WriteError if self.paused else httpx.ReadError
                self._fail(error(str(exc) or repr(exc)))
            elif not self._seen_bytes:
                self._fail(_server_disconnected())
            else:
                self._fail(_incomplete_body())
        self.origin.discard(self)

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        self._wake_drain()

    def data_received(self, data: bytes) -> None:
        if self._waiter is None:
            # Bytes nobody asked for: the stream is out of sync, never reuse it.
            self.close()
            return
        self._seen_bytes = True
        if self._timer is not None:
            self._last = self._loop.time()
        buf = self._buf
        src: bytes | bytearray = data
        if buf:
            buf += data
            src = buf
        try:
            pos = self._parse(src)
        except _BadResponse as exc:
            self._fail(httpx.RemoteProtocolError(str(exc)))
            return
        if self._state == _DONE:
            if pos < len(src):
                self.keep = False  # bytes after a complete response: out of sync
            if src is buf:
                buf.clear()
        elif src is buf:
            del buf[:pos]
        elif pos < len(src):
            buf += memoryview(data)[pos:]

    # -- request side -------------------------------------------------------

    def send(
        self, data: bytes, read_timeout: float | None, no_body: bool
    ) -> asyncio.Future[_Result]:
        transport = self.transport
        if transport is None or not self.alive or transport.is_closing():
            raise _Stale
        self._state = _HEAD
        self._scan = 0
        self._parts = []
        self._got = 0
        self._no_body = no_body
        self._seen_bytes = False
        fut: asyncio.Future[_Result] = self._loop.create_future()
        self._waiter = fut
        transport.write(data)
        if read_timeout is not None:
            self._read_timeout = read_timeout
            self._last = self._loop.time()
            self._timer = self._loop.call_later(read_timeout, self._on_timer)
        return fut

    async def drain(self, write_timeout: float | None) -> None:
        """Wait until the kernel took the request (only when writes paused)."""
        while self.paused and self.alive:
            drain = self._drain = self._loop.create_future()
            try:
                async with asyncio.timeout(write_timeout):
                    await drain
            except TimeoutError:
                raise httpx.WriteTimeout("timed out writing the request") from None

    def close(self) -> None:
        self.alive = False
        self.keep = False
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.transport is not None:
            self.transport.close()

    def _wake_drain(self) -> None:
        drain = self._drain
        if drain is not None:
            self._drain = None
            if not drain.done():
                drain.set_result(None)

    def _on_timer(self) -> None:
        # One timer per request; data only stamps self._last, so a slow
        # but steady response does not pay for re-arming a timer per chunk.
        self._timer = None
        if self._waiter is None or self._waiter.done():
            return
        deadline = self._last + self._read_timeout
        if deadline - self._loop.time() > 1e-3:
            self._timer = self._loop.call_at(deadline, self._on_timer)
            return
        self._fail(httpx.ReadTimeout("timed out waiting for the response"))

    def _fail(self, exc: Exception) -> None:
        fut = self._waiter
        self._waiter = None
        self._state = _DONE
        self.close()
        if fut is not None and not fut.done():
            fut.set_exception(exc)

    def _finish(self, truncated: bool) -> None:
        self._state = _DONE
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        parts = self._parts
        body = bytes(parts[0]) if len(parts) == 1 else b"".join(parts)
        self._parts = []
        if truncated:
            self.close()
        fut = self._waiter
        self._waiter = None
        if fut is not None and not fut.done():
            fut.set_result(
                (self._status, self._reason, self._headers, body, truncated, self._version)
            )

    # -- response parsing ---------------------------------------------------

    def _take(self, src: bytes | bytearray, pos: int, size: int) -> bool:
        """Collect ``size`` body bytes at ``pos``; False once the cap is hit."""
        room = self._max_body - self._got
        if size > room:
            if room:
                self._parts.append(src[pos : pos + room])
                self._got += room
            return False
        if size:
            self._parts.append(src[pos : pos + size])
            self._got += size
        return True

    def _parse(self, src: bytes | bytearray) -> int:
        """Consume what ``src`` holds of the response; return the offset reached."""
        pos = 0
        end = len(src)
        while True:
            state = self._state
            if state == _HEAD:
                if not _STATUS_PREFIX.startswith(src[pos : pos + 5]):
                    raise _BadResponse("response does not start with an HTTP status line")
                stop = src.find(b"\r\n\r\n", pos + self._scan)
                if stop < 0:
                    if end - pos > _MAX_HEAD:
                        raise _BadResponse("response headers too large")
                    self._scan = max(0, end - pos - 3)
                    return pos
                if stop - pos > _MAX_HEAD:
                    raise _BadResponse("response headers too large")
                self._scan = 0
                self._on_head(bytes(src[pos:stop]))
                pos = stop + 4
                if self._state == _DONE:
                    self._finish(truncated=False)
                    return pos
            elif state in (_LENGTH, _CHUNK_DATA):
                size = min(self._need, end - pos)
                if not self._take(src, pos, size):
                    self._finish(truncated=True)
                    return end
                pos += size
                self._need -= size
                if self._need:
                    return pos
                if state == _LENGTH:
                    self._finish(truncated=False)
                    return pos
                self._state = _CHUNK_CRLF
            elif state == _CHUNK_SIZE:
                eol = src.find(b"\r\n", pos)
                if eol < 0:
                    if end - pos > _MAX_CHUNK_LINE:
                        raise _BadResponse("chunk size line too long")
                    return pos
                size_field = src[pos:eol].split(b";", 1)[0].strip(b" \t")
                if not _HEX.fullmatch(size_field):
                    raise _BadResponse("invalid chunk size")
                self._need = int(size_field, 16)
                self._state = _CHUNK_DATA if self._need else _TRAILER
                pos = eol + 2
            elif state == _CHUNK_CRLF:
                if end - pos < 2:
                    return pos
                if src[pos : pos + 2] != b"\r\n":
                    raise _BadResponse("missing CRLF after chunk data")
                pos += 2
                self._state = _CHUNK_SIZE
            elif state == _TRAILER:
                eol = src.find(b"\r\n", pos)
                if eol < 0:
                    if end - pos > _MAX_HEAD:
                        raise _BadResponse("response trailers too large")
                    return pos
                line_start, pos = pos, eol + 2
                if eol == line_start:
                    self._finish(truncated=False)
                    return pos
                self._scan += pos - line_start  # _scan counts trailer bytes here
                if self._scan > _MAX_HEAD:
                    raise _BadResponse("response trailers too large")
            elif state == _UNTIL_CLOSE:
                if not self._take(src, pos, end - pos):
                    self._finish(truncated=True)
                return end
            else:
                return pos

    def _on_head(self, head: bytes) -> None:
        lines = head.split(b"\r\n")
        parts = lines[0].split(b" ", 2)
        version = parts[0]
        if len(parts) < 2 or version not in (b"HTTP/1.1", b"HTTP/1.0"):
            raise _BadResponse("invalid status line")
        code = parts[1]
        if len(code) != 3 or not code.isdigit():
            raise _BadResponse("invalid status code")
        status = int(code)
        keep = version == b"HTTP/1.1"
        length: int | None = None
        chunked = False
        encoded = False
        headers: list[tuple[bytes, bytes]] = []
        for line in lines[1:]:
            name, colon, value = line.partition(b":")
            if not colon or not name or name[-1] in b" \t" or name[0] in b" \t":
                raise _BadResponse("invalid header line")
            value = value.strip(b" \t")
            headers.append((name, value))
            lower = name.lower()
            if lower == b"content-length":
                length = _content_length(value, length)
            elif lower == b"transfer-encoding":
                encoded = True
                chunked = value.lower().rsplit(b",", 1)[-1].strip() == b"chunked"
            elif lower == b"connection":
                tokens = {t.strip() for t in value.lower().split(b",")}
                if b"close" in tokens:
                    keep = False
                elif b"keep-alive" in tokens:
                    keep = True
        if status < 200:
            if status == 101:
                raise _BadResponse("unexpected 101 Switching Protocols")
            return  # interim (1xx) response: the real one follows
        self._status = status
        self._reason = parts[2] if len(parts) == 3 else b""
        self._version = version
        self._headers = headers
        if not keep:
            self.keep = False
        if self._no_body or status == 204 or status == 304:
            self._state = _DONE
        elif encoded:
            if length is not None:
                self.keep = False  # both framings sent: do not trust the stream after
            if chunked:
                self._state = _CHUNK_SIZE
            else:
                self._state = _UNTIL_CLOSE
                self.keep = False
        elif length is not None:
            self._need = length
            self._state = _LENGTH if length else _DONE
        else:
            self._state = _UNTIL_CLOSE
            self.keep = False


def _content_length(value: bytes, previous: int | None) -> int:
    if previous is None and value.isdigit() and len(value) <= 18:
        return int(value)  # the usual case
    # Repeated or comma-joined values are only acceptable when identical.
    fields = {v.strip() for v in value.split(b",")}
    if len(fields) != 1:
        raise _BadResponse("conflicting Content-Length values")
    field = fields.pop()
    if not field.isdigit() or len(field) > 18:
        raise _BadResponse("invalid Content-Length")
    length = int(field)
    if previous is not None and previous != length:
        raise _BadResponse("conflicting Content-Length values")
    return length


def _raise_pool_timeout(fut: asyncio.Future[_Conn | None]) -> None:
    if not fut.done():
        fut.set_exception(httpx.PoolTimeout("timed out waiting for a free connection"))


class _Origin:
    """The connections to one (scheme, host, port) and the callers waiting for one.

    Every connection holds a slot in ``total`` from connect until discard;
    a freed slot or a released connection goes to the oldest waiter first.
    """

    __slots__ = (
        "_sweeper", "closed", "guard", "host", "idle", "idle_timeout", "limit", "loop",
        "max_body", "port", "ssl", "total", "waiters",
    )  # fmt: skip

    def __init__(
        self,
        owner: FastTransport,
        loop: asyncio.AbstractEventLoop,
        host: str,
        port: int,
        tls: ssl.SSLContext | None,
    ) -> None:
        self.loop = loop
        self.host = host
        self.port = port
        self.ssl = tls
        self.guard = owner._connect_guard
        self.limit = owner._max_connections
        self.idle_timeout = owner._idle_timeout
        self.max_body = owner._max_response_bytes
        self.idle: deque[_Conn] = deque()  # most recently used on the right
        self.total = 0
        self.waiters: deque[asyncio.Future[_Conn | None]] = deque()
        self.closed = False
        self._sweeper: asyncio.TimerHandle | None = None

    async def acquire(self, connect_timeout: float | None, pool_timeout: float | None) -> _Conn:
        if self.closed:
            raise RuntimeError("FastTransport is closed")
        idle = self.idle
        if idle:
            cutoff = self.loop.time() - self.idle_timeout
            while idle:
                conn = idle.pop()
                conn.in_idle = False
                if conn.alive and conn.idle_since > cutoff and not conn.readable():
                    return conn
                self.discard(conn)
        if self.total < self.limit:
            self.total += 1
        else:
            handed = await self._wait(pool_timeout)
            if handed is not None:
                return handed
        try:
            return await self._connect(connect_timeout)
        except BaseException:
            self._free_slot()
            raise

    def release(self, conn: _Conn) -> None:
        if not conn.counted:
            return
        if not (conn.keep and conn.alive) or self.closed:
            self.discard(conn)
            return
        waiters = self.waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(conn)
                return
        conn.in_idle = True
        conn.idle_since = self.loop.time()
        self.idle.append(conn)
        if self._sweeper is None:
            self._sweeper = self.loop.call_later(self.idle_timeout, self._sweep)

    def discard(self, conn: _Conn) -> None:
        """Close ``conn`` and give its slot away; safe to call repeatedly."""
        if not conn.counted:
            return
        conn.counted = False
        if conn.in_idle:
            conn.in_idle = False
            self.idle.remove(conn)
        conn.close()
        self._free_slot()

    def close(self) -> None:
        self.closed = True
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        while self.idle:
            self.discard(self.idle[-1])
        while self.waiters:
            _set_if_pending(self.waiters.popleft(), RuntimeError("FastTransport is closed"))

    def _free_slot(self) -> None:
        waiters = self.waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot passes on; total is unchanged
                return
        self.total -= 1

    async def _wait(self, limit: float | None) -> _Conn | None:
        """Wait for a released connection, or None: a free slot to connect with."""
        fut: asyncio.Future[_Conn | None] = self.loop.create_future()
        self.waiters.append(fut)
        timer = None if limit is None else self.loop.call_later(limit, _raise_pool_timeout, fut)
        try:
            return await fut
        except BaseException:
            # Cancelled after being handed something: pass it on, or it leaks.
            if fut.done() and not fut.cancelled() and fut.exception() is None:
                handed = fut.result()
                if handed is None:
                    self._free_slot()
                else:
                    self.release(handed)
            raise
        finally:
            if timer is not None:
                timer.cancel()

    async def _connect(self, limit: float | None) -> _Conn:
        try:
            async with asyncio.timeout(limit):
                return await self._open()
        except TimeoutError:
            raise httpx.ConnectTimeout(f"timed out connecting to {self.host}:{self.port}") from None

    async def _open(self) -> _Conn:
        addresses = [self.host]
        if self.guard is not None:
            try:
                addresses = await self.guard(self.host, self.port)
            except Exception as exc:
                raise httpx.ConnectError(str(exc)) from exc
            if not addresses:
                raise httpx.ConnectError(f"no address to connect to for {self.host}")
        server_hostname = self.host if self.ssl is not None else None
        error: OSError | None = None
        for address in addresses:
            try:
                _, conn = await self.loop.create_connection(
                    self._new_conn,
                    address,
                    self.port,
                    ssl=self.ssl,
                    server_hostname=server_hostname,
                )
                return conn
            except OSError as exc:
                error = exc
        raise httpx.ConnectError(str(error)) from error

    def _new_conn(self) -> _Conn:
        return _Conn(self)

    def _sweep(self) -> None:
        self._sweeper = None
        idle = self.idle
        cutoff = self.loop.time() - self.idle_timeout
        while idle and idle[0].idle_since <= cutoff:
            self.discard(idle[0])
        if idle:
            self._sweeper = self.loop.call_at(idle[0].idle_since + self.idle_timeout, self._sweep)


def _encode_head(
    method: bytes, target: bytes, headers: list[tuple[bytes, bytes]], body: bytes
) -> bytes:
    out = [method, b" ", target, b" HTTP/1.1\r\n"]
    lines = 2  # the request line and the blank line
    framed = False
    for name, value in headers:
        lower = name.lower()
        if lower == b"content-length" or lower == b"transfer-encoding":
            framed = True  # the body goes out whole, so we frame it ourselves
            continue
        out += (name, b": ", value, b"\r\n")
        lines += 1
    if body or framed:
        out.append(b"Content-Length: %d\r\n" % len(body))
        lines += 1
    out.append(b"\r\n")
    head = b"".join(out)
    _check_head(head, lines, target)
    return head


def _check_head(head: bytes, lines: int, target: bytes) -> None:
    """Refuse CR/LF smuggled in through a header or the target."""
    if head.count(b"\n") != lines or head.count(b"\r") != lines or b" " in target:
        raise httpx.LocalProtocolError("illegal character in request target or header")


class _Target(NamedTuple):
    scheme: str
    host: str
    port: int
    prefix: bytes  # b" <target> HTTP/1.1\r\nHost: <host>\r\n"


@functools.lru_cache(maxsize=1024)
def _parse_url(url: str) -> _Target:
    # Webhook URLs repeat, so httpx's careful (and slow) parsing runs once per URL.
    parsed = httpx.URL(url)
    if parsed.scheme not in ("http", "https"):
        raise httpx.UnsupportedProtocol(f"unsupported URL scheme {parsed.scheme!r}")
    if not parsed.raw_host:
        raise httpx.LocalProtocolError(f"URL has no host: {url!r}")
    host = parsed.raw_host.decode("ascii")
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    netloc = parsed.netloc  # bracketed IPv6, default port omitted, as in a Host header
    prefix = b" %s HTTP/1.1\r\nHost: %s\r\n" % (parsed.raw_path, netloc)
    if b" " in parsed.raw_path or prefix.count(b"\r") != 2 or prefix.count(b"\n") != 2:
        raise httpx.LocalProtocolError(f"illegal character in URL: {url!r}")
    return _Target(parsed.scheme, host, port, prefix)


class FastTransport(httpx.AsyncBaseTransport):
    """Pooled HTTP/1.1 keep-alive transport; see the module docstring.

    Keyword-only options:

    - ``max_connections_per_origin``: open connections per (scheme, host,
      port); further requests wait up to the pool timeout.
    - ``idle_timeout``: seconds an unused connection stays pooled. Keep it
      below the receivers' keep-alive timeout (uvicorn: 5 s) so we rarely
      pick a connection the server is closing.
    - ``max_response_bytes``: response body cap. Bytes past it are dropped
      and the connection is closed; ``response.extensions["truncated"]``
      (or ``RawResponse.truncated``) tells.
    - ``connect_guard``: ``async (host, port) -> [ip, ...]`` run before each
      new connection; we connect to the returned addresses in order, keeping
      the original Host header and TLS server name. Its exceptions surface
      as ``httpx.ConnectError`` (the original is ``__cause__``).
    - ``ssl_context``: for ``https``; default verifies against certifi's CAs
      like httpx does.
    - ``timeout``: used by :meth:`request`/:meth:`post` and by httpx requests
      that carry no ``timeout`` extension.
    """

    def __init__(
        self,
        *,
        max_connections_per_origin: int = 100,
        idle_timeout: float = 4.0,
        max_response_bytes: int = 64 * 1024,
        connect_guard: ConnectGuard | None = None,
        ssl_context: ssl.SSLContext | None = None,
        timeout: httpx.Timeout | float | None = 5.0,
    ) -> None:
        if max_connections_per_origin < 1:
            raise ValueError("max_connections_per_origin must be at least 1")
        if idle_timeout <= 0:
            raise ValueError("idle_timeout must be positive")
        if max_response_bytes < 0:
            raise ValueError("max_response_bytes must not be negative")
        self._max_connections = max_connections_per_origin
        self._idle_timeout = idle_timeout
        self._max_response_bytes = max_response_bytes
        self._connect_guard = connect_guard
        self._ssl_context = ssl_context
        self._timeouts = _to_timeouts(timeout)
        self._origins: dict[tuple[str, str, int], _Origin] = {}
        self._closed = False

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        scheme = url.scheme
        if scheme != "http" and scheme != "https":
            raise httpx.UnsupportedProtocol(f"unsupported URL scheme {scheme!r}")
        host = url.raw_host.decode("ascii")
        port = url.port or (443 if scheme == "https" else 80)
        origin = self._origins.get((scheme, host, port)) or self._new_origin(scheme, host, port)
        try:
            body = request.content
        except httpx.RequestNotRead:
            assert isinstance(request.stream, httpx.AsyncByteStream)
            body = b"".join([part async for part in request.stream])
        method = request.method.encode("ascii")
        data = _encode_head(method, url.raw_path, request.headers.raw, body) + body
        t = request.extensions.get("timeout")
        timeouts = (
            self._timeouts
            if t is None
            else (t.get("connect"), t.get("read"), t.get("write"), t.get("pool"))
        )
        status, reason, headers, content, truncated, version = await _roundtrip(
            origin, data, timeouts, method in _NO_BODY_METHODS
        )
        return httpx.Response(
            status,
            headers=headers,
            stream=httpx.ByteStream(content),
            extensions={"http_version": version, "reason_phrase": reason, "truncated": truncated},
        )

    async def request(
        self,
        method: str,
        url: str,
        content: bytes = b"",
        headers: Headers | bytes | None = None,
        *,
        # Four phase limits, as in httpx; one asyncio.timeout cannot say that.
        timeout: httpx.Timeout | float | _Unset | None = _UNSET,  # noqa: ASYNC109
    ) -> RawResponse:
        """Send one request through the pool without ``httpx.AsyncClient``.

        ``headers`` must not contain Host, Content-Length or
        Transfer-Encoding (set here). As ``bytes`` they are header lines
        already encoded, each ending in CRLF, sent as they are: the caller
        answers for them (hub/webhooks/request.py builds them). Raises the
        same httpx exceptions as the httpx path, without ``exc.request`` set.
        """
        target = _parse_url(url)
        origin = self._origins.get((target.scheme, target.host, target.port)) or self._new_origin(
            target.scheme, target.host, target.port
        )
        method_b = method.encode("ascii")
        extra = b""
        if isinstance(headers, bytes):
            extra = headers
        elif headers:
            pairs = list(headers.items() if isinstance(headers, Mapping) else headers)
            extra = "".join([f"{name}: {value}\r\n" for name, value in pairs]).encode("latin-1")
            # One CRLF per header, or a name/value smuggled in a line break.
            if extra.count(b"\n") != len(pairs) or extra.count(b"\r") != len(pairs):
                raise httpx.LocalProtocolError("illegal character in a request header")
        if content or method_b not in _BODYLESS_METHODS:
            data = b"%s%s%sContent-Length: %d\r\n\r\n%s" % (
                method_b, target.prefix, extra, len(content), content
            )  # fmt: skip
        else:
            data = b"%s%s%s\r\n" % (method_b, target.prefix, extra)
        timeouts = self._timeouts if timeout is _UNSET else _to_timeouts(timeout)
        status, _, raw_headers, body, truncated, _ = await _roundtrip(
            origin, data, timeouts, method_b in _NO_BODY_METHODS
        )
        return RawResponse(status, raw_headers, body, truncated)

    async def post(
        self,
        url: str,
        content: bytes,
        headers: Headers | bytes | None = None,
        *,
        # Four phase limits, as in httpx; one asyncio.timeout cannot say that.
        timeout: httpx.Timeout | float | _Unset | None = _UNSET,  # noqa: ASYNC109
    ) -> RawResponse:
        """``request("POST", ...)``: the webhook delivery fast path."""
        return await self.request("POST", url, content, headers, timeout=timeout)

    async def aclose(self) -> None:
        """Close idle connections; in-flight ones close when their response ends."""
        self._closed = True
        for origin in self._origins.values():
            origin.close()
        self._origins.clear()

    def _new_origin(self, scheme: str, host: str, port: int) -> _Origin:
        if self._closed:
            raise RuntimeError("FastTransport is closed")
        tls = self._tls() if scheme == "https" else None
        origin = _Origin(self, asyncio.get_running_loop(), host, port, tls)
        self._origins[(scheme, host, port)] = origin
        return origin

    def _tls(self) -> ssl.SSLContext:
        if self._ssl_context is None:
            # Built on first use: loading the CA bundle takes tens of ms.
            context = ssl.create_default_context(cafile=certifi.where())
            context.set_alpn_protocols(["http/1.1"])
            self._ssl_context = context
        return self._ssl_context


def _to_timeouts(timeout: httpx.Timeout | float | None) -> _Timeouts:
    if timeout is None or isinstance(timeout, (int, float)):
        return (timeout, timeout, timeout, timeout)
    if isinstance(timeout, httpx.Timeout):
        return (timeout.connect, timeout.read, timeout.write, timeout.pool)
    kind = type(timeout).__name__
    raise TypeError(f"timeout must be httpx.Timeout, a number or None, not {kind}")


async def _roundtrip(origin: _Origin, data: bytes, timeouts: _Timeouts, no_body: bool) -> _Result:
    connect_timeout, read_timeout, write_timeout, pool_timeout = timeouts
    for _ in range(2):
        conn = await origin.acquire(connect_timeout, pool_timeout)
        try:
            fut = conn.send(data, read_timeout, no_body)
        except _Stale:
            # Nothing was written, so a retry on another connection is safe.
            origin.discard(conn)
            continue
        try:
            if conn.paused:
                await conn.drain(write_timeout)
            result = await fut
        except BaseException:
            origin.discard(conn)
            raise
        origin.release(conn)
        return result
    raise httpx.RemoteProtocolError("connection closed before the request could be sent")
