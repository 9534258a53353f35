"""A silent connection is closed after gateway.idle_timeout_seconds; pings, pongs and
requests keep one alive."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import pytest

from tests.conftest import Database, Server, TenantHandle, settings_for
from tests.gateway._client import Client

IDLE = 0.5


@pytest.fixture
async def quick(sqlite_database: Database, make_server: Callable[..., Awaitable[Server]],
                make_tenant: Callable[..., Awaitable[TenantHandle]]) -> TenantHandle:
    srv = await make_server(settings_for(sqlite_database,
                                         gateway={"idle_timeout_seconds": IDLE}))
    return await make_tenant(srv)


async def test_silent_connection_is_closed(quick: TenantHandle) -> None:
    tok, = await quick.users("alice")
    c = await Client.open(quick.server.ws_url, "alice", tok, 1, ping_interval=None)
    start = time.monotonic()
    try:
        code, reason = await c.wait_closed(within=5)
        took = time.monotonic() - start
        assert (code, reason) == (1000, "idle timeout")
        assert IDLE <= took < IDLE + 1.0, took
    finally:
        await c.close()


async def test_pings_and_requests_keep_connections_alive(quick: TenantHandle) -> None:
    a, b = await quick.users("alice", "bob")
    pinger = await Client.open(quick.server.ws_url, "alice", a, 1, ping_interval=IDLE / 4)
    poller = await Client.open(quick.server.ws_url, "bob", b, 1, ping_interval=None)
    try:
        for _ in range(int(4 * IDLE / 0.1)):  # four idle timeouts
            await asyncio.sleep(0.1)
            assert (await poller.request(1001, {}))["errCode"] == 0
        assert not pinger.closed.is_set()
        assert not poller.closed.is_set()
        # Silence from now on closes the poller too.
        code, _ = await poller.wait_closed(within=5)
        assert code == 1000
        assert not pinger.closed.is_set()
    finally:
        await pinger.close()
        await poller.close()
