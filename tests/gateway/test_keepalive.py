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
# For the test that connections stay up: client and server share the test's event loop,
# so a stall of the loop on a loaded machine delays the client's pings as much as the
# server's sweep; a longer timeout keeps such a stall from passing for silence.
KEEP_IDLE = 1.5


@pytest.fixture
async def make_quick(sqlite_database: Database, make_server: Callable[..., Awaitable[Server]],
                     make_tenant: Callable[..., Awaitable[TenantHandle]]
                     ) -> Callable[[float], Awaitable[TenantHandle]]:
    """Factory: a tenant on a server whose idle timeout is `idle` seconds."""
    async def make(idle: float) -> TenantHandle:
        srv = await make_server(settings_for(sqlite_database,
                                             gateway={"idle_timeout_seconds": idle}))
        return await make_tenant(srv)

    return make


@pytest.fixture
async def quick(make_quick: Callable[[float], Awaitable[TenantHandle]]) -> TenantHandle:
    return await make_quick(IDLE)


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


async def test_pings_and_requests_keep_connections_alive(
        make_quick: Callable[[float], Awaitable[TenantHandle]]) -> None:
    quick = await make_quick(KEEP_IDLE)
    a, b = await quick.users("alice", "bob")
    pinger = await Client.open(quick.server.ws_url, "alice", a, 1,
                               ping_interval=KEEP_IDLE / 6)
    poller = await Client.open(quick.server.ws_url, "bob", b, 1, ping_interval=None)
    try:
        for _ in range(int(2 * KEEP_IDLE / 0.1)):  # two idle timeouts
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
