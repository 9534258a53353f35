"""Before hooks over HTTP: a real imhub server calls a real receiver (Starlette on its own
loopback port) and the receiver's answers decide the action: deny, modify, drop, decline,
and every way of failing, under both failure policies.

One server per database kind and one receiver serve the whole module (starting a server
costs more than most tests here); each test gets a tenant of its own, which is the
isolation the product promises anyway, and a receiver with no hits and no answer.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import pytest_asyncio
from sqlalchemy import text
from standardwebhooks.webhooks import Webhook
from starlette.responses import Response

from hub.bus import BeforeCall, Hook, Verdict
from hub.plugin import Plugin, PluginConfig
from hub.tenants import create_tenant
from tests.conftest import (
    Database,
    Server,
    TenantHandle,
    free_port,
    pg_schema,
    settings_for,
    start_server,
)
from tests.webhooks.receiver import Hit, Receiver, serve_app, serve_receiver

pytestmark = pytest.mark.asyncio(loop_scope="module")

LOOPBACK = {"allowNetworks": ["127.0.0.0/8"]}
TEXT = '{"content": "hello"}'


def reply(body: Any, status: int = 200) -> Response:
    content = body if isinstance(body, bytes) else orjson.dumps(body)
    return Response(content, status_code=status, media_type="application/json")


def answer_with(body: Any, status: int = 200) -> Callable[[Hit], Response]:
    return lambda hit: reply(body, status)


async def set_config(t: TenantHandle, **config: Any) -> dict[str, Any]:
    data: dict[str, Any] = await t.server.ok("/webhook/set_config", {"config": config},
                                             t.admin)
    return data


async def hooked(t: TenantHandle, receiver: Receiver, *hooks: str, url: str | None = None,
                 **entry: Any) -> str:
    """Enable `hooks` towards the receiver; returns the signing secret."""
    data = await set_config(t, url=url or receiver.url + "/openim",
                            **{h: {"enable": True, **entry} for h in hooks})
    assert data["secret"].startswith("whsec_")
    return str(data["secret"])


def verified(hit: Hit, secret: str) -> dict[str, Any]:
    """The body, after the independent Standard Webhooks library checked its signature."""
    data: dict[str, Any] = Webhook(secret).verify(hit.body, hit.headers)
    return data


async def code(t: TenantHandle, path: str, body: dict[str, Any]) -> tuple[int, int, str]:
    status, env = await t.server.post(path, body, t.admin)
    return status, env["errCode"], env["errMsg"]


async def self_applies(t: TenantHandle, user: str) -> list[str]:
    data = await t.server.ok("/friend/get_self_friend_apply_list", {"userID": user}, t.admin)
    return [r["toUserID"] for r in data["friendRequests"]]


async def send(t: TenantHandle, content_type: int = 101, content: str = TEXT,
               **extra: Any) -> tuple[int, dict[str, Any]]:
    return await t.server.post("/msg/send_msg", {
        "sendID": "alice", "recvID": "bob", "sessionType": 1, "contentType": content_type,
        "content": content, **extra}, t.admin)


async def stored(t: TenantHandle, conversation: str = "si_alice_bob") -> list[dict[str, Any]]:
    data = await t.server.ok("/msg/pull_msg_by_seq", {"userID": "bob", "seqRanges": [
        {"conversationID": conversation, "begin": 1, "end": 100, "num": 100}]}, t.admin)
    msgs: list[dict[str, Any]] = data["msgs"].get(conversation, [])
    return msgs


@pytest_asyncio.fixture(scope="module", loop_scope="module",
                        params=["sqlite", "postgresql"])
async def hub_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
                     ) -> AsyncIterator[Server]:
    """A server that may call loopback receivers, on each database kind."""
    if request.param == "sqlite":
        db = Database(f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('hooks')}/imhub.db")
        srv, stop = await start_server(settings_for(db, webhooks=LOOPBACK))
        yield srv
        await stop()
        return
    async with pg_schema() as pg:
        srv, stop = await start_server(settings_for(pg, webhooks=LOOPBACK))
        yield srv
        await stop()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def shared_receiver() -> AsyncIterator[Receiver]:
    async with serve_receiver() as r:
        yield r


@pytest_asyncio.fixture(loop_scope="module")
async def receiver(shared_receiver: Receiver) -> Receiver:
    shared_receiver.hits.clear()
    shared_receiver.answer = None
    return shared_receiver


async def register(t: TenantHandle, *user_ids: str) -> None:
    # The admin token acts for everyone here: no logins needed.
    await t.server.ok("/user/user_register", {"users": [
        {"userID": u, "nickname": u.title()} for u in user_ids]}, t.admin)
    await _dispatched(t)


async def _dispatched(t: TenantHandle) -> None:
    """Wait until the dispatcher has taken the tenant's events. On PostgreSQL it decides
    their endpoints when it takes them: a hook configured before that would also get the
    user registrations (docs/webhooks.md), and the tests count the receiver's calls."""
    async with asyncio.timeout(10):
        while True:
            async with t.server.hub.engine.connect() as conn:
                left = (await conn.execute(text(
                    "SELECT count(*) FROM events WHERE tenant_id = :t AND dispatched = 0"),
                    {"t": t.tenant_id})).scalar_one()
            if not left:
                return
            await asyncio.sleep(0.02)


