"""MsgSync and Heartbeat against the real server: gaps pulled, lost pushes found, every
message stored and heard once, in seq order."""

from __future__ import annotations

import json
from typing import Any

from hub.sdk import ConnState, NotificationType, single_conversation_id
from tests.conftest import Server, TenantHandle
from tests.sdk.conftest import ClientFactory, drop_pushes, eventually, text

CONV = single_conversation_id("alice", "bob")


async def send_http(srv: Server, admin: str, frm: str, to: str, i: int | str) -> dict[str, Any]:
    """A message sent by the business backend (admin token), as a peer would."""
    data: dict[str, Any] = await srv.ok("/msg/send_msg", {
        "sendID": frm, "recvID": to, "sessionType": 1, "contentType": 101,
        "content": json.dumps(text(i))}, admin)
    return data


async def test_push_ahead_of_local_max_pulls_the_gap(
        sqlite_tenant: TenantHandle, make_client: ClientFactory) -> None:
    srv, admin = sqlite_tenant.server, sqlite_tenant.admin
    alice_tok, _ = await sqlite_tenant.users("alice", "bob")
    # No heartbeat after the first beat: only the gap logic can fetch what is skipped.
    alice, rec = await make_client(srv, "alice", alice_tok, heartbeat_interval=60)
    await rec.wait_for(lambda: any(p.finished for p in rec.progress))  # the first beat
    beats, pulls = alice.session.heartbeat.beats, alice.session.syncer.pulls

    with drop_pushes(srv, "alice", lambda m: m["seq"] in (3, 4, 5, 7)) as dropped:
        for i in range(1, 9):
            await send_http(srv, admin, "bob", "alice", i)
        await rec.wait_for(lambda: len(rec.messages) >= 8)

    assert {m["seq"] for m in dropped} == {3, 4, 5, 7}
    assert rec.seqs(CONV) == list(range(1, 9))
    assert [m.text for m in rec.messages] == [f"m{i}" for i in range(1, 9)]
    history = await alice.get_history(CONV, 100)
    assert [m.seq for m in history] == list(range(1, 9))
    assert alice.session.heartbeat.beats == beats, "a heartbeat ran; the gap logic is untested"
    assert alice.session.syncer.pulls == pulls + 2  # [3, 5] before 6, [7, 7] before 8


async def test_push_that_never_arrives_is_found_by_the_heartbeat(
        sqlite_tenant: TenantHandle, make_client: ClientFactory) -> None:
    srv, admin = sqlite_tenant.server, sqlite_tenant.admin
    alice_tok, _ = await sqlite_tenant.users("alice", "bob")
    alice, rec = await make_client(srv, "alice", alice_tok, heartbeat_interval=0.2)
    await alice.sync()

    with drop_pushes(srv, "alice", lambda m: m["seq"] == 3) as dropped:
        for i in range(1, 4):
            await send_http(srv, admin, "bob", "alice", i)
        await rec.wait_for(lambda: len(rec.messages) >= 2)
        beats = alice.session.heartbeat.beats
        # Nothing follows seq 3, so no later push can reveal the gap: only a beat can.
        await rec.wait_for(lambda: len(rec.messages) >= 3)

    assert [m["seq"] for m in dropped] == [3]
    assert alice.session.heartbeat.beats > beats
    assert rec.seqs(CONV) == [1, 2, 3]
    assert [m.seq for m in await alice.get_history(CONV)] == [1, 2, 3]


async def test_login_syncs_what_was_sent_while_offline_and_never_repeats_it(
        sqlite_tenant: TenantHandle, make_client: ClientFactory, tmp_path: Any) -> None:
    srv, admin = sqlite_tenant.server, sqlite_tenant.admin
    alice_tok, _ = await sqlite_tenant.users("alice", "bob")
    n = 25
    for i in range(1, n + 1):
        await send_http(srv, admin, "bob", "alice", i)
    data_dir = tmp_path / "alice-store"
    seqs = await srv.ok("/msg/newest_seq", {"userID": "alice"}, admin)
    total = sum(seqs["maxSeqs"].values())  # n, and any notifications alice has

    # Ranges of 4 seqs, 5 to a request: 7 ranges, so the sync takes two pulls.
    alice, rec = await make_client(srv, "alice", alice_tok, data_dir=data_dir,
                                   heartbeat_interval=60, pull_chunk=4)
    await rec.wait_for(lambda: len(rec.messages) >= n)
    assert rec.seqs(CONV) == list(range(1, n + 1))
    await rec.wait_for(lambda: any(p.finished for p in rec.progress))
    first, last = rec.progress[0], rec.progress[-1]
    assert (first.done, first.total, first.finished) == (0, total, False)
    assert len(rec.progress) >= 3, "a multi-pull sync reports each pull"
    assert alice.session.syncer.pulls >= 2
    assert (last.done, last.total, last.finished, last.error) == (total, total, True, None)

    # The store persists: a new session hears only what is new since.
    await alice.logout()
    assert alice.state is ConnState.CLOSED
    await send_http(srv, admin, "bob", "alice", n + 1)
    again, rec2 = await make_client(srv, "alice", alice_tok, data_dir=data_dir,
                                    heartbeat_interval=60)
    await rec2.wait_for(lambda: len(rec2.messages) >= 1)
    await again.sync()
    assert rec2.seqs(CONV) == [n + 1]
    assert len(await again.get_history(CONV, 1000)) == n + 1


async def test_notifications_reach_their_own_listener(
        sqlite_tenant: TenantHandle, make_client: ClientFactory) -> None:
    srv, admin = sqlite_tenant.server, sqlite_tenant.admin
    alice_tok, _ = await sqlite_tenant.users("alice", "bob")
    alice, rec = await make_client(srv, "alice", alice_tok)
    await alice.sync()
    await srv.ok("/friend/add_friend", {"fromUserID": "bob", "toUserID": "alice",
                                        "reqMsg": "hello"}, admin)
    await rec.wait_for(lambda: any(n.content_type == NotificationType.FRIEND_APPLICATION
                                   for n in rec.notifications))
    note = next(n for n in rec.notifications
                if n.content_type == NotificationType.FRIEND_APPLICATION)
    assert note.conversation_id == "n_alice"
    assert note.is_notification
    assert rec.messages == []


async def test_own_messages_from_another_device_are_heard(
        sqlite_tenant: TenantHandle, make_client: ClientFactory) -> None:
    srv = sqlite_tenant.server
    phone_tok, _ = await sqlite_tenant.users("alice", "bob")
    desktop_tok = await sqlite_tenant.login("alice", 3)
    phone, phone_rec = await make_client(srv, "alice", phone_tok, platform_id=1)
    _, desktop_rec = await make_client(srv, "alice", desktop_tok, platform_id=3)
    sent = await phone.send_text("from my phone", recv_id="bob")
    await desktop_rec.wait_for(lambda: len(desktop_rec.messages) >= 1)
    assert desktop_rec.messages[0].client_msg_id == sent.client_msg_id
    assert desktop_rec.messages[0].text == "from my phone"

    async def stored() -> bool:
        return len(await phone.get_history(CONV)) == 1
    await eventually(stored)
    assert phone_rec.messages == []
