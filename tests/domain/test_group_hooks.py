"""Group hooks over a real server: in-process plugins change, veto and observe group actions."""

from __future__ import annotations

from typing import Any, ClassVar

from hub.bus import AfterEvent, BeforeCall, Verdict
from hub.plugin import Plugin, PluginConfig
from tests.conftest import TenantHandle
from tests.domain.test_groups import code, kinds, make_group, roles


class Scripted(Plugin):
    """Answers each before hook from a script and records every call and after-event."""

    hooks: ClassVar[frozenset[str] | None] = None

    def __init__(self, answers: dict[str, Verdict]) -> None:
        super().__init__(PluginConfig())
        self.answers = answers
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.events: list[tuple[str, dict[str, Any]]] = []

    async def before(self, call: BeforeCall) -> Verdict:
        self.calls.append((call.hook.name, dict(call.payload)))
        return self.answers.get(call.hook.name, Verdict.allow())

    async def after(self, event: AfterEvent) -> None:
        self.events.append((event.hook.name, dict(event.payload)))

    def called(self, name: str) -> list[dict[str, Any]]:
        return [p for n, p in self.calls if n == name]

    def seen(self, name: str) -> list[dict[str, Any]]:
        return [p for n, p in self.events if n == name]


def add(tenant: TenantHandle, answers: dict[str, Verdict] | None = None) -> Scripted:
    plugin = Scripted(answers or {})
    tenant.server.hub.bus.add(plugin)
    return plugin


async def test_before_create_group_changes_and_revalidates(tenant: TenantHandle) -> None:
    srv = tenant.server
    alice, _ = await tenant.users("alice", "bob")
    plugin = add(tenant, {"beforeCreateGroup": Verdict.allow({
        "groupName": "Renamed", "introduction": "by the backend", "ownerUserID": "bob"})})
    info = await make_group(tenant, "alice", members=("bob",))
    assert info["groupName"] == "Renamed" and info["introduction"] == "by the backend"
    assert info["ownerUserID"] == "alice"  # not a field the hook may change
    [stored] = (await srv.ok("/group/get_groups_info", {"groupIDs": ["g1"]},
                             alice))["groupInfos"]
    assert stored["groupName"] == "Renamed"
    [call] = plugin.called("beforeCreateGroup")
    assert call["groupName"] == "g1 name" and call["memberUserIDs"] == ["bob"]
    assert call["opUserID"] == "alice" and call["groupID"] == "g1"
    assert not plugin.called("beforeMemberJoinGroup")  # creation is not a member join
    await srv.hub.bus.drain()
    [after] = plugin.seen("afterCreateGroup")
    assert after["groupName"] == "Renamed" and after["memberUserIDs"] == ["bob"]
    assert not plugin.seen("afterJoinGroup")

    plugin.answers["beforeCreateGroup"] = Verdict.allow({"groupName": ""})
    assert await code(srv, "/group/create_group", {"ownerUserID": "alice", "groupInfo": {
        "groupID": "g2", "groupName": "fine"}}, alice) == 1001
    assert await code(srv, "/group/get_groups_info", {"groupIDs": ["g2"]}, alice) == 1004
    assert await kinds(tenant, "alice") == [1501]

    plugin.answers["beforeCreateGroup"] = Verdict.deny(4321, "not today")
    status, env = await srv.post("/group/create_group", {"ownerUserID": "alice", "groupInfo": {
        "groupID": "g3", "groupName": "fine"}}, alice)
    assert (status, env["errCode"], env["errMsg"]) == (403, 4321, "not today")
    assert await code(srv, "/group/get_groups_info", {"groupIDs": ["g3"]}, alice) == 1004