async def new_tenant(srv: Server) -> TenantHandle:
    async with srv.hub.sessions() as s, s.begin():
        t = await create_tenant(s, "tenant-" + secrets.token_hex(4))
    return TenantHandle(srv, t.tenant_id, t.admin_token)


@pytest_asyncio.fixture(loop_scope="module")
async def sq(hub_server: Server) -> TenantHandle:
    """A fresh tenant with users alice and bob."""
    t = await new_tenant(hub_server)
    await register(t, "alice", "bob")
    return t


async def test_a_deny_reaches_the_client_with_the_backends_code_and_message(
        sq: TenantHandle, receiver: Receiver) -> None:
    pair = sq
    secret = await hooked(pair, receiver, "beforeAddFriend")
    receiver.answer = answer_with({"actionCode": 0, "nextCode": 1, "errCode": 7001,
                                   "errMsg": "not in the same school"})
    status, env = await pair.server.post(
        "/friend/add_friend", {"fromUserID": "alice", "toUserID": "bob", "reqMsg": "hi"},
        pair.admin, operation_id="op-deny-1")
    assert (env["errCode"], env["errMsg"], status) == (7001, "not in the same school", 403)
    assert await self_applies(pair, "alice") == []

    [hit] = receiver.hits
    assert hit.path == "/openim/callbackBeforeAddFriendCommand"
    assert hit.headers["content-type"] == "application/json"
    assert hit.headers["user-agent"] == "imhub-webhooks/1"
    assert hit.headers["operationid"] == "op-deny-1"
    assert hit.headers["webhook-id"].startswith("msg_")
    assert abs(int(hit.headers["webhook-timestamp"]) - time.time()) < 10
    body = verified(hit, secret)
    assert body["callbackCommand"] == "callbackBeforeAddFriendCommand"
    assert body["eventID"] == hit.headers["webhook-id"]
    assert body["tenantID"] == pair.tenant_id and body["operationID"] == "op-deny-1"
    assert abs(body["occurredAt"] - time.time() * 1000) < 10_000
    assert (body["fromUserID"], body["toUserID"], body["reqMsg"]) == ("alice", "bob", "hi")


async def test_each_call_has_its_own_webhook_id(sq: TenantHandle, receiver: Receiver) -> None:
    await hooked(sq, receiver, "beforeAddFriend")
    for a, b in (("alice", "bob"), ("bob", "alice")):
        await sq.server.ok("/friend/add_friend", {"fromUserID": a, "toUserID": b}, sq.admin)
    ids = [h.headers["webhook-id"] for h in receiver.hits]
    assert len(ids) == 2 and len(set(ids)) == 2


@pytest.mark.parametrize("answer", [
    {"actionCode": 0, "errCode": 0, "errMsg": "", "nextCode": 0},
    {},
    # actionCode != 0: the backend declines to decide, whatever else it says (OpenIM).
    {"actionCode": 1, "nextCode": 1, "errCode": 7001, "errMsg": "ignored"},
    {"actionCode": 1, "nextCode": 2},
    {"nextCode": 3},  # no verdict OpenIM knows: allow
], ids=["allow", "empty-object", "decline-deny", "decline-drop", "unknown-next-code"])
async def test_allow_and_decline_let_the_action_go_on_unchanged(
        sq: TenantHandle, receiver: Receiver, answer: dict[str, Any]) -> None:
    await hooked(sq, receiver, "beforeAddFriend")
    receiver.answer = answer_with(answer)
    await sq.server.ok("/friend/add_friend", {"fromUserID": "alice", "toUserID": "bob",
                                              "reqMsg": "hi"}, sq.admin)
    assert await self_applies(sq, "alice") == ["bob"]
    assert len(receiver.hits) == 1


