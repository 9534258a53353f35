"""Several nodes (CONTRACT 8): two servers on one PostgreSQL schema and one Redis."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson
import pytest
from redis.asyncio import Redis

from hub.cluster import Cluster
from hub.db.engine import create_engine
from hub.settings import DeliverySettings
from hub.webhooks.delivery import DeliveryEngine, _Lane
from hub.webhooks.endpoints import EndpointInfo
from tests.conftest import (
    REDIS_URL,
    Database,
    Server,
    TenantHandle,
    pg_schema,
    settings_for,
)
from tests.gateway._client import Client
from tests.webhooks.receiver import serve_receiver

TTL = 1.0  # gateway.node_ttl_seconds: a dead node's users go offline within it


@pytest.fixture
async def pg() -> AsyncIterator[Database]:
    async with pg_schema() as db:
        yield db


@pytest.fixture
async def redis() -> AsyncIterator[tuple[Redis, str]]:
    """A Redis client and a prefix of this test's own; its keys are deleted after."""
    prefix = f"imhub-test-{secrets.token_hex(4)}:"
    client = Redis.from_url(REDIS_URL)
    yield client, prefix
    keys = [k async for k in client.scan_iter(match=prefix + "*")]
    if keys:
        await client.delete(*keys)
    await client.aclose()


Nodes = tuple[TenantHandle, TenantHandle]


@pytest.fixture
async def nodes(pg: Database, redis: tuple[Redis, str],
                make_server: Callable[..., Awaitable[Server]],
                make_tenant: Callable[..., Awaitable[TenantHandle]]) -> Nodes:
    """One tenant seen through node A and node B."""
    settings = settings_for(pg, redis_url=REDIS_URL, redis_prefix=redis[1],
                            gateway={"node_ttl_seconds": TTL})
    a = await make_server(settings)
    b = await make_server(settings)
    ta = await make_tenant(a)
    return ta, TenantHandle(b, ta.tenant_id, ta.admin)


async def _status(t: TenantHandle, *users: str) -> dict[str, list[int]]:
    data = await t.server.ok("/user/get_users_online_status", {"userIDs": list(users)},
                             t.admin)
    return {s["userID"]: s["platformIDs"] for s in data}


async def _until(cond: Callable[[], Awaitable[bool]], within: float = 5) -> None:
    """Poll `cond` (an HTTP question, which has no event to wait on) until it holds."""
    async with asyncio.timeout(within):
        while True:
            if await cond():
                return
            await asyncio.sleep(0.02)


async def _status_is(t: TenantHandle, want: dict[str, list[int]]) -> None:
    async def ok() -> bool:
        return await _status(t, *want) == want
    await _until(ok)


async def test_a_message_sent_on_one_node_reaches_the_other(nodes: Nodes) -> None:
    ta, tb = nodes
    await ta.users("alice", "bob")
    bob_a = await Client.open(ta.server.ws_url, "bob", await ta.login("bob", 1), 1)
    alice_b = await Client.open(tb.server.ws_url, "alice", await ta.login("alice", 1), 1)
    bob_b = await Client.open(tb.server.ws_url, "bob", await ta.login("bob", 2), 2)
    try:
        # Presence is cluster-wide: both nodes see both users.
        for t in nodes:
            await _status_is(t, {"alice": [1], "bob": [1, 2]})
        reply = await bob_a.send_text("alice", "across")
        assert reply["errCode"] == 0, reply
        for device in (alice_b, bob_b):  # the recipient, and the sender's other device
            (m,) = await device.pushed_messages(1)
            assert m["serverMsgID"] == reply["data"]["serverMsgID"]
            assert orjson.loads(m["content"]) == {"content": "across"}
        # And back, from B to A; the sending connection gets no push of its own message.
        reply = await alice_b.send_text("bob", "back")
        assert reply["errCode"] == 0
        assert (await bob_a.pushed_messages(1))[0]["seq"] == 2
        assert (await bob_b.pushed_messages(1))[0]["seq"] == 2
        await asyncio.sleep(0.2)
        assert alice_b.server_frames.empty()
        # The node that sent sees the recipient online on the other: no offline push.
        assert ta.server.hub.presence.online_user_ids(ta.tenant_id, ["alice"]) == {"alice"}
    finally:
        for c in (bob_a, alice_b, bob_b):
            await c.close()
    for t in nodes:
        await _status_is(t, {"alice": [], "bob": []})


