"""send_message over one connection: replies matched by msgIncr, retries idempotent."""

from __future__ import annotations

import asyncio
import json
from functools import partial
from pathlib import Path

import pytest

from hub.sdk import IMClient, RequestTimeout, ServerError, single_conversation_id
from hub.sdk.protocol import Frame, ReqIdentifier
from tests.conftest import TenantHandle
from tests.sdk.conftest import ClientFactory, eventually, text


async def test_concurrent_sends_each_get_their_own_reply(
        sqlite_tenant: TenantHandle, make_client: ClientFactory) -> None:
    srv = sqlite_tenant.server
    alice_tok, bob_tok = await sqlite_tenant.users("alice", "bob")
    # No routine heartbeat, so that at the end no request at all should be in flight.
    alice, alice_rec = await make_client(srv, "alice", alice_tok, heartbeat_interval=60)
    bob, bob_rec = await make_client(srv, "bob", bob_tok)
    conv = single_conversation_id("alice", "bob")
    n = 200

    acks = await asyncio.gather(*(
        alice.send_message(recv_id="bob", content=text(i), client_msg_id=f"cid-{i}")
        for i in range(n)))

    assert [a.client_msg_id for a in acks] == [f"cid-{i}" for i in range(n)]
    assert sorted(a.seq for a in acks) == list(range(1, n + 1))
    assert len({a.server_msg_id for a in acks}) == n
    # None swapped: what the server stored at each acknowledged seq is what that call sent.
    pulled = await srv.ok("/msg/pull_msg_by_seq", {"userID": "alice", "seqRanges": [
        {"conversationID": conv, "begin": 1, "end": n, "num": n}]}, sqlite_tenant.admin)
    stored = {m["seq"]: m for m in pulled["msgs"][conv]}
    for i, ack in enumerate(acks):
        assert stored[ack.seq]["clientMsgID"] == f"cid-{i}"
        assert json.loads(stored[ack.seq]["content"]) == text(i)

    # Both stores end with the n messages once each, in seq order; the recipient heard
    # each once, in order; the sender's listener does not hear its own sends again.
    for client in (alice, bob):
        await eventually(partial(_has, client, conv, n))
        history = await client.get_history(conv, 1000)
        assert [m.seq for m in history] == list(range(1, n + 1))
        assert {m.client_msg_id for m in history} == {f"cid-{i}" for i in range(n)}
    await bob_rec.wait_for(lambda: len(bob_rec.messages) >= n)
    assert bob_rec.seqs(conv) == list(range(1, n + 1))
    assert alice_rec.messages == []
    await alice.sync()
    assert len(alice.session.resp) == 0, "a waiter was left behind"


async def _has(client: IMClient, conv: str, n: int) -> bool:
    return len(await client.get_history(conv, n + 1)) >= n


async def test_send_lost_reply_is_retried_after_reconnect_and_stored_once(
        sqlite_tenant: TenantHandle, make_client: ClientFactory) -> None:
    """The server stores the message, its reply is lost with the connection: the SDK
    reconnects, sends the same clientMsgID again and gets the first result."""
    srv = sqlite_tenant.server
    alice_tok, _ = await sqlite_tenant.users("alice", "bob")
    alice, _ = await make_client(srv, "alice", alice_tok, heartbeat_interval=60)
    s = alice.session
    notify = s.resp.notify_resp
    lost: list[Frame] = []

    def lose_first_send_reply(frame: Frame) -> bool:
        if frame.req_identifier == ReqIdentifier.SEND_MSG and not lost:
            lost.append(frame)
            s.conn.abort()  # the connection dies with the reply in it
            return True
        return notify(frame)

    s.resp.notify_resp = lose_first_send_reply  # type: ignore[method-assign]
    msg = await alice.send_message(recv_id="bob", content=text("once"))

    assert len(lost) == 1
    assert s.connects == 2
    first = lost[0].data
    assert (msg.seq, msg.server_msg_id, msg.client_msg_id) == (
        first["seq"], first["serverMsgID"], first["clientMsgID"])
    conv = single_conversation_id("alice", "bob")
    seqs = await srv.ok("/msg/newest_seq", {"userID": "alice"}, sqlite_tenant.admin)
    assert seqs["maxSeqs"][conv] == 1, "the retry stored a second message"


async def test_refused_send_raises_server_error(
        sqlite_tenant: TenantHandle, make_client: ClientFactory) -> None:
    srv = sqlite_tenant.server
    (alice_tok,) = await sqlite_tenant.users("alice")
    alice, _ = await make_client(srv, "alice", alice_tok)
    with pytest.raises(ServerError) as info:
        await alice.send_message(recv_id="nobody", content=text(1))
    assert info.value.err_code == 1004
    assert info.value.err_msg
    assert len(alice.session.conversations.sending) == 0


async def test_send_while_disconnected_gives_up_at_its_timeout(
        sqlite_tenant: TenantHandle, make_client: ClientFactory) -> None:
    srv = sqlite_tenant.server
    alice_tok, _ = await sqlite_tenant.users("alice", "bob")
    # Reconnect attempts far apart, so the connection stays down for the whole send.
    alice, _ = await make_client(srv, "alice", alice_tok, reconnect_min=30,
                                 reconnect_max=30)
    alice.session.conn.abort()
    with pytest.raises(RequestTimeout):
        await alice.send_message(recv_id="bob", content=text(1), timeout=0.5)


async def test_two_devices_sharing_a_data_dir_each_get_every_message(
        sqlite_tenant: TenantHandle, make_client: ClientFactory, tmp_path: Path) -> None:
    """Each platform keeps its own local store: a shared data_dir (the default one, say)
    does not split one user's messages between the devices."""
    srv = sqlite_tenant.server
    alice_tok, bob_tok = await sqlite_tenant.users("alice", "bob")
    phone_tok = await sqlite_tenant.login("bob", platform_id=2)
    shared = tmp_path / "shared"
    _, desk = await make_client(srv, "bob", bob_tok, platform_id=1, data_dir=shared)
    _, phone = await make_client(srv, "bob", phone_tok, platform_id=2, data_dir=shared)
    alice, _ = await make_client(srv, "alice", alice_tok)
    for i in range(3):
        await alice.send_message(recv_id="bob", content=text(i))
    conv = single_conversation_id("alice", "bob")
    for device in (desk, phone):
        await device.wait_for(lambda d=device: d.seqs(conv) == [1, 2, 3])
