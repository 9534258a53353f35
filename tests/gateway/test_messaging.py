"""Sending, pushing and syncing over the gateway, with real clients on a real server."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import orjson
import pytest

from tests.conftest import Database, Server, TenantHandle, settings_for
from tests.gateway._client import Client


async def _open(t: TenantHandle, user: str, platform: int) -> Client:
    token = await t.login(user, platform)
    return await Client.open(t.server.ws_url, user, token, platform)


async def test_send_reaches_every_device_but_the_sending_one(tenant: TenantHandle) -> None:
    await tenant.users("alice", "bob")
    a1, a2 = await _open(tenant, "alice", 1), await _open(tenant, "alice", 2)
    b1, b2 = await _open(tenant, "bob", 1), await _open(tenant, "bob", 5)
    try:
        reply = await b1.send_text("alice", "hello", clientMsgID="c-1")
        assert reply["errCode"] == 0, reply
        ack = reply["data"]
        assert ack["seq"] == 1 and ack["clientMsgID"] == "c-1" and ack["serverMsgID"]
        for device in (a1, a2, b2):
            frame = await device.next_push()
            assert frame["reqIdentifier"] == 2001
            (conv, msgs), = frame["data"]["msgs"].items()
            assert conv == "si_alice_bob"
            assert [m["serverMsgID"] for m in msgs] == [ack["serverMsgID"]]
            assert orjson.loads(msgs[0]["content"]) == {"content": "hello"}
            assert msgs[0]["sendID"] == "bob" and msgs[0]["seq"] == 1
        # The sending connection gets its ack only, no push of its own message.
        await asyncio.sleep(0.2)
        assert b1.server_frames.empty()
    finally:
        for c in (a1, a2, b1, b2):
            await c.close()


async def test_concurrent_requests_are_matched_by_msg_incr(sqlite_tenant: TenantHandle) -> None:
    t = sqlite_tenant
    await t.users("alice", "bob")
    a = await _open(t, "alice", 1)
    try:
        sends = [a.send_text("bob", f"m{i}", clientMsgID=f"c{i}") for i in range(10)]
        beats = [a.request(1001, {}) for _ in range(10)]
        replies = await asyncio.gather(*sends, *beats)
        acks = replies[:10]
        assert [r["data"]["clientMsgID"] for r in acks] == [f"c{i}" for i in range(10)]
        assert sorted(r["data"]["seq"] for r in acks) == list(range(1, 11))
        assert all(r["reqIdentifier"] == 1001 and r["errCode"] == 0 for r in replies[10:])
        # Re-sending a clientMsgID answers the first send and stores nothing new.
        again = await a.send_text("bob", "m3", clientMsgID="c3")
        assert again["data"] == acks[3]["data"]
    finally:
        await a.close()


async def test_a_conversation_sent_into_from_several_connections_is_pushed_in_seq_order(
        sqlite_tenant: TenantHandle) -> None:
    # Sends are stored in batches and a batch's pushes are gathered per sending
    # connection (hub/domain/push.py); a device that sends nothing must still see the
    # conversation's messages in seq order, whichever connection each came from.
    t = sqlite_tenant
    await t.users("alice", "bob")
    senders = [await _open(t, "alice", 1), await _open(t, "alice", 2),
               await _open(t, "bob", 1)]
    watcher = await _open(t, "bob", 5)
    try:
        # A first send from each pair side, so that the rest find their checks kept and
        # are queued straight from their frames, several connections to a batch.
        for c in senders:
            assert (await c.send_text("bob" if c.user_id == "alice" else "alice",
                                      "first"))["errCode"] == 0
        replies = await asyncio.gather(*(
            c.send_text("bob" if c.user_id == "alice" else "alice", f"m{i}")
            for i in range(40) for c in senders))
        assert sorted(r["data"]["seq"] for r in replies) == list(range(4, 124))
        pushed = await watcher.pushed_messages(123)
        assert [m["seq"] for m in pushed] == list(range(1, 124))
    finally:
        for c in (*senders, watcher):
            await c.close()


async def test_offline_device_pulls_the_gap_by_seq(tenant: TenantHandle) -> None:
    await tenant.users("alice", "bob")
    a2 = await _open(tenant, "alice", 2)
    b = await _open(tenant, "bob", 1)
    try:
        first = await b.send_text("alice", "while online")
        assert first["errCode"] == 0
        assert (await a2.pushed_messages(1))[0]["seq"] == 1
        await a2.close()
        for i in range(3):
            assert (await b.send_text("alice", f"missed {i}"))["errCode"] == 0
        a2 = await _open(tenant, "alice", 2)
        newest = await a2.request(1001, {})
        top = newest["data"]["maxSeqs"]["si_alice_bob"]
        assert top == 4
        pulled = await a2.request(1002, {"seqRanges": [
            {"conversationID": "si_alice_bob", "begin": 2, "end": top, "num": 100}]})
        assert pulled["errCode"] == 0, pulled
        msgs = pulled["data"]["msgs"]["si_alice_bob"]
        assert [m["seq"] for m in msgs] == [2, 3, 4]
        assert [orjson.loads(m["content"])["content"] for m in msgs] == [
            "missed 0", "missed 1", "missed 2"]
    finally:
        await a2.close()
        await b.close()


async def test_notifications_reach_every_device_of_both_users(tenant: TenantHandle) -> None:
    await tenant.users("alice", "bob")
    devices = [await _open(tenant, "alice", 1), await _open(tenant, "alice", 2),
               await _open(tenant, "bob", 1), await _open(tenant, "bob", 3)]
    try:
        await tenant.server.ok("/friend/add_friend", {"fromUserID": "alice",
                                                     "toUserID": "bob"}, tenant.admin)
        await tenant.server.ok("/friend/add_friend_response", {
            "fromUserID": "alice", "toUserID": "bob", "handleResult": 1}, tenant.admin)
        for device in devices:
            # 1203 application, then 1201 approved and 1204 added.
            msgs = await device.pushed_messages(3)
            assert [m["contentType"] for m in msgs] == [1203, 1201, 1204], msgs
            assert all(m["sessionType"] == 4 for m in msgs)
            assert {m["conversationID"] for m in msgs} == {f"n_{device.user_id}"}
            assert [m["seq"] for m in msgs] == [1, 2, 3]
    finally:
        for c in devices:
            await c.close()


async def test_send_errors_come_back_as_replies(sqlite_tenant: TenantHandle) -> None:
    t = sqlite_tenant
    await t.users("alice", "bob")
    a = await _open(t, "alice", 1)
    try:
        # Another user's sendID: a user token acts as itself only.
        r = await a.request(1003, {"sendID": "bob", "recvID": "alice", "sessionType": 1,
                                   "contentType": 101, "content": '{"content": "x"}'})
        assert r["errCode"] == 1002, r
        # An unknown recipient.
        r = await a.send_text("nobody", "x")
        assert r["errCode"] == 1004, r
        # Another user's sync.
        r = await a.request(1001, {"userID": "bob"})
        assert r["errCode"] == 1002, r
        # The connection goes on.
        assert (await a.send_text("bob", "fine"))["errCode"] == 0
    finally:
        await a.close()


@pytest.fixture
async def slow_sender(sqlite_database: Database, make_server: Callable[..., Awaitable[Server]],
                      make_tenant: Callable[..., Awaitable[TenantHandle]]
                      ) -> AsyncIterator[Callable[[float], Awaitable[Client]]]:
    """Factory: alice's connection to a server where each send to bob takes `seconds`
    in a plugin; closed after the test."""
    clients: list[Client] = []

    async def make(seconds: float) -> Client:
        srv = await make_server(settings_for(sqlite_database, plugins=[{
            "module": "tests.gateway._plugins:SlowSend", "timeout": 5,
            "config": {"seconds": seconds}}]))
        t = await make_tenant(srv)
        await t.users("alice", "bob")
        clients.append(await _open(t, "alice", 1))
        return clients[-1]

    yield make
    for c in clients:
        await c.close()


async def test_a_slow_send_does_not_hold_up_a_heartbeat(
        slow_sender: Callable[[float], Awaitable[Client]]) -> None:
    a = await slow_sender(1.0)
    start = time.monotonic()
    send = asyncio.create_task(a.send_text("bob", "slow"))
    await asyncio.sleep(0.05)
    beat = await a.request(1001, {})
    beat_took = time.monotonic() - start
    assert beat["errCode"] == 0 and beat_took < 0.8, beat_took
    assert not send.done()
    assert (await send)["errCode"] == 0
    assert time.monotonic() - start >= 1.0


async def test_past_32_requests_in_flight_the_server_stops_reading(
        slow_sender: Callable[[float], Awaitable[Client]]) -> None:
    # Each send takes 0.5 s. 40 sends, then a heartbeat: the 33rd send makes the server
    # stop reading this connection until a send finishes, so the heartbeat, queued
    # behind it in the socket, cannot be answered before the first sends are.
    a = await slow_sender(0.5)
    start = time.monotonic()
    sends = [asyncio.create_task(a.send_text("bob", f"m{i}")) for i in range(40)]
    await asyncio.sleep(0)  # the sends' frames go out first
    beat = await a.request(1001, {})
    beat_took = time.monotonic() - start
    assert beat["errCode"] == 0
    assert beat_took >= 0.45, beat_took
    replies = await asyncio.gather(*sends)
    assert [r["errCode"] for r in replies] == [0] * 40
    assert sorted(r["data"]["seq"] for r in replies) == list(range(1, 41))


@pytest.mark.parametrize("ws", ["websockets-sansio", "wsproto", "websockets"])
async def test_every_websocket_implementation_sends_pushes_and_replies(
        ws: str, sqlite_database: Database, make_server: Callable[..., Awaitable[Server]],
        make_tenant: Callable[..., Awaitable[TenantHandle]]) -> None:
    # The sans-I/O protocol has imhub's own read and write paths (hub/gateway/protocol.py);
    # the others go through ASGI. All must carry requests, replies and pushes alike.
    srv = await make_server(settings_for(sqlite_database, gateway={"ws": ws}))
    t = await make_tenant(srv)
    await t.users("alice", "bob")
    a, b = await _open(t, "alice", 1), await _open(t, "bob", 1)
    try:
        replies = await asyncio.gather(*(a.send_text("bob", f"m{i}") for i in range(20)))
        assert sorted(r["data"]["seq"] for r in replies) == list(range(1, 21))
        pushed = await b.pushed_messages(20)
        assert sorted(m["seq"] for m in pushed) == list(range(1, 21))
        await a.send_raw("not json")
        bad = await a.next_unmatched()
        assert bad["errCode"] == 1001
        assert (await a.request(1001, {}))["errCode"] == 0
    finally:
        await a.close()
        await b.close()


@pytest.mark.parametrize("deflate", [False, True])
async def test_frames_of_every_length_reach_the_client_whole(
        deflate: bool, sqlite_database: Database,
        make_server: Callable[..., Awaitable[Server]],
        make_tenant: Callable[..., Awaitable[TenantHandle]]) -> None:
    # Replies and pushes written by the sans-I/O fast path (hub/gateway/protocol.py): a
    # payload under 126 bytes, under 64 KiB and over it each have their own header, and
    # with permessage-deflate on they are compressed.
    srv = await make_server(settings_for(sqlite_database,
                                         gateway={"per_message_deflate": deflate}))
    t = await make_tenant(srv)
    await t.users("alice", "bob")
    a, b = await _open(t, "alice", 1), await _open(t, "bob", 1)
    try:
        texts = ["x", "y" * 40, "z" * 300, "w" * 70_000, "v" * 200_000]
        for i, text in enumerate(texts, 1):
            reply = await a.send_text("bob", text)
            assert reply["errCode"] == 0 and reply["data"]["seq"] == i, reply
        pushed = await b.pushed_messages(len(texts))
        assert [orjson.loads(m["content"])["content"] for m in pushed] == texts
        assert (await b.request(1001, {}))["data"]["maxSeqs"]["si_alice_bob"] == len(texts)
    finally:
        await a.close()
        await b.close()