async def test_relogin_on_one_node_kicks_the_connection_on_the_other(nodes: Nodes) -> None:
    ta, tb = nodes
    old, = await ta.users("alice")
    c = await Client.open(tb.server.ws_url, "alice", old, 1)
    try:
        await _status_is(ta, {"alice": [1]})
        await ta.login("alice", 1)  # through node A
        kick = await c.next_push()
        assert kick["reqIdentifier"] == 2002
        await c.wait_closed()
        status, body = await tb.server.post("/user/get_users_info", {"userIDs": ["alice"]},
                                            old)
        assert (status, body["errCode"]) == (401, 1502)
        for t in nodes:
            await _status_is(t, {"alice": []})
    finally:
        await c.close()


async def test_a_newer_connection_on_one_node_kicks_the_older_on_the_other(
        nodes: Nodes) -> None:
    ta, tb = nodes
    await ta.users("alice")
    tok = await ta.login("alice", 3)
    older = await Client.open(tb.server.ws_url, "alice", tok, 3)
    newer = None
    try:
        await _status_is(ta, {"alice": [3]})
        newer = await Client.open(ta.server.ws_url, "alice", tok, 3)
        assert (await older.next_push())["reqIdentifier"] == 2002
        await older.wait_closed()
        assert (await newer.request(1001, {}))["errCode"] == 0
        # The older connection's end does not take the newer one's entry with it.
        await asyncio.sleep(0.3)
        for t in nodes:
            await _status_is(t, {"alice": [3]})
    finally:
        await older.close()
        if newer is not None:
            await newer.close()


