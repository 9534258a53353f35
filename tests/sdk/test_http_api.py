"""The HTTP wrappers, as the user: results are `data`, refusals typed with errCode."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from hub.sdk import HttpApi, ServerError, TokenError
from tests.conftest import TenantHandle


@pytest.fixture
async def apis(sqlite_tenant: TenantHandle) -> AsyncIterator[dict[str, HttpApi]]:
    tokens = await sqlite_tenant.users("alice", "bob", "carol")
    out = {u: HttpApi(sqlite_tenant.server.base_url, u, t)
           for u, t in zip(("alice", "bob", "carol"), tokens, strict=True)}
    yield out
    for api in out.values():
        await api.aclose()


async def test_friends_round_trip(apis: dict[str, HttpApi]) -> None:
    alice, bob = apis["alice"], apis["bob"]
    await alice.add_friend("bob", req_msg="hi")
    received = await bob.get_friend_apply_list()
    assert [r["fromUserID"] for r in received["friendRequests"]] == ["alice"]
    await bob.respond_friend_application("alice", accept=True, handle_msg="sure")
    assert [f["friendUser"]["userID"] for f in (await alice.get_friend_list())
            ["friendsInfo"]] == ["bob"]
    await alice.set_friend_remark("bob", "Bobby")
    assert (await alice.get_friend_list())["friendsInfo"][0]["remark"] == "Bobby"
    await alice.add_black("bob")
    assert (await alice.get_black_list())["total"] == 1
    await alice.remove_black("bob")
    await alice.delete_friend("bob")
    assert (await alice.get_friend_list())["total"] == 0
    await alice.update_self_info(nickname="Alice A.")
    assert (await bob.get_self_info())["userID"] == "bob"
    assert (await bob.get_users_info(["alice"]))["usersInfo"][0]["nickname"] == "Alice A."


async def test_groups_and_conversations(apis: dict[str, HttpApi]) -> None:
    alice, bob, carol = apis["alice"], apis["bob"], apis["carol"]
    created = await alice.create_group("team", ["bob"], group_id="g1", need_verification=1)
    assert created["groupInfo"]["groupID"] == "g1"
    await carol.join_group("g1")
    members = await alice.get_group_member_list("g1")
    assert {m["userID"] for m in members["members"]} == {"alice", "bob", "carol"}
    await alice.set_group_info("g1", groupName="the team")
    assert (await bob.get_groups_info(["g1"]))["groupInfos"][0]["groupName"] == "the team"
    await carol.quit_group("g1")
    joined = await bob.get_joined_group_list()
    assert [g["groupID"] for g in joined["groups"]] == ["g1"]

    sent = await bob.call("/msg/send_msg", {
        "sendID": "bob", "groupID": "g1", "sessionType": 3, "contentType": 101,
        "content": '{"content": "hello team"}'})
    convs = {c["conversationID"]: c for c in (await alice.get_all_conversations())
             ["conversations"]}
    assert convs["sg_g1"]["unreadCount"] == 1
    await alice.mark_msgs_as_read("sg_g1", [sent["seq"]])
    convs = {c["conversationID"]: c for c in (await alice.get_all_conversations())
             ["conversations"]}
    assert convs["sg_g1"]["unreadCount"] == 0
    await bob.revoke_msg("sg_g1", sent["seq"])
    assert (await alice.newest_seq())["maxSeqs"]["sg_g1"] >= sent["seq"]


async def test_refusals_carry_err_code_and_msg(sqlite_tenant: TenantHandle,
                                               apis: dict[str, HttpApi]) -> None:
    alice = apis["alice"]
    with pytest.raises(ServerError) as info:
        await alice.add_friend("nobody")
    assert (info.value.err_code, type(info.value)) == (1004, ServerError)
    assert info.value.err_msg
    with pytest.raises(ServerError) as info:  # a user token acts as its own user only
        await alice.call("/friend/get_friend_list", {"userID": "bob"})
    assert info.value.err_code == 1002
    with pytest.raises(ServerError) as info:
        await alice.dismiss_group("no-such-group")
    assert info.value.err_code == 1004

    await sqlite_tenant.login("alice", 1)  # logged in elsewhere: this token is kicked
    with pytest.raises(TokenError) as kicked:
        await alice.get_friend_list()
    assert kicked.value.kicked and kicked.value.err_code == 1502
