"""Resident memory per idle authenticated WebSocket connection to one imhub process.

`imhub serve` runs as a subprocess on a fresh SQLite database with a tenant from
`imhub tenant create --json`; N users each get a token, then N clients connect to /ws
and stay idle. The figure is (RSS after - RSS before) / N, RSS read from
/proc/PID/status. The baseline, in the same run: the same N connections (the same raw
client, the same uvicorn WebSocket implementation) to a bare uvicorn + Starlette echo
app. OpenIM's Go gateway holds about 27 KB per connection.

    .venv/bin/python bench/idle_connections.py [-n 10000] [--ws websockets-sansio wsproto]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import yaml
from _baseline import _wait_listening, free_port, run_uvicorn_receiver
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

_IMHUB = str(Path(sys.executable).parent / "imhub")


async def _echo(ws: WebSocket) -> None:
    await ws.accept()
    with contextlib.suppress(WebSocketDisconnect):
        while True:
            await ws.send_text(await ws.receive_text())


echo_app = Starlette(routes=[WebSocketRoute("/ws", _echo)])
"""The baseline: a bare uvicorn + Starlette WebSocket app."""


def _raise_nofile() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # children inherit it


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def _pid_on(port: int) -> int:
    """The PID of the process listening on `port` (the uvicorn child of the baseline)."""
    inode = None
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[3] == "0A" and int(fields[1].split(":")[1], 16) == port:
            inode = fields[9]
            break
    assert inode is not None, f"nothing listens on {port}"
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            for fd in (proc / "fd").iterdir():
                if os.readlink(fd) == f"socket:[{inode}]":
                    return int(proc.name)
    raise RuntimeError(f"no process owns port {port}")


class _Idle(asyncio.Protocol):
    """A client that does the handshake and then stays silent."""

    def __init__(self, request: bytes, done: asyncio.Future[bytes]) -> None:
        self._request = request
        self._done = done
        self._buf = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        transport.write(self._request)

    def data_received(self, data: bytes) -> None:
        if self._done.done():
            return
        self._buf += data
        if b"\r\n\r\n" in self._buf:
            self._done.set_result(self._buf.split(b"\r\n", 1)[0])

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._done.done():
            self._done.set_exception(ConnectionError("closed during the handshake"))


def _upgrade(port: int, query: str) -> bytes:
    return (f"GET /ws?{query} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n").encode()


async def _connect_all(port: int, queries: list[str]) -> list[asyncio.BaseTransport]:
    loop = asyncio.get_running_loop()
    gate = asyncio.Semaphore(128)
    transports: list[asyncio.BaseTransport] = []

    async def one(query: str) -> None:
        async with gate:
            done: asyncio.Future[bytes] = loop.create_future()
            transport, _ = await loop.create_connection(
                lambda: _Idle(_upgrade(port, query), done), "127.0.0.1", port)
            status = await done
            if b" 101 " not in status:
                raise RuntimeError(f"upgrade refused: {status!r}")
            transports.append(transport)

    await asyncio.gather(*(one(q) for q in queries))
    return transports


async def _measure(pid: int, port: int, queries: list[str]) -> tuple[float, float]:
    """(bytes per connection, seconds to connect all) for connections made with `queries`."""
    warm = await _connect_all(port, queries[:50])  # first-use allocations are not per-connection
    for t in warm:
        t.close()
    await asyncio.sleep(1.0)
    before = _rss_kb(pid)
    start = time.monotonic()
    conns = await _connect_all(port, queries)
    took = time.monotonic() - start
    await asyncio.sleep(3.0)  # let the server finish its per-connection work
    after = _rss_kb(pid)
    for t in conns:
        t.close()
    return (after - before) * 1024 / len(queries), took


@contextlib.contextmanager
def _imhub(ws: str) -> Iterator[tuple[subprocess.Popen[bytes], int, str, str]]:
    with tempfile.TemporaryDirectory(prefix="imhub-bench-") as tmp:
        env = dict(os.environ, IMHUB_DATABASE_URL=f"sqlite+aiosqlite:///{tmp}/imhub.db")
        cfg = Path(tmp) / "hub.yml"
        # Idle connections must outlive the time it takes to open all of them.
        cfg.write_text(yaml.safe_dump({"gateway": {"ws": ws, "idle_timeout_seconds": 3600},
                                       "webhooks": {"delivery": {"enabled": False}}}))
        made = subprocess.run([_IMHUB, "tenant", "create", "bench", "--json", "--config",
                               str(cfg)], env=env, capture_output=True, text=True, check=True)
        tenant = json.loads(made.stdout)
        port = free_port()
        proc = subprocess.Popen([_IMHUB, "serve", "--config", str(cfg), "--port", str(port)],
                                env=env)
        try:
            _wait_listening("127.0.0.1", port, proc, limit=30.0)
            yield proc, port, tenant["tenantID"], tenant["adminToken"]
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


async def _tokens(port: int, admin: str, n: int) -> list[str]:
    """Register n users and log each in on platform 1; the upgrade queries."""
    users = [f"u{i:06d}" for i in range(n)]
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60,
                                 headers={"token": admin}) as http:
        for i in range(0, n, 1000):
            r = await http.post("/user/user_register", json={"users": [
                {"userID": u} for u in users[i:i + 1000]]})
            assert r.json()["errCode"] == 0, r.text
        gate = asyncio.Semaphore(32)

        async def login(user: str) -> str:
            async with gate:
                r = await http.post("/auth/get_user_token",
                                    json={"userID": user, "platformID": 1})
            body = r.json()
            assert body["errCode"] == 0, body
            return f"sendID={user}&platformID=1&token={body['data']['token']}"

        return list(await asyncio.gather(*(login(u) for u in users)))


async def _gateway(ws: str, n: int) -> tuple[float, float]:
    with _imhub(ws) as (proc, port, _tenant, admin):
        queries = await _tokens(port, admin, n + 50)
        # The warm-up uses the last 50 users, the measured run the first n.
        return await _measure(proc.pid, port, queries[n:] + queries[:n])


async def _baseline(ws: str, n: int) -> tuple[float, float]:
    with run_uvicorn_receiver("idle_connections:echo_app",
                              extra_args=("--ws", ws, "--ws-ping-interval", "0",
                                          "--ws-per-message-deflate", "false")) as port:
        pid = _pid_on(port)
        return await _measure(pid, port, ["x=1"] * (n + 50))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=10_000, help="connections (default 10000)")
    parser.add_argument("--ws", nargs="+", default=["websockets-sansio", "wsproto"],
                        choices=["websockets-sansio", "wsproto", "websockets"])
    args = parser.parse_args()
    _raise_nofile()
    print(f"idle authenticated WebSocket connections: N={args.n}; resident memory per "
          "connection (RSS after - before) / N")
    for ws in args.ws:
        mine, took = asyncio.run(_gateway(ws, args.n))
        base, base_took = asyncio.run(_baseline(ws, args.n))
        print(f"  ws={ws:<18} imhub {mine / 1024:6.1f} KB/conn (connect {took:5.1f} s)   "
              f"bare uvicorn+starlette {base / 1024:6.1f} KB/conn (connect {base_took:5.1f} s)"
              f"   ratio {mine / base:4.2f}")


if __name__ == "__main__":
    main()
