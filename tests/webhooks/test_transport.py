"""FastTransport against real servers: uvicorn, and raw asyncio peers that misbehave."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import (
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Route

from hub.webhooks.transport import FastTransport

# -- a real uvicorn receiver ------------------------------------------------


async def _echo(request: Request) -> Response:
    body = await request.body()
    request.app.state.peers.add(request.client.port if request.client else 0)
    return JSONResponse(
        {
            "id": request.headers.get("x-id"),
            "body": body.decode(),
            "content_type": request.headers.get("content-type"),
            "host": request.headers.get("host"),
        },
        headers={"x-id": request.headers.get("x-id", "")},
    )


async def _redirect(request: Request) -> Response:
    return RedirectResponse("/echo", status_code=302)


async def _stream(request: Request) -> Response:
    async def parts() -> AsyncIterator[bytes]:
        for i in range(5):
            yield b"part%d;" % i

    return StreamingResponse(parts(), media_type="text/plain")


async def _status(request: Request) -> Response:
    code = int(request.path_params["code"])
    if code in (204, 304):
        return Response(status_code=code)
    return PlainTextResponse("status", status_code=code)


def echo_app() -> Starlette:
    app = Starlette(
        routes=[
            Route("/echo", _echo, methods=["POST", "GET", "HEAD"]),
            Route("/redirect", _redirect, methods=["POST", "GET"]),
            Route("/stream", _stream),
            Route("/status/{code:int}", _status, methods=["POST", "GET"]),
        ]
    )
    app.state.peers = set()
    return app


@contextlib.asynccontextmanager
async def serve_uvicorn(app: Starlette) -> AsyncIterator[int]:
    """Run ``app`` with uvicorn on a free loopback port in this event loop."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port: int = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
        yield port
    finally:
        server.should_exit = True
        await task
        sock.close()


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[str, Starlette]]:
    app = echo_app()
    async with serve_uvicorn(app) as port:
        yield f"http://127.0.0.1:{port}", app


@pytest.fixture
async def transport() -> AsyncIterator[FastTransport]:
    t = FastTransport(max_connections_per_origin=16)
    yield t
    await t.aclose()


