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
    port = free_port() if port is None else port
    env = dict(os.environ)
    paths = [str(_BENCH_DIR), str(_REPO_ROOT), env.get("PYTHONPATH", "")]
    env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    cmd = [
        sys.executable, "-m", "uvicorn", app,
        "--host", host, "--port", str(port),
        "--log-level", "warning", "--no-access-log",
        *extra_args,
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, env=env)
    try:
        _wait_listening(host, port, proc, limit=15.0)
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def measure_rate(
    senders: Sequence[Callable[[], Awaitable[object]]],
    *,
    seconds: float = 3.0,
    warmup: float = 0.3,
) -> float:
    """Run one loop per sender concurrently; return completed calls per second.

    Pass ``[send] * 16`` for a shared client, or one sender per connection.
    Calls finishing during ``warmup`` are not counted, so connection setup
    and first-call costs stay out of the figure.
    """
    loop = asyncio.get_running_loop()
    start = loop.time() + warmup
    stop = start + seconds
    counted = 0

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
    return counted / seconds


_RAW_BODY = b'{"type":"message.created","data":{"id":"m_1","text":"hello"}}'


async def _raw_connection(host: str, port: int, path: str) -> Callable[[], Awaitable[None]]:
    reader, writer = await asyncio.open_connection(host, port)
    request = (
        b"POST %s HTTP/1.1\r\nHost: %s:%d\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s"
        % (path.encode(), host.encode(), port, len(_RAW_BODY), _RAW_BODY)
    )

    async def _send() -> None:
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        await reader.readexactly(length)

    return _send


async def raw_post_rate_async(
    host: str, port: int, concurrency: int = 16, seconds: float = 3.0, path: str = "/"
) -> float:
    """:func:`raw_post_rate` for callers already inside an event loop."""
    senders = [await _raw_connection(host, port, path) for _ in range(concurrency)]
    return await measure_rate(senders, seconds=seconds)


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
