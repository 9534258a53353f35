"""Run `imhub serve` in a subprocess for a benchmark, with a fresh database and tenant.

The server gets its own process (its own core on a 2-core box), so the figures measure
the server rather than a client sharing its event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from _baseline import _wait_listening, free_port

_BENCH_DIR = Path(__file__).resolve().parent
_IMHUB = str(Path(sys.executable).parent / "imhub")


@dataclass
class Imhub:
    host: str
    port: int
    tenant_id: str
    admin_token: str
    data_dir: Path
    pid: int = 0  # the server process, for its CPU time (`cpu_seconds`)

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"


@contextlib.contextmanager
def run_imhub(
    config: dict[str, Any] | None = None, *, database_url: str | None = None,
    floor: str | None = None, wrapper: Sequence[str] = (), wait: float = 30.0,
) -> Iterator[Imhub]:
    """Serve imhub on a free port with `config` (hub.yml keys) and a new tenant; with
    `floor`, its send cut down to that floor (bench/_floor.py); with `wrapper`, under
    that command (`valgrind ...`), given `wait` seconds to start listening."""
    with tempfile.TemporaryDirectory(prefix="imhub-bench-") as tmp:
        data = Path(tmp)
        env = dict(os.environ)
        env["IMHUB_DATABASE_URL"] = database_url or f"sqlite+aiosqlite:///{data}/imhub.db"
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(_BENCH_DIR), str(_BENCH_DIR.parent), env.get("PYTHONPATH")) if p
        )
        cfg = data / "hub.yml"
        cfg.write_text(yaml.safe_dump(config or {}))
        made = subprocess.run(
            [_IMHUB, "tenant", "create", "bench", "--json", "--config", str(cfg)],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        tenant = json.loads(made.stdout)
        port = free_port()
        serve = [_IMHUB] if floor is None else [
            sys.executable, str(_BENCH_DIR / "_floor.py"), floor]
        proc = subprocess.Popen(
            [*wrapper, *serve, "serve", "--config", str(cfg), "--port", str(port)], env=env
        )
        try:
            _wait_listening("127.0.0.1", port, proc, limit=wait)
            yield Imhub("127.0.0.1", port, tenant["tenantID"], tenant["adminToken"], data,
                        proc.pid)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


PG_URL = os.environ.get("IMHUB_TEST_PG_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")


@contextlib.contextmanager
def pg_schema() -> Iterator[tuple[str, dict[str, Any]]]:
    """A PostgreSQL schema of its own for one server: (database URL, hub.yml keys),
    dropped after."""
    import secrets

    from hub.db.engine import create_engine

    schema = "bench_" + secrets.token_hex(4)

    async def run(sql: str) -> None:
        engine = create_engine(PG_URL)
        async with engine.begin() as conn:
            await conn.exec_driver_sql(sql)
        await engine.dispose()

    asyncio.run(run(f'CREATE SCHEMA "{schema}"'))
    try:
        yield PG_URL, {"database": {"schema": schema}}
    finally:
        asyncio.run(run(f'DROP SCHEMA "{schema}" CASCADE'))


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of process `pid` so far, all threads (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class JsonClient(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection posting JSON; as little client work as possible,
    so that the figure is the server's."""

    def __init__(self, host: str, port: int) -> None:
        self._host = f"{host}:{port}".encode()
        self._buf = b""
        self._waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self.transport: asyncio.Transport | None = None

    @classmethod
    async def connect(cls, host: str, port: int) -> JsonClient:
        loop = asyncio.get_running_loop()
        _, client = await loop.create_connection(lambda: cls(host, port), host, port)
        return client

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        buf = self._buf + data
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            self._buf = buf
            return
        head = buf[:end].lower()
        start = head.find(b"content-length:")
        length = (
            int(
                head[
                    start + 15 : head.find(b"\r\n", start)
                    if head.find(b"\r\n", start) > 0
                    else len(head)
                ]
            )
            if start >= 0
            else 0
        )
        if len(buf) < end + 4 + length:
            self._buf = buf
            return
        status = int(buf[9:12])
        body = buf[end + 4 : end + 4 + length]
        self._buf = buf[end + 4 + length :]
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result((status, body))

    def connection_lost(self, exc: Exception | None) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(ConnectionError("server closed the connection"))

    async def post(self, path: str, body: dict[str, Any], token: str) -> dict[str, Any]:
        payload = json.dumps(body).encode()
        assert self.transport is not None
        self._waiter = asyncio.get_running_loop().create_future()
        self.transport.write(
            b"POST %s HTTP/1.1\r\nHost: %s\r\ntoken: %s\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s"
            % (path.encode(), self._host, token.encode(), len(payload), payload)
        )
        status, raw = await self._waiter
        env: dict[str, Any] = json.loads(raw)
        if status != 200 or env.get("errCode") != 0:
            raise RuntimeError(f"{path}: {status} {env}")
        return env

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