async def test_member_join_partial_veto_on_invite(tenant: TenantHandle) -> None:
    srv = tenant.server
    alice, *_ = await tenant.users("alice", "bob", "carol", "dave", "erin")
    await make_group(tenant, "alice")
    plugin = add(tenant, {"beforeMemberJoinGroup": Verdict.allow({"refusedUserIDs": ["carol"]}),
                          "beforeInviteUserToGroup": Verdict.allow(
                              {"refusedUserIDs": ["dave"]})})
    await srv.ok("/group/invite_user_to_group", {
        "groupID": "g1", "invitedUserIDs": ["bob", "carol", "dave"], "reason": "r"}, alice)
    assert set(await roles(tenant)) == {"alice", "bob"}
    [invite] = plugin.called("beforeInviteUserToGroup")
    assert invite == {"groupID": "g1", "invitedUserIDs": ["bob", "carol", "dave"],
                      "reason": "r", "inviterUserID": "alice"}
    [join] = plugin.called("beforeMemberJoinGroup")
    assert join == {"groupID": "g1", "userIDs": ["bob", "carol"], "joinSource": 2,
                    "inviterUserID": "alice", "opUserID": "alice"}
    assert await kinds(tenant, "bob") == [1509]
    assert await kinds(tenant, "carol") == [] and await kinds(tenant, "dave") == []
    await srv.hub.bus.drain()
    assert [e["userID"] for e in plugin.seen("afterJoinGroup")] == ["bob"]
    assert plugin.seen("afterInviteUserToGroup")[0]["invitedUserIDs"] == ["bob"]

    # Everyone refused: the request is denied and nothing changes.
    status, env = await srv.post("/group/invite_user_to_group", {
        "groupID": "g1", "invitedUserIDs": ["carol"]}, alice)
    assert (status, env["errCode"]) == (403, 5000)
    plugin.answers["beforeMemberJoinGroup"] = Verdict.deny(7001, "full")
    assert await code(srv, "/group/invite_user_to_group", {
        "groupID": "g1", "invitedUserIDs": ["erin"]}, alice) == 7001
    assert set(await roles(tenant)) == {"alice", "bob"}


async def test_member_join_hook_on_open_join_and_approval(tenant: TenantHandle) -> None:
    srv = tenant.server
    alice, bob, carol = await tenant.users("alice", "bob", "carol")
    await make_group(tenant, "alice", group_id="open", mode=1)
    await make_group(tenant, "alice", group_id="apply", mode=0)
    plugin = add(tenant, {"beforeMemberJoinGroup": Verdict.allow({"refusedUserIDs": ["bob"]})})

    # Open join of a refused user: denied, not a member.
    assert await code(srv, "/group/join_group", {"groupID": "open"}, bob) == 5000
    await srv.ok("/group/join_group", {"groupID": "open", "joinSource": 4}, carol)
    assert set(await roles(tenant, "open")) == {"alice", "carol"}
    assert [(c["userIDs"], c["joinSource"], c["opUserID"])
            for c in plugin.called("beforeMemberJoinGroup")] == [
        (["bob"], 3, "bob"), (["carol"], 4, "carol")]
    assert [c["userID"] for c in plugin.called("beforeApplyJoinGroup")] == ["bob", "carol"]

    # Approval of a refused applicant: denied, the application stays pending.
    await srv.ok("/group/join_group", {"groupID": "apply", "reqMessage": "pls"}, bob)
    assert await code(srv, "/group/group_application_response", {
        "groupID": "apply", "fromUserID": "bob", "handleResult": 1}, alice) == 5000
    recv = await srv.ok("/group/get_recv_group_applicationList", {"fromUserID": "alice"}, alice)
    assert [(r["userInfo"]["userID"], r["handleResult"]) for r in recv["groupRequests"]] == [
        ("bob", 0)]
    plugin.answers.clear()
    await srv.ok("/group/group_application_response", {
        "groupID": "apply", "fromUserID": "bob", "handleResult": 1}, alice)
    assert set(await roles(tenant, "apply")) == {"alice", "bob"}
    assert plugin.called("beforeMemberJoinGroup")[-1]["opUserID"] == "alice"
    await srv.hub.bus.drain()
    assert [(e["groupID"], e["userID"]) for e in plugin.seen("afterJoinGroup")] == [
        ("open", "carol"), ("apply", "bob")]
    [resp] = plugin.seen("afterGroupApplicationResponse")
    assert resp["fromUserID"] == "bob" and resp["handleResult"] == 1

    # beforeApplyJoinGroup's deny reaches the client as it is.
    plugin.answers["beforeApplyJoinGroup"] = Verdict.deny(0, "closed today")
    status, env = await srv.post("/group/join_group", {"groupID": "apply"}, carol)
    assert (status, env["errCode"], env["errMsg"]) == (403, 5000, "closed today")
    assert await kinds(tenant, "carol") == [1510]  # from the open join only


