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


# --- connections of nodes that died -------------------------------------------------------

async def _rows(t: TenantHandle, model: Any) -> list[Any]:
    async with t.server.hub.sessions() as s:
        return list((await s.execute(select(model))).scalars().all())


async def _dead_node_left(t: TenantHandle, node: str, conn: str, *, beat_ago_ms: int | None,
                          user: str = "alice") -> None:
    """What a node that died leaves: its connection's row, and maybe its last beat."""
    from hub.clock import now_ms
    from hub.db.presence import GatewayNode, OnlineConnection

    async with t.server.hub.sessions() as s, s.begin():
        s.add(OnlineConnection(conn_id=conn, node_id=node, tenant_id=t.tenant_id,
                               user_id=user, platform_id=3, operation_id=f"op-{conn}",
                               create_time=now_ms()))
        if beat_ago_ms is not None:
            s.add(GatewayNode(node_id=node, beat_at=now_ms() - beat_ago_ms))


async def test_connections_of_a_node_that_stopped_beating_end_once(tenant: TenantHandle
                                                                   ) -> None:
    from hub.db.presence import GatewayNode, OnlineConnection

    await tenant.users("alice", "bob")
    ttl_ms = int(tenant.server.hub.settings.gateway.node_ttl_seconds * 1000)
    await _dead_node_left(tenant, "deadbeef", "deadbeef.1", beat_ago_ms=3 * ttl_ms)
    await _dead_node_left(tenant, "deadbeef", "deadbeef.2", beat_ago_ms=None, user="bob")
    await _dead_node_left(tenant, "0dd0beef", "0dd0beef.7", beat_ago_ms=None)  # never beat
    await _dead_node_left(tenant, "1a7ebeef", "1a7ebeef.1", beat_ago_ms=ttl_ms)  # only late
    presence = tenant.server.hub.presence
    assert await presence.end_dead_nodes() == 3
    offline = [e for _, e in await _events(tenant, OFFLINE)]
    assert sorted((e["connID"], e["userID"], e["platformID"], e["operationID"])
                  for e in offline) == [
        ("0dd0beef.7", "alice", 3, "op-0dd0beef.7"), ("deadbeef.1", "alice", 3, "op-deadbeef.1"),
        ("deadbeef.2", "bob", 3, "op-deadbeef.2")]
    # The late node keeps its connection; this node its own beat; nothing ends twice.
    assert [r.conn_id for r in await _rows(tenant, OnlineConnection)] == ["1a7ebeef.1"]
    assert tenant.server.hub.node_id in {r.node_id for r in await _rows(tenant, GatewayNode)}
    assert await presence.end_dead_nodes() == 0
    assert len(await _events(tenant, OFFLINE)) == 3


async def test_a_connection_ends_once_when_two_nodes_race_and_its_own_node_wakes_up(
        tenant: TenantHandle) -> None:
    """Two callers end the same dead node's connections: one event per connection. The
    connection's own node, closing it later, writes no second afterUserOffline."""
    from hub.clock import now_ms
    from hub.db.presence import GatewayNode

    t = tenant
    (tok,) = await t.users("alice")
    c = await Client.open(t.server.ws_url, "alice", tok, 1)
    try:
        async def online() -> bool:
            return len(await _events(t, ONLINE)) == 1
        await _until(online)
        # This node looks dead: its beat is old (it keeps its connection open).
        keeper = t.server.hub.presence._keeper
        assert keeper is not None
        keeper.cancel()
        async with t.server.hub.sessions() as s, s.begin():
            node = await s.get(GatewayNode, t.server.hub.node_id)
            assert node is not None
            node.beat_at = now_ms() - 3_600_000
        presence = t.server.hub.presence
        # As if another node saw it: ending is by connection, whoever deletes first.
        t.server.hub.node_id, me = "0therbee", t.server.hub.node_id
        try:
            ended = await asyncio.gather(presence.end_dead_nodes(), presence.end_dead_nodes())
        finally:
            t.server.hub.node_id = me
        assert sorted(ended) == [0, 1]
    finally:
        await c.close()

    async def closed() -> bool:
        return not t.server.hub.presence.local.of_user(t.tenant_id, "alice")
    await _until(closed)
    await asyncio.sleep(0.2)
    assert [cmd for cmd, _ in await _events(t, ONLINE, OFFLINE)] == [ONLINE, OFFLINE]


async def test_a_killed_node_ends_its_connections_when_it_starts_again(tmp_path: Any) -> None:
    """`imhub serve` killed with SIGKILL while a client is connected; started again, it
    writes that connection's afterUserOffline (once its old beat is two TTLs old)."""
    import sqlite3

    import yaml

    from tests.conftest import free_port
    from tests.processes import Serve, run_cli

    db, port, config = tmp_path / "imhub.db", free_port(), tmp_path / "hub.yml"
    config.write_text(yaml.safe_dump({
        "database": {"url": f"sqlite+aiosqlite:///{db}"},
        "server": {"host": "127.0.0.1", "port": port},
        "gateway": {"node_ttl_seconds": 1}}))
    tenant = orjson.loads(run_cli("tenant", "create", "kill", "--json", config=config).stdout)

    def events(command: str) -> list[dict[str, Any]]:
        with sqlite3.connect(db) as conn:
            return [orjson.loads(r[0]) for r in conn.execute(
                "SELECT payload FROM events WHERE callback_command = ? ORDER BY pos",
                (command,))]

    server = Serve(config, port, tmp_path / "serve.log")
    await server.start()
    try:
        import httpx

        async with httpx.AsyncClient(base_url=server.base,
                                     headers={"token": tenant["adminToken"]}) as http:
            r = await http.post("/user/user_register", json={"users": [{"userID": "alice"}]})
            assert r.json()["errCode"] == 0
            r = await http.post("/auth/get_user_token",
                                json={"userID": "alice", "platformID": 2})
            token = r.json()["data"]["token"]
        c = await Client.open(f"ws://127.0.0.1:{port}/ws", "alice", token, 2)
        async def came(command: str) -> bool:
            return bool(events(command))

        await _until(lambda: came(ONLINE))
        server.kill()
        await c.wait_closed()
        await c.close()
        (online,) = events(ONLINE)
        assert events(OFFLINE) == []
        await server.start()
        await _until(lambda: came(OFFLINE), within=10)
        (offline,) = events(OFFLINE)
        assert (offline["connID"], offline["userID"], offline["platformID"]) == (
            online["connID"], "alice", 2)
        assert offline["tenantID"] == tenant["tenantID"]
    finally:
        server.stop()
