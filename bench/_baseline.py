"""Shared helpers for the project's benchmarks.

The receiver runs in its own process so that the client under test and the
server do not share one event loop (and, on a 2-core box, one core): a
benchmark should measure the client, not the client plus the server.

Run this file directly to serve the bare receiver::

    python bench/_baseline.py --port 8000
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import NamedTuple, cast

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

_BENCH_DIR = Path(__file__).resolve().parent
_REPO_ROOT = _BENCH_DIR.parent

RECEIVER_APP = "_baseline:receiver_app"
"""Import string of the bare receiver: 200 ``ok`` to any POST."""


async def _ok(request: Request) -> Response:
    await request.body()
    return PlainTextResponse("ok")


receiver_app = Starlette(routes=[Route("/{path:path}", _ok, methods=["POST", "GET"])])


def free_port() -> int:
    """Return a loopback TCP port that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_listening(host: str, port: int, proc: subprocess.Popen[bytes], limit: float) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"receiver exited early with code {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"receiver did not listen on {host}:{port} within {limit}s")


@contextlib.contextmanager
def run_uvicorn_receiver(
    app: str = RECEIVER_APP,
    port: int | None = None,
    *,
    host: str = "127.0.0.1",
    extra_args: tuple[str, ...] = (),
) -> Iterator[int]:
    """Serve ``app`` (a uvicorn import string) with uvicorn in a subprocess.

    Yields the port. ``bench/`` and the repository root are on the child's
    ``PYTHONPATH``, so both ``_baseline:receiver_app`` and ``hub....:app``
    import strings work.
    """
    with run_uvicorn_process(app, port, host=host, extra_args=extra_args) as proc:
        yield proc.port


class Served(NamedTuple):
    port: int
    pid: int


@contextlib.contextmanager
def run_uvicorn_process(
    app: str = RECEIVER_APP,
    port: int | None = None,
    *,
    host: str = "127.0.0.1",
    extra_args: tuple[str, ...] = (),
    wrapper: Sequence[str] = (),
    wait: float = 15.0,
) -> Iterator[Served]:
    """`run_uvicorn_receiver`, yielding the server's port and process ID. ``wrapper``
    runs it under another command that becomes the process (``valgrind ...``), which
    may need ``wait`` seconds to start listening."""
    port = free_port() if port is None else port
    env = dict(os.environ)
    paths = [str(_BENCH_DIR), str(_REPO_ROOT), env.get("PYTHONPATH", "")]
    env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    cmd = [
        *wrapper, sys.executable, "-m", "uvicorn", app,
        "--host", host, "--port", str(port),
        "--log-level", "warning", "--no-access-log",
        *extra_args,
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, env=env)
    try:
        _wait_listening(host, port, proc, limit=wait)
        yield Served(port, proc.pid)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class Measurement(NamedTuple):
    rate: float
    """Completed calls per second."""
    cpu_per_call: float
    """Seconds of this process's CPU per completed call (client cost only,
    since the receiver runs elsewhere); steadier than ``rate`` on a busy box."""


async def measure(
    senders: Sequence[Callable[[], Awaitable[object]]],
    *,
    seconds: float = 3.0,
    warmup: float = 0.3,
) -> Measurement:
    """Run one loop per sender concurrently, after a warmup; see :class:`Measurement`.

    Pass ``[send] * 16`` for a shared client, or one sender per connection.
    Calls finishing during ``warmup`` are not counted, so connection setup
    and first-call costs stay out of the figure.
    """
    loop = asyncio.get_running_loop()
    start = loop.time() + warmup
    stop = start + seconds
    counted = 0
    cpu = [0.0, 0.0]
    loop.call_at(start, lambda: cpu.__setitem__(0, time.process_time()))
    loop.call_at(stop, lambda: cpu.__setitem__(1, time.process_time()))

    async def _worker(send: Callable[[], Awaitable[object]]) -> None:
        nonlocal counted
        while True:
            await send()
            now = loop.time()
            if now >= stop:
                return
            if now >= start:
                counted += 1

    await asyncio.gather(*(_worker(send) for send in senders))
    return Measurement(counted / seconds, (cpu[1] - cpu[0]) / max(counted, 1))


async def measure_rate(
    senders: Sequence[Callable[[], Awaitable[object]]],
    *,
    seconds: float = 3.0,
    warmup: float = 0.3,
) -> float:
    """:func:`measure`, rate only."""
    return (await measure(senders, seconds=seconds, warmup=warmup)).rate


_RAW_BODY = b'{"type":"message.created","data":{"id":"m_1","text":"hello"}}'


class _RawClient(asyncio.Protocol):
    """One keep-alive connection; the least work a client can do per request."""

    def __init__(self) -> None:
        self._buf = b""
        self._done: asyncio.Future[None] | None = None
        self._lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def data_received(self, data: bytes) -> None:
        buf = self._buf + data
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            self._buf = buf
            return
        start = buf.lower().find(b"content-length:", 0, end)
        length = int(buf[start + 15 : buf.find(b"\r\n", start)]) if start >= 0 else 0
        if len(buf) < end + 4 + length:
            self._buf = buf
            return
        self._buf = buf[end + 4 + length :]
        if self._done is not None:
            self._done.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._done is not None and not self._done.done():
            self._done.set_exception(ConnectionError("receiver closed the connection"))

    def post(self, request: bytes) -> asyncio.Future[None]:
        assert self.transport is not None
        self._done = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        return self._done

    transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A cast, not isinstance: uvloop's transports do not subclass asyncio's.
        self.transport = cast(asyncio.Transport, transport)


async def _raw_connection(host: str, port: int, path: str) -> Callable[[], Awaitable[None]]:
    loop = asyncio.get_running_loop()
    _, client = await loop.create_connection(_RawClient, host, port)
    request = (
        b"POST %s HTTP/1.1\r\nHost: %s:%d\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s"
        % (path.encode(), host.encode(), port, len(_RAW_BODY), _RAW_BODY)
    )

    async def _send() -> None:
        await client.post(request)

    return _send


async def raw_post_measure(
    host: str, port: int, concurrency: int = 16, seconds: float = 3.0, path: str = "/"
) -> Measurement:
    """:func:`raw_post_rate` with the client's CPU per request."""
    senders = [await _raw_connection(host, port, path) for _ in range(concurrency)]
    return await measure(senders, seconds=seconds)


async def raw_post_rate_async(
    host: str, port: int, concurrency: int = 16, seconds: float = 3.0, path: str = "/"
) -> float:
    """:func:`raw_post_rate` for callers already inside an event loop."""
    return (await raw_post_measure(host, port, concurrency, seconds, path)).rate


def raw_post_rate(
    host: str, port: int, concurrency: int = 16, seconds: float = 3.0, path: str = "/"
) -> float:
    """POST/s of a hand-written asyncio HTTP/1.1 keep-alive client.

    This is the ceiling the other clients are compared with: fixed request
    bytes, ``Content-Length`` responses only, one connection per worker.
    """
    return asyncio.run(raw_post_rate_async(host, port, concurrency, seconds, path))


def _main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    uvicorn.run(receiver_app, host=args.host, port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    _main()
