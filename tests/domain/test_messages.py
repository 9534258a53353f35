"""Messages over a real server: sending and its rules and hooks, sync, revoke, read
receipts and pushes (through `Signals.messages_stored`; WebSocket frames are the
gateway's tests)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import orjson
import pytest
import websockets
from sqlalchemy import select

from hub.bus import BeforeCall, Verdict
from hub.db.models import Event, Message
from hub.plugin import Plugin, PluginConfig
from tests.conftest import Database, Server, TenantHandle, settings_for


def text(s: str) -> str:
    return orjson.dumps({"content": s}).decode()


def single(sender: str, to: str, body: str = "hi", **extra: Any) -> dict[str, Any]:
    return {"sendID": sender, "recvID": to, "sessionType": 1, "contentType": 101,
            "content": text(body), **extra}


def group(sender: str, group_id: str, body: str = "hi", **extra: Any) -> dict[str, Any]:
    return {"sendID": sender, "groupID": group_id, "sessionType": 3, "contentType": 101,
            "content": text(body), **extra}


async def code(srv: Server, path: str, body: dict[str, Any], token: str) -> int:
    status, env = await srv.post(path, body, token)
    assert (status == 200) == (env["errCode"] == 0), (path, status, env)
    assert status < 500, env
    return int(env["errCode"])


async def stored(tenant: TenantHandle, conversation_id: str) -> list[Message]:
    async with tenant.server.hub.sessions() as s:
        return list((await s.execute(select(Message).where(
            Message.tenant_id == tenant.tenant_id,
            Message.conversation_id == conversation_id).order_by(Message.seq))).scalars())


async def events(tenant: TenantHandle, name: str) -> list[dict[str, Any]]:
    command = f"callback{name[0].upper()}{name[1:]}Command"
    async with tenant.server.hub.sessions() as s:
        rows = (await s.execute(select(Event.payload).where(
            Event.tenant_id == tenant.tenant_id, Event.callback_command == command
        ).order_by(Event.pos))).scalars()
        return [orjson.loads(p) for p in rows]


async def make_group(tenant: TenantHandle, owner: str, members: list[str], *,
                     admins: tuple[str, ...] = (), group_id: str = "g1") -> None:
    await tenant.server.ok("/group/create_group", {
        "ownerUserID": owner, "memberUserIDs": members, "adminUserIDs": list(admins),
        "groupInfo": {"groupID": group_id, "groupName": group_id}}, tenant.admin)


class Script(Plugin):
    """A before handler whose verdict a test writes as a function of the call."""

    def __init__(self, names: set[str], verdict: Callable[[BeforeCall], Verdict]) -> None:
        super().__init__(PluginConfig())
        self.names = names
        self.verdict = verdict
        self.calls: list[BeforeCall] = []

    def wants(self, hook: Any, tenant_id: str) -> bool:
        return hook.name in self.names

    async def before(self, call: BeforeCall) -> Verdict:
        self.calls.append(call)
        return self.verdict(call)


@contextmanager
def pushes(srv: Server) -> Iterator[list[tuple[dict[str, list[dict[str, Any]]], Any]]]:
    """Every `messages_stored` signal fired while inside: (by_user, origin)."""
    seen: list[tuple[dict[str, list[dict[str, Any]]], Any]] = []

    def listen(_t: str, by_user: dict[str, list[dict[str, Any]]], origin: Any) -> None:
        seen.append((by_user, origin))

    srv.hub.signals.on_messages_stored.append(listen)
    try:
        yield seen
    finally:
        srv.hub.signals.on_messages_stored.remove(listen)


# --- sending ---------------------------------------------------------------------------

async def test_single_chat_send_sync_and_push(tenant: TenantHandle) -> None:
    srv = tenant.server
    alice, bob = await tenant.users("alice", "bob")
    with pushes(srv) as seen:
        ack = await srv.ok("/msg/send_msg", single("alice", "bob", "hello",
                                                   offlinePushInfo={"title": "t"}), alice)
    assert ack["seq"] == 1 and ack["serverMsgID"] and ack["clientMsgID"] and ack["sendTime"]
    chat = [by_user for by_user, _ in seen if any(
        m["contentType"] == 101 for ms in by_user.values() for m in ms)]
    assert len(chat) == 1 and set(chat[0]) == {"alice", "bob"}
    pushed = chat[0]["bob"][0]
    assert pushed["seq"] == 1 and pushed["conversationID"] == "si_alice_bob"
    ack2 = await srv.ok("/msg/send_msg", single("bob", "alice", "back"), bob)
    assert ack2["seq"] == 2

    newest = await srv.ok("/msg/newest_seq", {"userID": "bob"}, bob)
    assert newest["maxSeqs"]["si_alice_bob"] == 2
    assert "n_bob" in newest["maxSeqs"] and "si_alice_bob" in newest["minSeqs"]
    pulled = await srv.ok("/msg/pull_msg_by_seq", {"userID": "bob", "seqRanges": [
        {"conversationID": "si_alice_bob", "begin": 1, "end": 2, "num": 10}]}, bob)
    msgs = pulled["msgs"]["si_alice_bob"]
    assert [m["seq"] for m in msgs] == [1, 2]
    first = msgs[0]
    assert (first["sendID"], first["recvID"], first["sessionType"]) == ("alice", "bob", 1)
    assert orjson.loads(first["content"]) == {"content": "hello"}
    assert first["serverMsgID"] == ack["serverMsgID"]
    assert first["senderNickname"] == "Alice" and first["senderPlatformID"] == 1
    assert first["offlinePushInfo"] == {"title": "t", "desc": "", "ex": ""}
    # num caps the range from its newest end.
    pulled = await srv.ok("/msg/pull_msg_by_seq", {"userID": "bob", "seqRanges": [
        {"conversationID": "si_alice_bob", "begin": 1, "end": 2, "num": 1}]}, bob)
    assert [m["seq"] for m in pulled["msgs"]["si_alice_bob"]] == [2]

    after = await events(tenant, "afterSendSingleMsg")
    assert [e["seq"] for e in after] == [1, 2]
    assert after[0]["content"] == text("hello") and after[0]["clientMsgID"] == ack["clientMsgID"]
    for key in ("sendID", "recvID", "groupID", "serverMsgID", "sessionType", "contentType",
                "sendTime", "senderPlatformID", "senderNickname", "atUserIDList", "ex"):
        assert key in after[0], key


async def test_fifty_concurrent_senders_into_one_group_get_seqs_without_gaps(
        tenant: TenantHandle) -> None:
    srv = tenant.server
    users = [f"u{i:02d}" for i in range(50)]
    tokens = await tenant.users(*users)
    await make_group(tenant, users[0], users[1:])
    acks = await asyncio.gather(*(
        srv.ok("/msg/send_msg", group(u, "g1", f"m{u}"), tok) for u, tok in zip(users, tokens,
                                                                              strict=True)))
    assert sorted(a["seq"] for a in acks) == list(range(1, 51))
    rows = await stored(tenant, "sg_g1")
    assert [r.seq for r in rows] == list(range(1, 51))
    assert {r.server_msg_id for r in rows} == {a["serverMsgID"] for a in acks}
    after = await events(tenant, "afterSendGroupMsg")
    assert sorted(e["seq"] for e in after) == list(range(1, 51))


async def test_a_batch_of_group_messages_is_pushed_as_one_list_for_every_member(
        sqlite_tenant: TenantHandle) -> None:
    # One sender's sends stored together are pushed together; every member gets the same
    # messages, so one list (which the gateway encodes once) serves them all.
    t, srv = sqlite_tenant, sqlite_tenant.server
    users = ["owner", "m1", "m2", "m3"]
    tokens = await t.users(*users)
    await make_group(t, "owner", users[1:])
    await srv.ok("/msg/send_msg", group("owner", "g1", "first"), tokens[0])
    with pushes(srv) as seen:
        await asyncio.gather(*(srv.ok("/msg/send_msg", group("m1", "g1", f"m{i}"), tokens[1])
                               for i in range(10)))
    assert sum(len(next(iter(by_user.values()))) for by_user, _ in seen) == 10
    assert any(len(next(iter(by_user.values()))) > 1 for by_user, _ in seen)
    for by_user, _ in seen:
        assert set(by_user) == set(users)
        assert len({id(msgs) for msgs in by_user.values()}) == 1
    # Several senders at once: never two senders' messages in one push.
    with pushes(srv) as seen:
        await asyncio.gather(*(srv.ok("/msg/send_msg", group(u, "g1", f"n{i}"), tok)
                               for i in range(5) for u, tok in zip(users, tokens, strict=True)))
    assert sum(len(next(iter(by_user.values()))) for by_user, _ in seen) == 20
    for by_user, _ in seen:
        assert len({m["sendID"] for msgs in by_user.values() for m in msgs}) == 1


async def test_a_resent_client_msg_id_returns_the_first_result(tenant: TenantHandle) -> None:
    srv = tenant.server
    alice, _ = await tenant.users("alice", "bob")
    body = single("alice", "bob", "once", clientMsgID="c-1")
    first = await srv.ok("/msg/send_msg", body, alice)
    again = await srv.ok("/msg/send_msg", {**body, "content": text("changed")}, alice)
    assert again == first
    # Racing resends: the unique index decides, every one answers the same.
    body = single("alice", "bob", "race", clientMsgID="c-2")
    acks = await asyncio.gather(*(srv.ok("/msg/send_msg", body, alice) for _ in range(8)))
    assert all(a == acks[0] for a in acks)
    rows = await stored(tenant, "si_alice_bob")
    assert [(r.seq, r.client_msg_id) for r in rows] == [(1, "c-1"), (2, "c-2")]
    assert len(await events(tenant, "afterSendSingleMsg")) == 2


async def test_a_resend_does_not_ask_the_before_hook_again(tenant: TenantHandle) -> None:
    srv = tenant.server
    alice, _ = await tenant.users("alice", "bob")
    spy = Script({"beforeSendSingleMsg"}, lambda c: Verdict.allow())
    srv.hub.bus.add(spy)
    body = single("alice", "bob", "once", clientMsgID="c-1")
    first = await srv.ok("/msg/send_msg", body, alice)
    assert await srv.ok("/msg/send_msg", body, alice) == first
    assert len(spy.calls) == 1


async def test_a_resend_in_a_batch_of_new_sends_changes_none_of_them(
        tenant: TenantHandle) -> None:
    # Without a before hook the resend is found at the insert: its batch runs again
    # write by write, and only the resend is answered from the first send.
    srv = tenant.server
    alice, _ = await tenant.users("alice", "bob")
    first = await srv.ok("/msg/send_msg", single("alice", "bob", clientMsgID="c-1"), alice)
    acks = await asyncio.gather(
        srv.ok("/msg/send_msg", single("alice", "bob", clientMsgID="c-1"), alice),
        *(srv.ok("/msg/send_msg", single("alice", "bob", clientMsgID=f"n-{i}"), alice)
          for i in range(6)))
    assert acks[0] == first
    assert sorted(a["seq"] for a in acks[1:]) == [2, 3, 4, 5, 6, 7]
    rows = await stored(tenant, "si_alice_bob")
    assert [r.seq for r in rows] == [1, 2, 3, 4, 5, 6, 7]
    assert [r.client_msg_id for r in rows].count("c-1") == 1
    assert len(await events(tenant, "afterSendSingleMsg")) == 7


async def test_what_a_send_checked_is_read_again_after_a_change(tenant: TenantHandle) -> None:
    # Sends keep their checks in memory (hub/checks.py) until a write could change them.
    srv = tenant.server
    alice, bob = await tenant.users("alice", "bob")
    await srv.ok("/msg/send_msg", single("alice", "bob"), alice)
    await srv.ok("/user/update_user_info", {"userInfo": {"userID": "alice",
                                                          "nickname": "Ally"}}, alice)
    await srv.ok("/msg/send_msg", single("alice", "bob"), alice)
    assert [r.sender_nickname for r in await stored(tenant, "si_alice_bob")] == [
        "Alice", "Ally"]
    await srv.ok("/friend/add_black", {"ownerUserID": "bob", "blackUserID": "alice"}, bob)
    assert await code(srv, "/msg/send_msg", single("alice", "bob"), alice) == 1301
    await srv.ok("/friend/remove_black", {"ownerUserID": "bob", "blackUserID": "alice"}, bob)
    assert (await srv.ok("/msg/send_msg", single("alice", "bob"), alice))["seq"] == 3

    carol, dave = await tenant.users("carol", "dave")
    await make_group(tenant, "alice", ["carol"])
    assert (await srv.ok("/msg/send_msg", group("carol", "g1"), carol))["seq"] == 1
    assert await code(srv, "/msg/send_msg", group("dave", "g1"), dave) == 1201
    await srv.ok("/group/invite_user_to_group", {"groupID": "g1", "invitedUserIDs": ["dave"],
                                                 "reason": ""}, alice)
    with pushes(srv) as seen:
        assert (await srv.ok("/msg/send_msg", group("dave", "g1"), dave))["seq"] == 2
    assert {"alice", "carol", "dave"} <= {u for by_user, _ in seen for u in by_user}
    await srv.ok("/group/kick_group", {"groupID": "g1", "kickedUserIDs": ["carol"],
                                       "reason": ""}, alice)
    assert await code(srv, "/msg/send_msg", group("carol", "g1"), carol) == 1201


async def test_typing_is_relayed_with_seq_0_and_never_stored_or_hooked(
        tenant: TenantHandle) -> None:
    srv = tenant.server
    alice, _ = await tenant.users("alice", "bob")
    spy = Script({"beforeSendSingleMsg"}, lambda c: Verdict.deny(7000, "no"))
    srv.hub.bus.add(spy)
    with pushes(srv) as seen:
        ack = await srv.ok("/msg/send_msg", {**single("alice", "bob"), "contentType": 113,
                                             "content": '{"msgTips": "typing"}'}, alice)
    assert ack["seq"] == 0 and ack["serverMsgID"]
    assert len(seen) == 1 and seen[0][0]["bob"][0]["contentType"] == 113
    assert seen[0][0]["bob"][0]["seq"] == 0
    assert spy.calls == []
    assert await stored(tenant, "si_alice_bob") == []
    assert await events(tenant, "afterSendSingleMsg") == []


async def test_bad_messages_are_refused_and_store_nothing(sqlite_tenant: TenantHandle) -> None:
    t = sqlite_tenant
    srv = t.server
    alice, _ = await t.users("alice", "bob")
    ok = single("alice", "bob")
    for bad, expected in [
        ({"content": "not json"}, 1001),
        ({"content": '{"text": "no content key"}'}, 1001),
        ({"content": ""}, 1001),
        ({"content": 5}, 1001),
        ({"contentType": 999}, 1001),
        ({"contentType": 1201}, 1001),
        ({"sessionType": 2}, 1001),
        ({"recvID": ""}, 1001),
        ({"recvID": "nobody"}, 1004),
        ({"sendID": "bob"}, 1002),
    ]:
        assert await code(srv, "/msg/send_msg", {**ok, **bad}, alice) == expected, bad
    assert await code(srv, "/msg/send_msg", group("alice", ""), alice) == 1001
    assert await code(srv, "/msg/send_msg", group("alice", "nogroup"), alice) == 1004
    assert await stored(t, "si_alice_bob") == []
    # The admin token sends as anyone, under that user's rules.
    assert (await srv.ok("/msg/send_msg", ok, t.admin))["seq"] == 1


# --- rules -----------------------------------------------------------------------------

async def test_blacklist_and_friendship_rules(database: Database, make_server: Any,
                                              make_tenant: Any) -> None:
    srv = await make_server(settings_for(database, friend_required_for_chat=True))
    t = await make_tenant(srv)
    alice, bob, carol = await t.users("alice", "bob", "carol")
    assert await code(srv, "/msg/send_msg", single("alice", "bob"), alice) == 1302
    await t.befriend("alice", "bob")
    assert (await srv.ok("/msg/send_msg", single("alice", "bob"), alice))["seq"] == 1
    await srv.ok("/friend/add_black", {"ownerUserID": "bob", "blackUserID": "alice"}, bob)
    assert await code(srv, "/msg/send_msg", single("alice", "bob"), alice) == 1301
    # Blocking is one-way: bob still writes to alice.
    assert (await srv.ok("/msg/send_msg", single("bob", "alice"), bob))["seq"] == 2
    # Writing to oneself needs no friendship.
    assert (await srv.ok("/msg/send_msg", single("carol", "carol"), carol))["seq"] == 1
    assert [r.send_id for r in await stored(t, "si_alice_bob")] == ["alice", "bob"]


async def test_group_rules(sqlite_tenant: TenantHandle) -> None:
    t = sqlite_tenant
    srv = t.server
    owner, admin, member, outsider = await t.users("owner", "admin", "member", "outsider")
    await make_group(t, "owner", ["member"], admins=("admin",))
    assert await code(srv, "/msg/send_msg", group("outsider", "g1"), outsider) == 1201
    await srv.ok("/group/mute_group_member", {"groupID": "g1", "userID": "member",
                                              "mutedSeconds": 3600}, owner)
    assert await code(srv, "/msg/send_msg", group("member", "g1"), member) == 1202
    await srv.ok("/group/cancel_mute_group_member", {"groupID": "g1", "userID": "member"},
                 owner)
    assert (await srv.ok("/msg/send_msg", group("member", "g1"), member))["seq"] == 1
    await srv.ok("/group/mute_group", {"groupID": "g1"}, owner)
    assert await code(srv, "/msg/send_msg", group("member", "g1"), member) == 1202
    # The owner and admins speak in a muted group.
    assert (await srv.ok("/msg/send_msg", group("admin", "g1"), admin))["seq"] == 2
    assert (await srv.ok("/msg/send_msg", group("owner", "g1"), owner))["seq"] == 3
    await srv.ok("/group/dismiss_group", {"groupID": "g1"}, owner)
    assert await code(srv, "/msg/send_msg", group("owner", "g1"), owner) == 1203
    assert [r.send_id for r in await stored(t, "sg_g1")] == ["member", "admin", "owner"]


# --- before hooks ----------------------------------------------------------------------

async def test_a_denying_plugin_stores_nothing(tenant: TenantHandle) -> None:
    srv = tenant.server
    alice, _ = await tenant.users("alice", "bob")

    def no_spam(call: BeforeCall) -> Verdict:
        body = orjson.loads(call.payload["content"])
        return Verdict.deny(7001, "no spam") if "spam" in body["content"] else Verdict.allow()

    srv.hub.bus.add(Script({"beforeSendSingleMsg"}, no_spam))
    status, env = await srv.post("/msg/send_msg", single("alice", "bob", "buy spam"), alice)
    assert (env["errCode"], env["errMsg"]) == (7001, "no spam") and status == 403
    assert await stored(tenant, "si_alice_bob") == []
    assert await events(tenant, "afterSendSingleMsg") == []
    assert (await srv.ok("/msg/send_msg", single("alice", "bob", "fine"), alice))["seq"] == 1


async def test_a_modifying_plugin_changes_what_is_stored(tenant: TenantHandle) -> None:
    srv = tenant.server
    alice, _ = await tenant.users("alice", "bob")
    await make_group(tenant, "alice", ["bob"])
    srv.hub.bus.add(Script({"beforeSendSingleMsg", "beforeSendGroupMsg"}, lambda c: Verdict.allow({
        "content": text("[changed]"), "ex": "hooked", "atUserIDList": ["bob"],
        "offlinePushInfo": {"title": "T", "desc": "D", "ex": ""},
        "sendID": "mallory"})))  # not a field a hook may change: ignored
    ack = await srv.ok("/msg/send_msg", single("alice", "bob", "original"), alice)
    [row] = await stored(tenant, "si_alice_bob")
    assert (row.content, row.ex, row.send_id) == (text("[changed]"), "hooked", "alice")
    assert orjson.loads(row.at_user_ids) == ["bob"]
    assert orjson.loads(row.offline_push_info)["title"] == "T"
    [event] = await events(tenant, "afterSendSingleMsg")
    assert event["content"] == text("[changed]") and event["seq"] == ack["seq"] == 1
    await srv.ok("/msg/send_msg", group("alice", "g1", "original"), alice)
    [event] = await events(tenant, "afterSendGroupMsg")
    assert event["content"] == text("[changed]") and event["groupID"] == "g1"


@pytest.mark.parametrize("change", [{"contentType": 113}, {"contentType": 1501},
                                    {"content": "not json"}, {"content": 7}])
async def test_a_change_that_breaks_the_message_is_1001(sqlite_tenant: TenantHandle,
                                                        change: dict[str, Any]) -> None:
    t = sqlite_tenant
    alice, _ = await t.users("alice", "bob")
    t.server.hub.bus.add(Script({"beforeSendSingleMsg"}, lambda c: Verdict.allow(change)))
    assert await code(t.server, "/msg/send_msg", single("alice", "bob"), alice) == 1001
    assert await stored(t, "si_alice_bob") == []


async def test_a_dropping_plugin_answers_success_and_stores_nothing(
        tenant: TenantHandle) -> None:
    srv = tenant.server
    alice, _ = await tenant.users("alice", "bob")
    srv.hub.bus.add(Script({"beforeSendSingleMsg"}, lambda c: Verdict.drop()))
    with pushes(srv) as seen:
        ack = await srv.ok("/msg/send_msg", single("alice", "bob"), alice)
    assert ack["seq"] == 0 and ack["serverMsgID"]
    assert seen == []
    assert await stored(tenant, "si_alice_bob") == []
    assert await events(tenant, "afterSendSingleMsg") == []


# --- sync access -----------------------------------------------------------------------

async def test_pull_answers_only_the_users_own_conversations(tenant: TenantHandle) -> None:
    srv = tenant.server
    alice, bob, carol = await tenant.users("alice", "bob", "carol")
    await make_group(tenant, "alice", ["bob"])
    await srv.ok("/msg/send_msg", single("alice", "bob"), alice)
    await srv.ok("/msg/send_msg", group("alice", "g1"), alice)
    await srv.ok("/friend/add_friend", {"fromUserID": "alice", "toUserID": "carol"}, alice)
    ranges = [{"conversationID": c, "begin": 1, "end": 5, "num": 5}
              for c in ("si_alice_bob", "sg_g1", "n_alice", "n_carol", "bogus")]
    got = (await srv.ok("/msg/pull_msg_by_seq", {"userID": "carol", "seqRanges": ranges},
                        carol))["msgs"]
    assert set(got) == {"n_carol"} and got["n_carol"][0]["contentType"] == 1203
    got = (await srv.ok("/msg/pull_msg_by_seq", {"userID": "bob", "seqRanges": ranges},
                        bob))["msgs"]
    assert set(got) == {"si_alice_bob", "sg_g1"}
    newest = (await srv.ok("/msg/newest_seq", {"userID": "carol"}, carol))["maxSeqs"]
    assert newest == {"n_carol": 1}
    newest = (await srv.ok("/msg/newest_seq", {"userID": "bob"}, tenant.admin))["maxSeqs"]
    assert newest["si_alice_bob"] == 1 and newest["sg_g1"] == 1
    assert await code(srv, "/msg/pull_msg_by_seq", {"userID": "alice", "seqRanges": []},
                      bob) == 1002
    assert await code(srv, "/msg/pull_msg_by_seq", {"userID": "bob"}, bob) == 1001
    assert await code(srv, "/msg/newest_seq", {"userID": "nobody"}, tenant.admin) == 1004
    assert await code(srv, "/msg/pull_msg_by_seq", {"userID": "bob", "seqRanges": [
        {"conversationID": "sg_g1", "begin": 5, "end": 1}]}, bob) == 1001


async def test_pull_takes_the_newest_num_of_the_range_even_past_the_newest_seq(
        tenant: TenantHandle) -> None:
    srv = tenant.server
    alice, _ = await tenant.users("alice", "bob")
    for i in range(6):
        await srv.ok("/msg/send_msg", single("alice", "bob", f"m{i}"), alice)

    async def seqs(begin: int, end: int, num: int) -> list[int]:
        got = (await srv.ok("/msg/pull_msg_by_seq", {"userID": "alice", "seqRanges": [
            {"conversationID": "si_alice_bob", "begin": begin, "end": end, "num": num}]},
            alice))["msgs"]
        return [m["seq"] for m in got.get("si_alice_bob", [])]

    assert await seqs(1, 100, 2) == [5, 6]  # an end past the newest: the newest two
    assert await seqs(0, 2**40, 100) == [1, 2, 3, 4, 5, 6]
    assert await seqs(1, 7, 2) == [5, 6]
    assert await seqs(2, 4, 10) == [2, 3, 4]
    assert await seqs(1, 6, 3) == [4, 5, 6]
    assert await seqs(7, 100, 5) == []


async def test_user_ids_with_underscores_never_share_a_conversation(
        tenant: TenantHandle) -> None:
    # a_b with c, and a with b_c, both make si_a_b_c: the pair that opened it keeps it;
    # the other can neither write into it nor read, revoke or mark it.
    srv = tenant.server
    a_b, c, a, b_c = await tenant.users("a_b", "c", "a", "b_c")
    ack = await srv.ok("/msg/send_msg", single("a_b", "c", "secret"), a_b)
    assert ack["seq"] == 1
    assert await code(srv, "/msg/send_msg", single("a", "b_c", "hello"), a) == 1001
    assert await code(srv, "/msg/send_msg", single("b_c", "a", "hello"), tenant.admin) == 1001
    assert [m.content for m in await stored(tenant, "si_a_b_c")] == [text("secret")]
    ranges = [{"conversationID": "si_a_b_c", "begin": 1, "end": 5, "num": 5}]
    for user, token in (("a", a), ("b_c", b_c)):
        got = await srv.ok("/msg/pull_msg_by_seq", {"userID": user, "seqRanges": ranges},
                           token)
        assert got["msgs"] == {}, user
        assert await code(srv, "/msg/revoke_msg", {"userID": user, "conversationID":
                                                   "si_a_b_c", "seq": 1}, token) == 1004
        assert await code(srv, "/msg/mark_msgs_as_read", {
            "ownerUserID": user, "conversationID": "si_a_b_c", "seqs": [1]}, token) == 1004
    got = await srv.ok("/msg/pull_msg_by_seq", {"userID": "c", "seqRanges": ranges}, c)
    assert [m["content"] for m in got["msgs"]["si_a_b_c"]] == [text("secret")]
    ack = await srv.ok("/msg/send_msg", single("c", "a_b", "more"), c)
    assert ack["seq"] == 2  # no seq was spent on the refused sends
    convs = (await srv.ok("/conversation/get_all_conversations", {"ownerUserID": "c"},
                          c))["conversations"]
    assert [(x["conversationID"], x["userID"]) for x in convs] == [("si_a_b_c", "a_b")]
    convs = (await srv.ok("/conversation/get_all_conversations", {"ownerUserID": "a"},
                          a))["conversations"]
    assert convs == []


# --- revoke ----------------------------------------------------------------------------

async def test_revoke(tenant: TenantHandle) -> None:
    srv = tenant.server
    alice, bob, carol = await tenant.users("alice", "bob", "carol")
    await srv.ok("/msg/send_msg", single("alice", "bob", "oops"), alice)
    revoke = {"userID": "bob", "conversationID": "si_alice_bob", "seq": 1}
    assert await code(srv, "/msg/revoke_msg", revoke, bob) == 1002
    assert await code(srv, "/msg/revoke_msg", {**revoke, "userID": "carol"}, carol) == 1004
    assert await code(srv, "/msg/revoke_msg", {**revoke, "seq": 9, "userID": "alice"},
                      alice) == 1004
    with pushes(srv) as seen:
        await srv.ok("/msg/revoke_msg", {**revoke, "userID": "alice"}, alice)
    assert await code(srv, "/msg/revoke_msg", {**revoke, "userID": "alice"}, alice) == 1003
    original, tip = await stored(tenant, "si_alice_bob")
    assert original.status == 4 and original.content_type == 2101 and "oops" not in \
        original.content
    assert (tip.seq, tip.content_type, tip.send_id, tip.session_type) == (2, 2101, "alice", 1)
    tips = orjson.loads(orjson.loads(tip.content)["detail"])
    assert tips["revokerUserID"] == "alice" and tips["seq"] == 1
    pushed = {(uid, m["conversationID"], m["seq"], m["contentType"])
              for by_user, _ in seen for uid, msgs in by_user.items() for m in msgs}
    assert pushed == {("alice", "si_alice_bob", 2, 2101), ("bob", "si_alice_bob", 2, 2101),
                      ("alice", "n_alice", 1, 2101), ("bob", "n_bob", 1, 2101)}
    # The contract lists 2101 MsgRevoked among the notifications: one in n_USERID each.
    for uid in ("alice", "bob"):
        [note] = [m for m in await stored(tenant, f"n_{uid}") if m.content_type == 2101]
        assert note.session_type == 4
        assert orjson.loads(orjson.loads(note.content)["detail"]) == tips
    # Neither the revoked message nor its tip is news to bob.
    [conv] = (await srv.ok("/conversation/get_all_conversations", {"ownerUserID": "bob"},
                           bob))["conversations"]
    assert conv["unreadCount"] == 0
    [event] = await events(tenant, "afterRevokeMsg")
    assert event["revokerUserID"] == "alice" and event["seq"] == 1
    assert event["conversationID"] == "si_alice_bob"

    # In a group an admin revokes a member's message; another member cannot.
    await make_group(tenant, "alice", ["carol"], admins=("bob",))
    await srv.ok("/msg/send_msg", group("carol", "g1", "x"), carol)
    await srv.ok("/msg/send_msg", group("alice", "g1", "y"), alice)
    assert await code(srv, "/msg/revoke_msg", {"userID": "carol", "conversationID": "sg_g1",
                                               "seq": 2}, carol) == 1002
    await srv.ok("/msg/revoke_msg", {"userID": "bob", "conversationID": "sg_g1", "seq": 1},
                 bob)
    [event] = await events(tenant, "afterGroupMsgRevoke")
    assert event["groupID"] == "g1" and event["revokerUserID"] == "bob" and event["seq"] == 1
    assert [r.status for r in await stored(tenant, "sg_g1")] == [4, 2, 2]
    for uid in ("alice", "bob", "carol"):
        notes = [m for m in await stored(tenant, f"n_{uid}") if m.content_type == 2101]
        assert notes[-1].session_type == 4 and orjson.loads(orjson.loads(
            notes[-1].content)["detail"])["conversationID"] == "sg_g1"


# --- read receipts ---------------------------------------------------------------------

async def test_mark_as_read_records_and_tells_the_peer(tenant: TenantHandle) -> None:
    srv = tenant.server
    alice, bob, carol = await tenant.users("alice", "bob", "carol")
    for i in range(3):
        await srv.ok("/msg/send_msg", single("alice", "bob", f"m{i}"), alice)
    mark = {"ownerUserID": "bob", "conversationID": "si_alice_bob", "seqs": [1, 2]}
    await srv.ok("/msg/mark_msgs_as_read", mark, bob)
    receipts = [m for m in await stored(tenant, "n_alice") if m.content_type == 2200]
    assert len(receipts) == 1
    tips = orjson.loads(orjson.loads(receipts[0].content)["detail"])
    assert tips == {"conversationID": "si_alice_bob", "markAsReadUserID": "bob",
                    "seqs": [1, 2], "hasReadSeq": 2}
    [event] = await events(tenant, "afterSingleMsgRead")
    assert (event["sendID"], event["recvID"], event["seqs"]) == ("bob", "alice", [1, 2])
    # Never backwards.
    await srv.ok("/msg/mark_msgs_as_read", {**mark, "seqs": [1]}, bob)
    convs = (await srv.ok("/conversation/get_all_conversations", {"ownerUserID": "bob"},
                          bob))["conversations"]
    assert [(c["hasReadSeq"], c["unreadCount"]) for c in convs] == [(2, 1)]

    assert await code(srv, "/msg/mark_msgs_as_read", {**mark, "seqs": [4]}, bob) == 1001
    assert await code(srv, "/msg/mark_msgs_as_read", {**mark, "seqs": []}, bob) == 1001
    assert await code(srv, "/msg/mark_msgs_as_read", {**mark, "ownerUserID": "carol"},
                      carol) == 1004
    await make_group(tenant, "alice", ["bob"])
    await srv.ok("/msg/send_msg", group("alice", "g1"), alice)
    assert await code(srv, "/msg/mark_msgs_as_read", {
        "ownerUserID": "carol", "conversationID": "sg_g1", "seqs": [1]}, carol) == 1201
    await srv.ok("/msg/mark_msgs_as_read", {"ownerUserID": "bob", "conversationID": "sg_g1",
                                            "seqs": [1]}, bob)
    [event] = await events(tenant, "afterGroupMsgRead")
    assert (event["sendID"], event["groupID"], event["seqs"]) == ("bob", "g1", [1])


# --- push hooks ------------------------------------------------------------------------

async def test_offline_recipients_get_the_offline_push_hooks(tenant: TenantHandle) -> None:
    srv = tenant.server
    alice, bob = await tenant.users("alice", "bob")
    seen = Script({"beforeOfflinePush"}, lambda c: Verdict.allow({
        "offlinePushInfo": {**c.payload["offlinePushInfo"], "desc": "from the hook"}}))
    srv.hub.bus.add(seen)
    info = {"title": "New message", "desc": "", "ex": "x"}
    ack = await srv.ok("/msg/send_msg", single("alice", "bob", offlinePushInfo=info), alice)
    await srv.hub.pusher.drain()
    [call] = seen.calls
    assert call.payload["userIDList"] == ["bob"] and call.payload["offlinePushInfo"] == info
    [event] = await events(tenant, "afterOfflinePush")
    assert event["userIDList"] == ["bob"] and event["seq"] == ack["seq"]
    assert event["offlinePushInfo"] == {**info, "desc": "from the hook"}
    assert event["conversationID"] == "si_alice_bob"

    # A connected recipient gets no offline push.
    url = f"{srv.ws_url}?sendID=bob&token={bob}&platformID=1&operationID=t"
    async with websockets.connect(url) as ws:
        for _ in range(100):
            if srv.hub.presence.online_user_ids(tenant.tenant_id, ["bob"]):
                break
            await asyncio.sleep(0.02)
        await srv.ok("/msg/send_msg", single("alice", "bob"), alice)
        await srv.hub.pusher.drain()
        push = orjson.loads(await asyncio.wait_for(ws.recv(), 5))
        assert push["reqIdentifier"] == 2001
    assert len(seen.calls) == 1
    assert len(await events(tenant, "afterOfflinePush")) == 1


async def test_without_an_offline_hook_the_offline_push_commits_with_the_message(
        tenant: TenantHandle) -> None:
    srv = tenant.server
    alice, _ = await tenant.users("alice", "bob")
    info = {"title": "New message", "desc": "d", "ex": ""}
    ack = await srv.ok("/msg/send_msg", single("alice", "bob", offlinePushInfo=info), alice)
    # Nothing drained: the event is in the message's own transaction, right after its
    # afterSendSingleMsg (outbox positions are consecutive within one transaction here).
    async with srv.hub.sessions() as s:
        rows = (await s.execute(select(Event.pos, Event.callback_command, Event.payload).where(
            Event.tenant_id == tenant.tenant_id).order_by(Event.pos))).all()
    chat = [r for r in rows if r.callback_command in (
        "callbackAfterSendSingleMsgCommand", "callbackAfterOfflinePushCommand")]
    assert [r.callback_command for r in chat] == ["callbackAfterSendSingleMsgCommand",
                                                  "callbackAfterOfflinePushCommand"]
    assert chat[1].pos == chat[0].pos + 1
    event = orjson.loads(chat[1].payload)
    assert event["userIDList"] == ["bob"] and event["seq"] == ack["seq"]
    assert event["offlinePushInfo"] == info
    await srv.hub.pusher.drain()
    assert len(await events(tenant, "afterOfflinePush")) == 1  # and no second one


async def test_offline_push_veto_and_narrowing(sqlite_tenant: TenantHandle) -> None:
    t = sqlite_tenant
    srv = t.server
    alice, *_ = await t.users("alice", "bob", "carol")
    await make_group(t, "alice", ["bob", "carol"])
    srv.hub.bus.add(Script({"beforeOfflinePush"}, lambda c: Verdict.deny(1, "no")
                           if "veto" in c.payload["content"] else
                           Verdict.allow({"userIDList": ["carol", "mallory"]})))
    await srv.ok("/msg/send_msg", group("alice", "g1", "veto"), alice)
    await srv.ok("/msg/send_msg", group("alice", "g1", "narrow"), alice)
    await srv.hub.pusher.drain()
    [event] = await events(t, "afterOfflinePush")
    assert event["userIDList"] == ["carol"] and event["seq"] == 2


async def test_online_push_hook_narrows_the_recipients(sqlite_tenant: TenantHandle) -> None:
    t = sqlite_tenant
    srv = t.server
    alice, bob, carol = await t.users("alice", "bob", "carol")
    await make_group(t, "alice", ["bob", "carol"])
    hook = Script({"beforeOnlinePush"}, lambda c: Verdict.allow({"userIDList": ["carol"]}))
    srv.hub.bus.add(hook)
    conns = [websockets.connect(f"{srv.ws_url}?sendID={u}&token={tok}&platformID=1")
             for u, tok in (("bob", bob), ("carol", carol))]
    async with conns[0], conns[1]:
        for _ in range(100):
            if len(srv.hub.presence.online_user_ids(t.tenant_id, ["bob", "carol"])) == 2:
                break
            await asyncio.sleep(0.02)
        with pushes(srv) as seen:
            await srv.ok("/msg/send_msg", group("alice", "g1"), alice)
            await srv.hub.pusher.drain()
    assert sorted(hook.calls[0].payload["userIDList"]) == ["bob", "carol"]
    chat = [set(by_user) for by_user, _ in seen]
    assert chat == [{"alice"}, {"carol"}]