async def test_changes_are_stored_and_only_changeable_fields_are_taken(
        sq: TenantHandle, receiver: Receiver) -> None:
    await sq.befriend("alice", "bob")
    await hooked(sq, receiver, "beforeSetFriendRemark")
    receiver.answer = answer_with({"nextCode": 0, "remark": "Bobby (checked)",
                                   "friendUserID": "mallory", "ownerUserID": "mallory"})
    await sq.server.ok("/friend/set_friend_remark", {"ownerUserID": "alice",
                                                     "friendUserID": "bob", "remark": "B"},
                       sq.admin)
    friends = await sq.server.ok("/friend/get_friend_list", {"userID": "alice"}, sq.admin)
    [f] = friends["friendsInfo"]
    assert f["friendUser"]["userID"] == "bob" and f["remark"] == "Bobby (checked)"
    assert verified(receiver.hits[0], (await sq.server.ok(
        "/webhook/get_config", {}, sq.admin))["secret"])["remark"] == "B"


async def test_a_change_that_breaks_the_request_answers_1001(
        sq: TenantHandle, receiver: Receiver) -> None:
    await sq.befriend("alice", "bob")
    await hooked(sq, receiver, "beforeSetFriendRemark")
    receiver.answer = answer_with({"remark": "x" * 300})  # over the 255 of a remark
    status, err, msg = await code(sq, "/friend/set_friend_remark", {
        "ownerUserID": "alice", "friendUserID": "bob", "remark": "B"})
    assert (err, status) == (1001, 400) and "remark" in msg
    receiver.answer = answer_with({"remark": "B\u0000"})  # NUL: PostgreSQL cannot store it
    status, err, msg = await code(sq, "/friend/set_friend_remark", {
        "ownerUserID": "alice", "friendUserID": "bob", "remark": "B"})
    assert (err, status) == (1001, 400) and "remark" in msg and "NUL" in msg


async def test_message_hooks_modify_drop_and_deny(sq: TenantHandle, receiver: Receiver) -> None:
    secret = await hooked(sq, receiver, "beforeSendSingleMsg")
    receiver.answer = answer_with({"nextCode": 0, "content": '{"content": "h***o"}',
                                   "ex": "moderated", "sendID": "mallory"})
    status, env = await send(sq)
    assert env["errCode"] == 0 and env["data"]["seq"] == 1
    body = verified(receiver.hits[0], secret)
    assert body["callbackCommand"] == "callbackBeforeSendSingleMsgCommand"
    assert (body["sendID"], body["recvID"], body["content"]) == ("alice", "bob", TEXT)
    assert body["sessionType"] == 1 and body["contentType"] == 101
    [msg] = await stored(sq)
    assert (msg["content"], msg["ex"], msg["sendID"]) == ('{"content": "h***o"}', "moderated",
                                                          "alice")

    receiver.answer = answer_with({"nextCode": 2})
    status, env = await send(sq)
    assert env["errCode"] == 0 and status == 200  # the sender sees success
    assert len(await stored(sq)) == 1  # and nothing was stored

    receiver.answer = answer_with({"nextCode": 1, "errCode": 0, "errMsg": "spam"})
    status, env = await send(sq)
    assert (env["errCode"], env["errMsg"], status) == (5000, "spam", 403)
    assert len(await stored(sq)) == 1
    assert len(receiver.hits) == 3


async def test_drop_on_a_hook_that_is_not_a_message_denies(sq: TenantHandle,
                                                           receiver: Receiver) -> None:
    await hooked(sq, receiver, "beforeAddFriend")
    receiver.answer = answer_with({"nextCode": 2})
    status, err, _ = await code(sq, "/friend/add_friend",
                                {"fromUserID": "alice", "toUserID": "bob"})
    assert (err, status) == (5000, 403)
    assert await self_applies(sq, "alice") == []


