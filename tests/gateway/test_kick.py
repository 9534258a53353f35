"""One connection per user and platform: re-login, a newer connection, force logout, logout."""

from __future__ import annotations

import asyncio

from tests.conftest import TenantHandle
from tests.gateway._client import Client


async def _status(t: TenantHandle, *users: str) -> dict[str, list[int]]:
    data = await t.server.ok("/user/get_users_online_status", {"userIDs": list(users)},
                             t.admin)
    return {s["userID"]: s["platformIDs"] for s in data}


async def test_relogin_kicks_the_old_connection_only(tenant: TenantHandle) -> None:
    old1, = await tenant.users("alice")
    tok2 = await tenant.login("alice", 2)
    c1 = await Client.open(tenant.server.ws_url, "alice", old1, 1)
    c2 = await Client.open(tenant.server.ws_url, "alice", tok2, 2)
    try:
        assert (await _status(tenant, "alice")) == {"alice": [1, 2]}
        new1 = await tenant.login("alice", 1)  # get_user_token again on platform 1
        kick = await c1.next_push()
        assert kick["reqIdentifier"] == 2002, kick
        code, _ = await c1.wait_closed()
        assert code == 1000
        # The old token is kicked on HTTP too; the other platform stays online and works.
        status, body = await tenant.server.post("/user/get_users_info",
                                                {"userIDs": ["alice"]}, old1)
        assert (status, body["errCode"]) == (401, 1502)
        assert (await c2.request(1001, {}))["errCode"] == 0
        assert (await _status(tenant, "alice")) == {"alice": [2]}
        c1 = await Client.open(tenant.server.ws_url, "alice", new1, 1)
        assert (await _status(tenant, "alice")) == {"alice": [1, 2]}
    finally:
        await c1.close()
        await c2.close()


async def test_a_newer_connection_kicks_the_older(sqlite_tenant: TenantHandle) -> None:
    t = sqlite_tenant
    tok, = await t.users("alice")
    older = await Client.open(t.server.ws_url, "alice", tok, 1)
    newer = await Client.open(t.server.ws_url, "alice", tok, 1)
    try:
        kick = await older.next_push()
        assert kick["reqIdentifier"] == 2002
        await older.wait_closed()
        assert (await newer.request(1001, {}))["errCode"] == 0
        assert (await _status(t, "alice")) == {"alice": [1]}
    finally:
        await older.close()
        await newer.close()


async def test_force_logout_kicks(sqlite_tenant: TenantHandle) -> None:
    t = sqlite_tenant
    tok, = await t.users("alice")
    c = await Client.open(t.server.ws_url, "alice", tok, 1)
    try:
        await t.server.ok("/auth/force_logout", {"userID": "alice", "platformID": 1}, t.admin)
        assert (await c.next_push())["reqIdentifier"] == 2002
        await c.wait_closed()
        assert (await _status(t, "alice")) == {"alice": []}
    finally:
        await c.close()


async def test_logout_closes_this_connection_and_keeps_the_token(
        sqlite_tenant: TenantHandle) -> None:
    t = sqlite_tenant
    tok, = await t.users("alice")
    c = await Client.open(t.server.ws_url, "alice", tok, 1)
    try:
        reply = await c.request(2003, {})
        assert (reply["reqIdentifier"], reply["errCode"]) == (2003, 0)
        code, reason = await c.wait_closed()
        assert (code, reason) == (1000, "logged out")
        await asyncio.sleep(0.05)
        assert (await _status(t, "alice")) == {"alice": []}
        # The token is still good: over HTTP, and for a new connection.
        await t.server.ok("/user/get_users_info", {"userIDs": ["alice"]}, tok)
        c = await Client.open(t.server.ws_url, "alice", tok, 1)
        assert (await c.request(1001, {}))["errCode"] == 0
    finally:
        await c.close()