# -- raw asyncio peers ------------------------------------------------------

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class RawServer:
    """asyncio.start_server with a connection count and a clean shutdown."""

    def __init__(self, handler: Handler) -> None:
        self._handler = handler
        self.connections = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: list[asyncio.StreamWriter] = []
        self.url = ""

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.append(writer)
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self._handler(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def __aenter__(self) -> RawServer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._server.close()
        for writer in self._writers:
            writer.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()


async def read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    return head + await reader.readexactly(length)


OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


def answer(*responses: bytes, close: bool = False, idle_close: float | None = None) -> Handler:
    """A handler that answers each request with the next of ``responses``."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for response in responses:
            try:
                await asyncio.wait_for(read_request(reader), idle_close)
            except TimeoutError:
                return  # idle keep-alive connection: close it, as servers do
            writer.write(response)
            await writer.drain()
            if close:
                return
        await reader.read()

    return handle


# -- through httpx.AsyncClient ----------------------------------------------


@pytest.mark.asyncio
async def test_post_through_async_client(
    receiver: tuple[str, Starlette], transport: FastTransport
) -> None:
    base, app = receiver
    async with httpx.AsyncClient(transport=transport) as client:
        response = await client.post(
            f"{base}/echo",
            content=b'{"a":1}',
            headers={"content-type": "application/json", "x-id": "42"},
        )
        again = await client.get(f"{base}/echo", headers={"x-id": "43"})
    assert response.status_code == 200
    assert response.reason_phrase == "OK"
    assert response.http_version == "HTTP/1.1"
    assert response.headers["x-id"] == "42"
    port = base.rsplit(":", 1)[1]
    assert response.json() == {
        "id": "42",
        "body": '{"a":1}',
        "content_type": "application/json",
        "host": f"127.0.0.1:{port}",
    }
    assert response.extensions["truncated"] is False
    assert response.elapsed.total_seconds() >= 0
    assert again.json()["id"] == "43"
    assert len(app.state.peers) == 1  # one keep-alive connection served both


@pytest.mark.asyncio
async def test_fast_path_post(receiver: tuple[str, Starlette], transport: FastTransport) -> None:
    base, _ = receiver
    result = await transport.post(
        f"{base}/echo", b"hello", {"x-id": "7", "content-type": "text/plain"}
    )
    assert result.status == 200
    assert not result.truncated
    assert (b"x-id", b"7") in result.headers
    assert httpx.Response(200, content=result.body).json()["body"] == "hello"
    got = await transport.request("GET", f"{base}/echo", headers=[("x-id", "8")])
    assert got.status == 200
    # Header lines encoded by the caller go out as they are.
    raw = await transport.post(f"{base}/echo", b"hi", b"x-id: 9\r\ncontent-type: text/x\r\n")
    assert (b"x-id", b"9") in raw.headers
    echoed = httpx.Response(200, content=raw.body).json()
    assert echoed["body"] == "hi" and echoed["content_type"] == "text/x"


@pytest.mark.asyncio
async def test_concurrent_requests_get_their_own_responses(
    receiver: tuple[str, Starlette], transport: FastTransport
) -> None:
    base, app = receiver
    async with httpx.AsyncClient(transport=transport) as client:

        async def one(i: int) -> tuple[int, str]:
            if i % 2:
                r = await client.post(f"{base}/echo", content=b"%d" % i, headers={"x-id": str(i)})
                return i, r.json()["id"] + "/" + r.json()["body"]
            raw = await transport.post(f"{base}/echo", b"%d" % i, {"x-id": str(i)})
            echoed = httpx.Response(200, content=raw.body).json()
            return i, echoed["id"] + "/" + echoed["body"]

        results = await asyncio.gather(*(one(i) for i in range(200)))
    assert all(echo == f"{i}/{i}" for i, echo in results)
    assert 1 <= len(app.state.peers) <= 16


@pytest.mark.asyncio
async def test_redirect_is_returned_not_followed(
    receiver: tuple[str, Starlette], transport: FastTransport
) -> None:
    base, _ = receiver
    raw = await transport.post(f"{base}/redirect", b"x")
    assert raw.status == 302
    # The client closes its transport on exit, so the fast path goes first.
    async with httpx.AsyncClient(transport=transport) as client:
        response = await client.post(f"{base}/redirect", content=b"x")
    assert response.status_code == 302
    assert response.headers["location"] == "/echo"


@pytest.mark.asyncio
async def test_chunked_response_from_uvicorn(
    receiver: tuple[str, Starlette], transport: FastTransport
) -> None:
    base, _ = receiver
    async with httpx.AsyncClient(transport=transport) as client:
        response = await client.get(f"{base}/stream")
        follow = await client.post(f"{base}/echo", content=b"after")
    assert response.headers["transfer-encoding"] == "chunked"
    assert response.text == "part0;part1;part2;part3;part4;"
    assert follow.json()["body"] == "after"


@pytest.mark.asyncio
async def test_head_and_no_content_responses_keep_the_connection(
    receiver: tuple[str, Starlette], transport: FastTransport
) -> None:
    base, app = receiver
    head = await transport.request("HEAD", f"{base}/echo")
    empty = await transport.post(f"{base}/status/204", b"")
    after = await transport.post(f"{base}/echo", b"next", {"x-id": "9"})
    assert head.status == 200 and head.body == b""
    assert empty.status == 204 and empty.body == b""
    assert httpx.Response(200, content=after.body).json()["body"] == "next"
    assert len(app.state.peers) == 1


# -- misbehaving peers ------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "reply",
    [
        b"SSH-2.0-OpenSSH_9.6\r\n",
        b"HTTP/1.1 abc OK\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nbroken header line\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2, 3\r\n\r\nok",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nok\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nokXX0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nX: " + b"a" * (70 * 1024) + b"\r\n\r\n",
    ],
    ids=[
        "not-http",
        "bad-status",
        "bad-header",
        "bad-length",
        "bad-chunk",
        "bad-crlf",
        "huge-head",
    ],
)
async def test_garbage_is_a_protocol_error(reply: bytes, transport: FastTransport) -> None:
    async with RawServer(answer(reply)) as server:
        with pytest.raises(httpx.RemoteProtocolError):
            await transport.post(f"{server.url}/", b"x", timeout=2.0)
        # The broken connection is dropped, never reused.
        with pytest.raises(httpx.RemoteProtocolError):
            await transport.post(f"{server.url}/", b"x", timeout=2.0)
        assert server.connections == 2


@pytest.mark.asyncio
async def test_garbage_through_async_client_carries_the_request(transport: FastTransport) -> None:
    async with (
        RawServer(answer(b"garbage\r\n\r\n")) as server,
        httpx.AsyncClient(transport=transport) as client,
    ):
        with pytest.raises(httpx.RemoteProtocolError) as caught:
            await client.post(f"{server.url}/x", content=b"x")
    assert caught.value.request.url == f"{server.url}/x"


@pytest.mark.asyncio
async def test_hanging_server_is_a_read_timeout(transport: FastTransport) -> None:
    async def hang(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\n")  # then nothing more
        await asyncio.sleep(30)

    async with RawServer(hang) as server:
        with pytest.raises(httpx.ReadTimeout):
            await transport.post(server.url, b"x", timeout=httpx.Timeout(5.0, read=0.1))
        async with httpx.AsyncClient(transport=transport) as client:
            started = time.monotonic()
            with pytest.raises(httpx.ReadTimeout):
                await client.post(server.url, content=b"x", timeout=0.2)
            assert time.monotonic() - started < 1.0


@pytest.mark.asyncio
async def test_pool_limit_and_pool_timeout() -> None:
    async def hang(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await asyncio.sleep(30)

    transport = FastTransport(max_connections_per_origin=1)
    async with RawServer(hang) as server:
        first = asyncio.create_task(transport.post(server.url, b"x", timeout=2.0))
        await asyncio.sleep(0.05)
        with pytest.raises(httpx.PoolTimeout):
            await transport.post(server.url, b"y", timeout=httpx.Timeout(2.0, pool=0.1))
        first.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await first
        assert server.connections == 1
    await transport.aclose()


@pytest.mark.asyncio
@pytest.mark.parametrize("idle_close", [None, 0.05], ids=["close-at-once", "close-when-idle"])
async def test_server_closed_keepalive_is_not_reused(
    idle_close: float | None, transport: FastTransport
) -> None:
    # No "Connection: close": the server just drops the connection, as servers
    # do with idle keep-alive connections.
    handler = answer(OK, OK, close=idle_close is None, idle_close=idle_close)
    async with RawServer(handler) as server:
        assert (await transport.post(server.url, b"1")).body == b"ok"
        if idle_close is not None:
            await asyncio.sleep(0.15)
        assert (await transport.post(server.url, b"2")).body == b"ok"
        assert server.connections == 2


@pytest.mark.asyncio
async def test_connection_close_response_is_not_reused(transport: FastTransport) -> None:
    reply = b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok"
    async with RawServer(answer(reply, reply)) as server:
        await transport.post(server.url, b"1")
        await transport.post(server.url, b"2")
        assert server.connections == 2


@pytest.mark.asyncio
async def test_raw_chunked_with_extensions_trailers_and_interim_response(
    transport: FastTransport,
) -> None:
    reply = (
        b"HTTP/1.1 100 Continue\r\n\r\n"
        b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5;name=value\r\nhello\r\n1 \r\n,\r\n6\r\n world\r\n0\r\nX-Trailer: 1\r\n\r\n"
    )

    async def trickle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # Byte by byte: every parser state must cope with split input.
        for _ in range(2):
            await read_request(reader)
            for i in range(len(reply)):
                writer.write(reply[i : i + 1])
                await writer.drain()
                await asyncio.sleep(0)
        await reader.read()

    async with RawServer(trickle) as server:
        for _ in range(2):
            result = await transport.post(server.url, b"x")
            assert (result.status, result.body) == (201, b"hello, world")
        assert server.connections == 1


@pytest.mark.asyncio
async def test_body_until_eof(transport: FastTransport) -> None:
    reply = b"HTTP/1.1 200 OK\r\n\r\nno framing at all"
    async with RawServer(answer(reply, close=True)) as server:
        result = await transport.post(server.url, b"x")
        assert result.body == b"no framing at all"
        await transport.post(server.url, b"x")
        assert server.connections == 2


@pytest.mark.asyncio
@pytest.mark.parametrize("framing", ["length", "chunked", "eof"])
async def test_huge_body_is_truncated_and_connection_dropped(framing: str) -> None:
    body = b"z" * (1024 * 1024)
    if framing == "length":
        reply = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    elif framing == "chunked":
        reply = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        reply += b"".join(b"4000\r\n" + body[:16384] + b"\r\n" for _ in range(64)) + b"0\r\n\r\n"
    else:
        reply = b"HTTP/1.1 200 OK\r\n\r\n" + body
    transport = FastTransport(max_response_bytes=10_000)
    async with RawServer(answer(reply, reply, close=framing == "eof")) as server:
        async with httpx.AsyncClient(transport=transport) as client:
            response = await client.post(server.url, content=b"x")
            assert len(response.content) == 10_000
            assert response.extensions["truncated"] is True
            second = await transport.post(server.url, b"x")
            assert (len(second.body), second.truncated) == (10_000, True)
        assert server.connections == 2


@pytest.mark.asyncio
async def test_connection_refused_is_connect_error(transport: FastTransport) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, never listening: refused
        with pytest.raises(httpx.ConnectError):
            await transport.post(f"http://127.0.0.1:{port}/", b"x")
        async with httpx.AsyncClient(transport=transport) as client:
            with pytest.raises(httpx.ConnectError):
                await client.post(f"http://127.0.0.1:{port}/", content=b"x")


@pytest.mark.asyncio
async def test_connect_guard_errors_and_timeouts() -> None:
    async def refuse(host: str, port: int) -> list[str]:
        raise ValueError(f"{host} is not allowed")

    async def slow(host: str, port: int) -> list[str]:
        await asyncio.sleep(5)
        return []

    refusing = FastTransport(connect_guard=refuse)
    with pytest.raises(httpx.ConnectError, match=r"example\.invalid is not allowed") as caught:
        await refusing.post("http://example.invalid/hook", b"x")
    assert isinstance(caught.value.__cause__, ValueError)
    stalling = FastTransport(connect_guard=slow)
    with pytest.raises(httpx.ConnectTimeout):
        await stalling.post("http://example.invalid/", b"x", timeout=httpx.Timeout(5, connect=0.1))


@pytest.mark.asyncio
async def test_connect_guard_address_is_used_with_original_host(
    receiver: tuple[str, Starlette],
) -> None:
    base, _ = receiver
    port = int(base.rsplit(":", 1)[1])
    asked: list[tuple[str, int]] = []

    async def guard(host: str, port: int) -> list[str]:
        asked.append((host, port))
        return ["127.0.0.1"]

    transport = FastTransport(connect_guard=guard)
    result = await transport.post(f"http://hooks.example.test:{port}/echo", b"x")
    await transport.aclose()
    echoed = httpx.Response(200, content=result.body).json()
    assert echoed["host"] == f"hooks.example.test:{port}"
    assert asked == [("hooks.example.test", port)]


@pytest.mark.asyncio
async def test_header_injection_is_refused(
    receiver: tuple[str, Starlette], transport: FastTransport
) -> None:
    base, _ = receiver
    with pytest.raises(httpx.LocalProtocolError):
        await transport.post(f"{base}/echo", b"x", {"x-a": "1\r\nx-b: 2"})
    async with httpx.AsyncClient(transport=transport) as client:
        with pytest.raises(httpx.LocalProtocolError):
            await client.post(f"{base}/echo", content=b"x", headers={"x-a": "1\nx-b: 2"})


@pytest.mark.asyncio
async def test_idle_connections_expire_and_aclose_closes_them() -> None:
    closed = asyncio.Event()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                await read_request(reader)
            except asyncio.IncompleteReadError:
                closed.set()
                return
            writer.write(OK)

    transport = FastTransport(idle_timeout=0.05)
    async with RawServer(serve) as server:
        await transport.post(server.url, b"1")
        await asyncio.wait_for(closed.wait(), 1.0)  # swept while idle
        closed.clear()
        await transport.post(server.url, b"2")
        assert server.connections == 2
        await transport.aclose()
        await asyncio.wait_for(closed.wait(), 1.0)
        with pytest.raises(RuntimeError, match="closed"):
            await transport.post(server.url, b"3")


@pytest.mark.asyncio
async def test_streaming_request_body_is_sent_with_content_length(
    receiver: tuple[str, Starlette], transport: FastTransport
) -> None:
    base, _ = receiver

    async def body() -> AsyncIterator[bytes]:
        yield b"part1,"
        yield b"part2"

    async with httpx.AsyncClient(transport=transport) as client:
        response = await client.post(f"{base}/echo", content=body())
    assert response.json()["body"] == "part1,part2"


def test_works_on_uvloop() -> None:
    # The hub's server may run on uvloop, whose transports are not asyncio's classes.
    uvloop = pytest.importorskip("uvloop")

    async def scenario() -> None:
        transport = FastTransport()
        async with RawServer(answer(OK, OK, OK)) as server:
            assert (await transport.post(server.url, b"1")).body == b"ok"
            assert (await transport.post(server.url, b"2")).body == b"ok"
            async with httpx.AsyncClient(transport=transport) as client:
                assert (await client.post(server.url, content=b"3")).text == "ok"
            assert server.connections == 1
        closing = FastTransport()
        async with RawServer(answer(OK, OK, close=True)) as server:
            await closing.post(server.url, b"1")
            await closing.post(server.url, b"2")  # the stale one is noticed, not used
            assert server.connections == 2
        await closing.aclose()

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(scenario())