async def test_denied_and_allowed_types_decide_which_messages_are_hooked(
        sq: TenantHandle, receiver: Receiver) -> None:
    await hooked(sq, receiver, "beforeSendSingleMsg", deniedTypes=[102, "105-107"],
                 allowedTypes=["100-110"])
    receiver.answer = answer_with({"nextCode": 1, "errCode": 7001})
    picture = '{"sourcePicture": {"url": "https://cdn.example/p.png"}}'
    _, env = await send(sq, 102, picture)  # denied: not hooked, so not vetoed
    assert env["errCode"] == 0
    _, env = await send(sq, 110, '{"data": "x"}')
    assert env["errCode"] == 7001
    _, env = await send(sq, 114, '{"text": "re"}')  # outside allowedTypes: not hooked
    assert env["errCode"] == 0
    # Typing is never hooked, whatever the config says.
    await send(sq, 113, '{"msgTips": "typing"}')
    assert [orjson.loads(h.body)["contentType"] for h in receiver.hits] == [110]
    assert [m["contentType"] for m in await stored(sq)] == [102, 114]


async def test_group_hooks_veto_apply_and_refuse_some_invited_users(
        sq: TenantHandle, receiver: Receiver) -> None:
    await register(sq, "carol", "dave")
    await sq.server.ok("/group/create_group", {
        "ownerUserID": "alice", "memberUserIDs": ["bob"],
        "groupInfo": {"groupID": "g1", "groupName": "Hiking", "needVerification": 0}},
        sq.admin)
    secret = await hooked(sq, receiver, "beforeApplyJoinGroup", "beforeInviteUserToGroup",
                          "beforeSendGroupMsg")

    def by_command(hit: Hit) -> Response:
        command = hit.path.rsplit("/", 1)[1]
        if command == "callbackBeforeApplyJoinGroupCommand":
            return reply({"nextCode": 1, "errCode": 7002, "errMsg": "closed for winter"})
        if command == "callbackBeforeInviteUserToGroupCommand":
            return reply({"refusedUserIDs": ["carol"]})
        return reply({"content": '{"content": "[edited]"}'})

    receiver.answer = by_command
    status, err, msg = await code(sq, "/group/join_group", {
        "groupID": "g1", "userID": "dave", "reqMessage": "me too", "joinSource": 3})
    assert (err, msg, status) == (7002, "closed for winter", 403)
    apply = verified(receiver.hits[-1], secret)
    assert (apply["groupID"], apply["userID"], apply["reqMessage"]) == ("g1", "dave", "me too")

    await sq.server.ok("/group/invite_user_to_group", {
        "groupID": "g1", "invitedUserIDs": ["carol", "dave"], "reason": "hikers"}, sq.admin)
    invite = verified(receiver.hits[-1], secret)
    assert invite["invitedUserIDs"] == ["carol", "dave"] and invite["reason"] == "hikers"
    members = await sq.server.ok("/group/get_group_member_list", {"groupID": "g1"}, sq.admin)
    assert sorted(m["userID"] for m in members["members"]) == ["alice", "bob", "dave"]

    status, env = await sq.server.post("/msg/send_msg", {
        "sendID": "bob", "groupID": "g1", "sessionType": 3, "contentType": 101,
        "content": TEXT}, sq.admin)
    assert env["errCode"] == 0
    assert verified(receiver.hits[-1], secret)["groupID"] == "g1"
    [msg_row] = await stored(sq, "sg_g1")
    assert msg_row["content"] == '{"content": "[edited]"}'


async def _slow(hit: Hit) -> Response:
    await asyncio.sleep(1)
    return reply({})


def _redirect(receiver: Receiver) -> Callable[[Hit], Response]:
    def answer(hit: Hit) -> Response:
        if hit.path.startswith("/elsewhere"):
            return reply({"nextCode": 1, "errCode": 7009})
        return Response(status_code=307, headers={"Location": receiver.url + "/elsewhere"})
    return answer


FAILURES: dict[str, Callable[[Receiver], Any]] = {
    "http-500": lambda r: answer_with({"nextCode": 0}, 500),
    "http-404": lambda r: answer_with({}, 404),
    "timeout": lambda r: _slow,
    "not-json": lambda r: answer_with(b"<html>ok</html>"),
    "empty-body": lambda r: answer_with(b""),
    "json-array": lambda r: answer_with([{"nextCode": 1}]),
    "wrong-types": lambda r: answer_with({"nextCode": "1", "errCode": 7001}),
    "refused-ids-not-a-list": lambda r: answer_with({"refusedUserIDs": "bob"}),
    "redirect": _redirect,
    "refused-connection": lambda r: None,
}