async def test_a_dead_nodes_connections_disappear(nodes: Nodes, redis: tuple[Redis, str]
                                                 ) -> None:
    ta, _ = nodes
    await ta.users("alice")
    client, prefix = redis
    # A node that registered alice on platform 4 and then died: its heartbeat stops.
    dead = "deadbeef"
    await client.zadd(f"{prefix}nodes", {dead: time.time_ns() // 1_000_000})
    await client.hset(f"{prefix}on:{ta.tenant_id}:alice", "4", f"{dead}.1")
    await client.publish(f"{prefix}bus", orjson.dumps({
        "k": "on", "n": dead, "t": ta.tenant_id, "u": "alice", "p": 4, "c": f"{dead}.1"}))
    for t in nodes:
        await _status_is(t, {"alice": [4]})

    # No heartbeat for longer than the node TTL: offline everywhere.
    async def gone() -> bool:
        return all([await _status(t, "alice") == {"alice": []} for t in nodes])
    await _until(gone, within=2 * TTL + 2)


async def test_a_closing_node_takes_its_users_offline_at_once(
        pg: Database, redis: tuple[Redis, str], make_server: Callable[..., Awaitable[Server]],
        make_tenant: Callable[..., Awaitable[TenantHandle]]) -> None:
    from tests.conftest import start_server

    settings = settings_for(pg, redis_url=REDIS_URL, redis_prefix=redis[1],
                            gateway={"node_ttl_seconds": 30})
    a = await make_server(settings)
    b, stop_b = await start_server(settings)
    stopped = False
    try:
        ta = await make_tenant(a)
        tok, = await ta.users("alice")
        c = await Client.open(b.ws_url, "alice", tok, 1)
        await _status_is(ta, {"alice": [1]})
        await stop_b()
        stopped = True
        await _status_is(ta, {"alice": []})  # well within the 30 s node TTL
        await c.close()
    finally:
        if not stopped:
            await stop_b()


async def test_a_lost_subscription_reloads_presence(nodes: Nodes, redis: tuple[Redis, str]
                                                   ) -> None:
    ta, _ = nodes
    await ta.users("alice")
    client, prefix = redis
    cluster = ta.server.hub.cluster
    assert cluster is not None
    # An entry of a live node that node A never heard about (as if announced while A's
    # subscription was down).
    other = "0badcafe"
    await client.zadd(f"{prefix}nodes", {other: time.time_ns() // 1_000_000 + 60_000})
    await client.hset(f"{prefix}on:{ta.tenant_id}:alice", "7", f"{other}.1")
    await asyncio.sleep(0.2)
    assert await _status(ta, "alice") == {"alice": []}
    # Cut node A's subscription; redis-py reconnects by itself, and A reloads presence.
    name = f"{prefix}{cluster.node_id}"
    killed = 0
    for c in await client.client_list():
        if c.get("name") == name and int(c.get("sub", 0)) > 0:
            killed += await client.client_kill_filter(_id=c["id"])
    assert killed == 1
    await _status_is(ta, {"alice": [7]})


async def test_an_endpoints_rate_limit_holds_across_nodes(
        pg: Database, redis: tuple[Redis, str], make_server: Callable[..., Awaitable[Server]],
        make_tenant: Callable[..., Awaitable[TenantHandle]]) -> None:
    # Both nodes deliver (each the events it dispatched); the endpoint's 10/s is for the
    # two together, its schedule kept in Redis.

    settings = settings_for(pg, redis_url=REDIS_URL, redis_prefix=redis[1], webhooks={
        "allowNetworks": ["127.0.0.0/8"],
        "delivery": {"timeout": 2, "pollSeconds": 0.1, "leaseSeconds": 10}})
    a, b = await make_server(settings), await make_server(settings)
    ta = await make_tenant(a)
    tb = TenantHandle(b, ta.tenant_id, ta.admin)
    async with serve_receiver() as receiver:
        await ta.server.ok("/webhook/endpoint/add", {"url": receiver.url, "rateLimit": 10},
                           ta.admin)
        users = [f"u{i}" for i in range(24)]
        await asyncio.gather(*(t.server.ok("/user/user_register", {"users": [
            {"userID": u}]}, t.admin) for t, u in zip((ta, tb) * 12, users, strict=True)))
        await receiver.wait_for(lambda r: len(r.ok()) == 24, what="24 paced deliveries")
        at = sorted(h.at for h in receiver.ok())
        # 24 slots 0.1 s apart span 2.3 s. A node that stalls sends late, never early, so
        # a stall can only bunch arrivals, and shorten the span only by the slots it
        # held at the start; paced by each node alone, two nodes would take ~1.2 s.
        assert at[-1] - at[0] >= 1.6, at
    assert [k async for k in redis[0].scan_iter(match=redis[1] + "pace:*")]


async def test_without_redis_a_node_paces_an_endpoint_alone(sqlite_database: Database) -> None:
    # Redis refuses connections (nothing listens on that port): the lane is paced by
    # this process, at the endpoint's rate, and delivery goes on.
    cluster = Cluster("redis://127.0.0.1:9", prefix="imhub-test-dead:", node_ttl=1.0)
    engine = create_engine(sqlite_database.url)
    delivery = DeliveryEngine(engine, DeliverySettings(), shared=cluster)
    lane = _Lane(EndpointInfo(
        tenant_id="t", endpoint_id="ep", url="http://127.0.0.1:9", events=None,
        ordering="none", rate_limit=20, max_concurrency=0, secret="s", previous_secret="",
        previous_secret_until=0, disabled=False))
    try:
        start = time.monotonic()
        for _ in range(5):
            await delivery._pace(lane)
        assert lane.alone
        assert time.monotonic() - start >= 4 / 20 - 0.01  # five slots, 50 ms apart
    finally:
        await engine.dispose()
        await cluster.close()


async def test_an_endpoints_max_concurrency_holds_across_nodes(
        pg: Database, redis: tuple[Redis, str], make_server: Callable[..., Awaitable[Server]],
        make_tenant: Callable[..., Awaitable[TenantHandle]]) -> None:
    settings = settings_for(pg, redis_url=REDIS_URL, redis_prefix=redis[1], webhooks={
        "allowNetworks": ["127.0.0.0/8"],
        # Two in flight and eight held per node: twelve events keep both nodes busy.
        "delivery": {"timeout": 2, "pollSeconds": 0.1, "leaseSeconds": 10,
                     "maxInFlight": 2}})
    a, b = await make_server(settings), await make_server(settings)
    ta = await make_tenant(a)
    tb = TenantHandle(b, ta.tenant_id, ta.admin)
    active = peak = 0

    async def slow(hit: Any) -> None:
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        await asyncio.sleep(0.2)
        active -= 1

    async with serve_receiver() as receiver:
        receiver.answer = slow
        await ta.server.ok("/webhook/endpoint/add", {"url": receiver.url,
                                                     "maxConcurrency": 2}, ta.admin)
        users = [f"u{i}" for i in range(12)]
        await asyncio.gather(*(t.server.ok("/user/user_register", {"users": [
            {"userID": u}]}, t.admin) for t, u in zip((ta, tb) * 6, users, strict=True)))
        await receiver.wait_for(lambda r: len(r.ok()) == 12, what="12 slow deliveries")
    # Each node alone would allow two at once: four in all.
    assert peak == 2
