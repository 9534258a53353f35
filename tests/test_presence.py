"""Presence: online status per user and platform, and the online-status after-events."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from sqlalchemy import select

from hub.db.models import Event
from tests.conftest import TenantHandle
from tests.gateway._client import Client


async def _status(t: TenantHandle, token: str, *users: str) -> list[dict[str, Any]]:
    return await t.server.ok("/user/get_users_online_status",  # type: ignore[no-any-return]
                             {"userIDs": list(users)}, token)


async def _events(t: TenantHandle, *commands: str) -> list[tuple[str, dict[str, Any]]]:
    async with t.server.hub.sessions() as s:
        rows = (await s.execute(select(Event).where(
            Event.tenant_id == t.tenant_id, Event.callback_command.in_(commands)
        ).order_by(Event.pos))).scalars().all()
    return [(r.callback_command, orjson.loads(r.payload)) for r in rows]


async def _until(cond: Any, within: float = 5) -> None:
    """Poll `cond` (an HTTP question, which has no event to wait on) until it holds."""
    async with asyncio.timeout(within):
        while True:
            if await cond():
                return
            await asyncio.sleep(0.02)


ONLINE = "callbackAfterUserOnlineCommand"
OFFLINE = "callbackAfterUserOfflineCommand"
KICK_OFF = "callbackAfterUserKickOffCommand"


async def test_status_per_platform(tenant: TenantHandle) -> None:
    a1, bob = await tenant.users("alice", "bob")
    a2 = await tenant.login("alice", 2)
    presence = tenant.server.hub.presence
    assert await _status(tenant, bob, "alice", "bob") == [
        {"userID": "alice", "status": 0, "platformIDs": []},
        {"userID": "bob", "status": 0, "platformIDs": []}]
    c1 = await Client.open(tenant.server.ws_url, "alice", a1, 1)
    c2 = await Client.open(tenant.server.ws_url, "alice", a2, 2)
    try:
        # Any token may ask; unknown (or another tenant's) users are left out.
        got = await _status(tenant, bob, "alice", "ghost", "bob")
        assert got == [{"userID": "alice", "status": 1, "platformIDs": [1, 2]},
                       {"userID": "bob", "status": 0, "platformIDs": []}]
        assert presence.online_user_ids(tenant.tenant_id, ["alice", "bob", "ghost"]) == {
            "alice"}
        assert presence.online_user_ids("t-other", ["alice"]) == set()
        await c1.close()

        async def one_left() -> bool:
            return (await _status(tenant, tenant.admin, "alice"))[0]["platformIDs"] == [2]
        await _until(one_left)
        await c2.close()
        await _until(lambda: _no_one(tenant))
        assert presence.online_user_ids(tenant.tenant_id, ["alice"]) == set()
    finally:
        await c1.close()
        await c2.close()


async def _no_one(t: TenantHandle) -> bool:
    return (await _status(t, t.admin, "alice"))[0]["status"] == 0


async def test_status_request_is_validated(tenant: TenantHandle) -> None:
    (tok,) = await tenant.users("alice")
    for body in ({}, {"userIDs": []}, {"userIDs": "alice"}, {"userIDs": [1]}):
        status, env = await tenant.server.post("/user/get_users_online_status", body, tok)
        assert (status, env["errCode"]) == (400, 1001), (body, env)
    status, env = await tenant.server.post("/user/get_users_online_status",
                                           {"userIDs": ["alice"]}, "u.bad.token")
    assert (status, env["errCode"]) == (401, 1501)


async def test_online_offline_and_kick_off_events(tenant: TenantHandle) -> None:
    (tok,) = await tenant.users("alice")
    c = await Client.open(tenant.server.ws_url, "alice", tok, 1, operation_id="op-ws-1")
    try:
        async def online() -> bool:
            return len(await _events(tenant, ONLINE)) == 1
        await _until(online)
        (_, first), = await _events(tenant, ONLINE)
        assert first["userID"] == "alice" and first["platformID"] == 1
        assert first["operationID"] == "op-ws-1"
        conn_id = first["connID"]
        # A re-login kicks: afterUserKickOff, then afterUserOffline of the same connection.
        await tenant.login("alice", 1)
        await c.wait_closed()

        async def offline() -> bool:
            return len(await _events(tenant, OFFLINE)) == 1
        await _until(offline)
        events = await _events(tenant, ONLINE, OFFLINE, KICK_OFF)
        assert [cmd for cmd, _ in events] == [ONLINE, KICK_OFF, OFFLINE]
        kick, off = events[1][1], events[2][1]
        assert kick["userID"] == "alice" and kick["platformID"] == 1 and kick["reason"]
        assert off["connID"] == conn_id
    finally:
        await c.close()