async def test_info_hooks_change_what_is_stored(tenant: TenantHandle) -> None:
    srv = tenant.server
    alice, bob = await tenant.users("alice", "bob")
    await make_group(tenant, "alice", members=("bob",))
    plugin = add(tenant, {
        "beforeSetGroupInfo": Verdict.allow({"notification": "from hook"}),
        "beforeSetGroupMemberInfo": Verdict.allow({"nickname": "Hooked"})})
    await srv.ok("/group/set_group_info", {"groupInfo": {"groupID": "g1",
                                                         "groupName": "New"}}, alice)
    [info] = (await srv.ok("/group/get_groups_info", {"groupIDs": ["g1"]},
                           bob))["groupInfos"]
    assert info["groupName"] == "New" and info["notification"] == "from hook"
    [call] = plugin.called("beforeSetGroupInfo")
    assert call["groupName"] == "New" and call["opUserID"] == "alice"
    await srv.ok("/group/set_group_member_info", {"members": [
        {"groupID": "g1", "userID": "bob", "ex": "e"}]}, bob)
    data = await srv.ok("/group/get_group_member_list", {"groupID": "g1"}, bob)
    bob_member = {m["userID"]: m for m in data["members"]}["bob"]
    assert bob_member["nickname"] == "Hooked" and bob_member["ex"] == "e"

    plugin.answers["beforeSetGroupInfo"] = Verdict.allow({"groupName": ""})
    assert await code(srv, "/group/set_group_info", {"groupInfo": {
        "groupID": "g1", "introduction": "x"}}, alice) == 1001
    plugin.answers["beforeSetGroupMemberInfo"] = Verdict.allow({"roleLevel": 100})
    assert await code(srv, "/group/set_group_member_info", {"members": [
        {"groupID": "g1", "userID": "bob", "ex": "f"}]}, bob) == 1001
    [info] = (await srv.ok("/group/get_groups_info", {"groupIDs": ["g1"]},
                           bob))["groupInfos"]
    assert info["groupName"] == "New" and info["introduction"] == ""
    await srv.hub.bus.drain()
    assert [e["groupName"] for e in plugin.seen("afterSetGroupInfo")] == ["New"]
    assert [e["nickname"] for e in plugin.seen("afterSetGroupMemberInfo")] == ["Hooked"]


async def test_after_events_of_group_changes(sqlite_tenant: TenantHandle) -> None:
    tenant, srv = sqlite_tenant, sqlite_tenant.server
    alice, _, carol = await tenant.users("alice", "bob", "carol")
    plugin = add(tenant)
    await make_group(tenant, "alice", members=("bob", "carol"))
    g = {"groupID": "g1"}
    await srv.ok("/group/mute_group_member", {**g, "userID": "bob", "mutedSeconds": 30}, alice)
    await srv.ok("/group/mute_group", g, alice)
    await srv.ok("/group/kick_group", {**g, "kickedUserIDs": ["bob"], "reason": "r"}, alice)
    await srv.ok("/group/transfer_group", {**g, "oldOwnerUserID": "alice",
                                           "newOwnerUserID": "carol"}, alice)
    await srv.ok("/group/quit_group", {**g, "userID": "alice"}, alice)
    await srv.ok("/group/dismiss_group", g, carol)
    await srv.hub.bus.drain()
    [mute] = plugin.seen("afterMuteGroupMember")
    assert mute["userID"] == "bob" and mute["mutedSeconds"] == 30 and mute["muteEndTime"] > 0
    assert plugin.seen("afterMuteGroup") == [{"groupID": "g1", "muted": True,
                                              "opUserID": "alice"}]
    assert plugin.seen("afterKickGroupMember") == [{
        "groupID": "g1", "kickedUserIDs": ["bob"], "reason": "r", "opUserID": "alice"}]
    assert plugin.seen("afterTransferGroupOwner") == [{
        "groupID": "g1", "oldOwnerUserID": "alice", "newOwnerUserID": "carol",
        "opUserID": "alice"}]
    assert plugin.seen("afterQuitGroup") == [{"groupID": "g1", "userID": "alice"}]
    assert plugin.seen("afterDismissGroup") == [{
        "groupID": "g1", "ownerUserID": "carol", "memberUserIDs": ["carol"],
        "opUserID": "carol"}]
