"""Shared fixtures: a real database (SQLite and PostgreSQL), a real uvicorn server on a
loopback port, and factories for tenants and users that clean up after themselves."""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import uvicorn
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from hub.api.app import create_app
from hub.core import Hub
from hub.gateway import uvicorn_options
from hub.settings import Settings, load_settings
from hub.tenants import create_tenant

PG_URL = os.environ.get("IMHUB_TEST_PG_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("IMHUB_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@dataclass
class Database:
    url: str
    schema: str | None = None

    @property
    def kind(self) -> str:
        return "postgresql" if self.url.startswith("postgresql") else "sqlite"


def _sqlite(tmp_path: Any) -> Database:
    return Database(f"sqlite+aiosqlite:///{tmp_path}/imhub.db")


@asynccontextmanager
async def pg_schema() -> AsyncIterator[Database]:
    """A PostgreSQL schema of this test's own, dropped after."""
    schema = "t_" + secrets.token_hex(6)
    engine = create_async_engine(PG_URL)
    async with engine.begin() as conn:
        await conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    try:
        yield Database(PG_URL, schema)
    finally:
        async with engine.begin() as conn:
            await conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        await engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
async def database(request: pytest.FixtureRequest, tmp_path: Any) -> AsyncIterator[Database]:
    """A fresh database of each kind: a SQLite file, or a PostgreSQL schema dropped after."""
    if request.param == "sqlite":
        yield _sqlite(tmp_path)
        return
    async with pg_schema() as db:
        yield db


@pytest.fixture
async def sqlite_database(tmp_path: Any) -> Database:
    """For tests whose subject does not depend on the backend."""
    return _sqlite(tmp_path)


def settings_for(db: Database, **overrides: Any) -> Settings:
    database = {"url": db.url}
    if db.schema:
        database["schema"] = db.schema
    return load_settings(None, database=database, **overrides)


@contextmanager
def counting(engine: AsyncEngine, event_name: str) -> Iterator[list[int]]:
    """Count an engine's pool events (`connect`, `checkout`) while inside: the count is
    the one item of the list yielded."""
    seen = [0]

    def count(*_: Any) -> None:
        seen[0] += 1

    event.listen(engine.sync_engine, event_name, count)
    try:
        yield seen
    finally:
        event.remove(engine.sync_engine, event_name, count)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    """A running imhub on a loopback port, with an HTTP client bound to it."""

    hub: Hub
    base_url: str
    port: int
    http: httpx.AsyncClient

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    async def post(self, path: str, body: Any, token: str = "", *,
                   operation_id: str | None = None) -> tuple[int, dict[str, Any]]:
        headers = {"token": token}
        if operation_id:
            headers["operationID"] = operation_id
        content = body if isinstance(body, bytes) else None
        r = await self.http.post(path, headers=headers, content=content,
                                 json=None if content is not None else body)
        return r.status_code, r.json()

    async def ok(self, path: str, body: Any, token: str) -> Any:
        """POST and expect errCode 0; returns `data`."""
        status, env = await self.post(path, body, token)
        assert env["errCode"] == 0, (path, status, env)
        assert status == 200
        return env["data"]


async def start_server(settings: Settings) -> tuple[Server, Callable[[], Awaitable[None]]]:
    hub = Hub(settings)
    await hub.start()
    app = create_app(hub, manage_lifecycle=False)
    port = free_port()
    # The gateway's uvicorn options, as `imhub serve` uses them (pings count as activity).
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                            lifespan="off", **uvicorn_options(settings))
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    base = f"http://127.0.0.1:{port}"
    http = httpx.AsyncClient(base_url=base, timeout=30)

    async def stop() -> None:
        await http.aclose()
        server.should_exit = True
        await task
        await hub.close()

    return Server(hub, base, port, http), stop


@pytest.fixture
async def make_server() -> AsyncIterator[Callable[..., Awaitable[Server]]]:
    """Factory: `await make_server(settings)` starts a server, stopped after the test."""
    stops: list[Callable[[], Awaitable[None]]] = []

    async def make(settings: Settings) -> Server:
        srv, stop = await start_server(settings)
        stops.append(stop)
        return srv

    yield make
    for stop in reversed(stops):
        await stop()


@pytest.fixture
async def server(database: Database, make_server: Callable[..., Awaitable[Server]]) -> Server:
    """A server on each database kind."""
    return await make_server(settings_for(database))


@pytest.fixture
async def sqlite_server(sqlite_database: Database,
                        make_server: Callable[..., Awaitable[Server]]) -> Server:
    return await make_server(settings_for(sqlite_database))


@dataclass
class TenantHandle:
    server: Server
    tenant_id: str
    admin: str
    tokens: dict[str, str] = field(default_factory=dict)

    async def users(self, *user_ids: str, platform_id: int = 1) -> list[str]:
        """Register users and log each in on `platform_id`; returns their tokens."""
        await self.server.ok("/user/user_register", {"users": [
            {"userID": u, "nickname": u.title()} for u in user_ids]}, self.admin)
        return [await self.login(u, platform_id) for u in user_ids]

    async def login(self, user_id: str, platform_id: int = 1) -> str:
        data = await self.server.ok("/auth/get_user_token",
                                    {"userID": user_id, "platformID": platform_id}, self.admin)
        self.tokens[user_id] = data["token"]
        return str(data["token"])

    async def befriend(self, a: str, b: str) -> None:
        await self.server.ok("/friend/add_friend", {"fromUserID": a, "toUserID": b},
                             self.admin)
        await self.server.ok("/friend/add_friend_response",
                             {"fromUserID": a, "toUserID": b, "handleResult": 1}, self.admin)


@pytest.fixture
def make_tenant() -> Callable[[Server, str], Awaitable[TenantHandle]]:
    """Factory: a tenant on `server` (its rows go with the test's database)."""

    async def make(srv: Server, name: str = "") -> TenantHandle:
        async with srv.hub.sessions() as s, s.begin():
            t = await create_tenant(s, name or "tenant-" + secrets.token_hex(4))
        return TenantHandle(srv, t.tenant_id, t.admin_token)

    return make


@pytest.fixture
async def tenant(server: Server, make_tenant: Callable[..., Awaitable[TenantHandle]]
                 ) -> TenantHandle:
    return await make_tenant(server)


@pytest.fixture
async def sqlite_tenant(sqlite_server: Server,
                        make_tenant: Callable[..., Awaitable[TenantHandle]]) -> TenantHandle:
    return await make_tenant(sqlite_server)


@pytest.fixture
def anyio_backend() -> Iterator[str]:
    yield "asyncio"