@pytest.mark.parametrize("failed_continue", [True, False], ids=["continue", "deny"])
@pytest.mark.parametrize("failure", list(FAILURES))
async def test_a_failed_call_is_settled_by_failed_continue(
        sq: TenantHandle, receiver: Receiver, failure: str, failed_continue: bool) -> None:
    invite = failure == "refused-ids-not-a-list"
    hook = "beforeInviteUserToGroup" if invite else "beforeAddFriend"
    url = f"http://127.0.0.1:{free_port()}" if failure == "refused-connection" else None
    await hooked(sq, receiver, hook, url=url, timeout=0.3, failedContinue=failed_continue)
    receiver.answer = FAILURES[failure](receiver)
    if invite:
        await sq.server.ok("/group/create_group", {"ownerUserID": "alice", "groupInfo": {
            "groupID": "g1", "groupName": "g", "needVerification": 1}}, sq.admin)
        path, body = "/group/invite_user_to_group", {"groupID": "g1", "invitedUserIDs": ["bob"]}
    else:
        path, body = "/friend/add_friend", {"fromUserID": "alice", "toUserID": "bob"}

    start = time.perf_counter()
    status, err, _ = await code(sq, path, body)
    elapsed = time.perf_counter() - start

    assert (err, status) == ((0, 200) if failed_continue else (5001, 503))
    if invite:
        members = await sq.server.ok("/group/get_group_member_list", {"groupID": "g1"},
                                     sq.admin)
        assert ("bob" in [m["userID"] for m in members["members"]]) is failed_continue
    else:
        assert await self_applies(sq, "alice") == (["bob"] if failed_continue else [])
    assert elapsed < 1.3  # a hung receiver costs its hook's timeout, not the client's
    if failure == "refused-connection":
        assert receiver.hits == []
    else:
        # The slow receiver records its hit when it answers, after the client had its own.
        await receiver.wait_for(lambda r: len(r.hits) >= 1)
        assert len(receiver.hits) == 1  # never retried, never redirected


async def test_each_tenant_calls_only_its_own_backend(
        hub_server: Server, receiver: Receiver) -> None:
    a, b = await new_tenant(hub_server), await new_tenant(hub_server)
    for t in (a, b):
        await register(t, "alice", "bob")
    await hooked(a, receiver, "beforeAddFriend")
    receiver.answer = answer_with({"nextCode": 1, "errCode": 7001})
    assert (await code(a, "/friend/add_friend", {"fromUserID": "alice",
                                                 "toUserID": "bob"}))[1] == 7001
    await b.server.ok("/friend/add_friend", {"fromUserID": "alice", "toUserID": "bob"},
                      b.admin)
    assert [orjson.loads(h.body)["tenantID"] for h in receiver.hits] == [a.tenant_id]


async def test_disabling_a_hook_stops_its_calls_at_once(sq: TenantHandle,
                                                        receiver: Receiver) -> None:
    await hooked(sq, receiver, "beforeAddFriend")
    receiver.answer = answer_with({"nextCode": 1, "errCode": 7001})
    assert (await code(sq, "/friend/add_friend", {"fromUserID": "alice",
                                                  "toUserID": "bob"}))[1] == 7001
    await set_config(sq, url=receiver.url, beforeAddFriend={"enable": False})
    await sq.server.ok("/friend/add_friend", {"fromUserID": "alice", "toUserID": "bob"},
                       sq.admin)
    assert len(receiver.hits) == 1


class _Stamp(Plugin):
    """An in-process plugin that rewrites the remark, to see where webhooks run. It takes
    one tenant only: the server is shared, and plugins cannot be removed from a bus."""

    def __init__(self, tenant_id: str) -> None:
        super().__init__(PluginConfig())
        self.priority = 100
        self._tenant_id = tenant_id

    def wants(self, hook: Hook, tenant_id: str) -> bool:
        return hook.name == "beforeSetFriendRemark" and tenant_id == self._tenant_id

    async def before(self, call: BeforeCall) -> Verdict:
        return Verdict.allow({"remark": call.payload["remark"] + "+plugin"})


@pytest.mark.parametrize(("priority", "seen", "final"), [
    (None, "B+plugin", "B+plugin+hook"),  # default 1000: after plugins (100)
    (10, "B", "B+hook+plugin"),
])
async def test_priority_places_the_webhook_among_plugins(
        sq: TenantHandle, receiver: Receiver, priority: int | None, seen: str,
        final: str) -> None:
    sq.server.hub.bus.add(_Stamp(sq.tenant_id))
    await sq.befriend("alice", "bob")
    config: dict[str, Any] = {"url": receiver.url,
                              "beforeSetFriendRemark": {"enable": True}}
    if priority is not None:
        config["priority"] = priority
    await set_config(sq, **config)
    receiver.answer = lambda hit: reply({"remark": orjson.loads(hit.body)["remark"] + "+hook"})
    await sq.server.ok("/friend/set_friend_remark", {"ownerUserID": "alice",
                                                     "friendUserID": "bob", "remark": "B"},
                       sq.admin)
    assert orjson.loads(receiver.hits[0].body)["remark"] == seen
    friends = await sq.server.ok("/friend/get_friend_list", {"userID": "alice"}, sq.admin)
    assert friends["friendsInfo"][0]["remark"] == final


async def test_before_hooks_and_after_events_to_one_url_share_one_secret(
        sq: TenantHandle, receiver: Receiver) -> None:
    config = await set_config(sq, url=receiver.url, beforeAddFriend={"enable": True},
                              afterAddFriend={"enable": True})
    await sq.server.ok("/friend/add_friend", {"fromUserID": "alice", "toUserID": "bob"},
                       sq.admin)
    await receiver.wait_for(lambda r: len(r.hits) == 2, what="the after event")
    paths = [h.path for h in receiver.hits]
    assert paths == ["/callbackBeforeAddFriendCommand", "/callbackAfterAddFriendCommand"]
    for hit in receiver.hits:
        assert verified(hit, config["secret"])["fromUserID"] == "alice"


def _docs_receiver() -> str:
    """The receiver of docs/webhooks.md, as the page shows it."""
    text = (Path(__file__).resolve().parents[2] / "docs" / "webhooks.md").read_text()
    block = text.split("<!-- receiver:start -->\n", 1)[1].split("<!-- receiver:end -->", 1)[0]
    return block.split("```python\n", 1)[1].rsplit("```", 1)[0]


async def test_the_receiver_in_the_docs_verifies_vetoes_and_masks(
        sq: TenantHandle, monkeypatch: pytest.MonkeyPatch) -> None:
    port = free_port()
    config = await set_config(sq, url=f"http://127.0.0.1:{port}/imhub",
                              beforeAddFriend={"enable": True, "failedContinue": False},
                              beforeSendSingleMsg={"enable": True, "failedContinue": False},
                              afterAddFriend={"enable": True})
    monkeypatch.setenv("IMHUB_WEBHOOK_SECRET", config["secret"])
    namespace: dict[str, Any] = {"__name__": "receiver"}
    exec(compile(_docs_receiver(), "docs/webhooks.md", "exec"), namespace)
    async with serve_app(namespace["app"], port):
        status, err, msg = await code(sq, "/friend/add_friend", {
            "fromUserID": "alice", "toUserID": "bob", "reqMsg": "cheap SPAM here"})
        assert (err, msg, status) == (7001, "friend request refused", 403)
        await sq.server.ok("/friend/add_friend", {"fromUserID": "alice", "toUserID": "bob",
                                                  "reqMsg": "hi"}, sq.admin)
        _, env = await send(sq, content='{"content": "oh darn it"}')
        assert env["errCode"] == 0
        [msg_row] = await stored(sq)
        assert orjson.loads(msg_row["content"]) == {"content": "oh **** it"}
        for _ in range(200):  # the after event of the accepted request
            if namespace["seen"]:
                break
            await asyncio.sleep(0.02)
        assert len(namespace["seen"]) == 1
        async with httpx.AsyncClient() as client:
            forged = await client.post(f"http://127.0.0.1:{port}/imhub/callbackX", json={},
                                       headers={"webhook-id": "msg_x",
                                                "webhook-timestamp": str(int(time.time())),
                                                "webhook-signature": "v1,AAAA"})
        assert forged.status_code == 401
