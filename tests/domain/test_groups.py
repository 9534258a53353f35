"""Group routes over a real server: success paths, permissions and notifications."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from sqlalchemy import select

from hub.clock import now_ms
from hub.db.models import Message
from tests.conftest import Server, TenantHandle


async def code(srv: Server, path: str, body: dict[str, Any], token: str) -> int:
    """The errCode of a request (its HTTP status is checked to be 4xx when it fails)."""
    status, env = await srv.post(path, body, token)
    assert (status == 200) == (env["errCode"] == 0), (path, status, env)
    assert status < 500, env
    return int(env["errCode"])


async def notes(tenant: TenantHandle, user_id: str) -> list[tuple[int, dict[str, Any]]]:
    """(contentType, tips) of every notification stored in n_USERID, in seq order."""
    async with tenant.server.hub.sessions() as s:
        rows = (await s.execute(select(Message).where(
            Message.tenant_id == tenant.tenant_id,
            Message.conversation_id == f"n_{user_id}").order_by(Message.seq))).scalars().all()
    assert [r.seq for r in rows] == list(range(1, len(rows) + 1))
    assert all(r.session_type == 4 for r in rows)
    return [(r.content_type, orjson.loads(orjson.loads(r.content)["detail"])) for r in rows]


async def kinds(tenant: TenantHandle, user_id: str) -> list[int]:
    return [ct for ct, _ in await notes(tenant, user_id)]


async def make_group(tenant: TenantHandle, owner: str, *, admins: tuple[str, ...] = (),
                     members: tuple[str, ...] = (), mode: int = 0, group_id: str = "g1",
                     token: str | None = None) -> dict[str, Any]:
    data = await tenant.server.ok("/group/create_group", {
        "ownerUserID": owner, "adminUserIDs": list(admins), "memberUserIDs": list(members),
        "groupInfo": {"groupID": group_id, "groupName": f"{group_id} name",
                      "needVerification": mode}}, token or tenant.tokens[owner])
    return dict(data["groupInfo"])


async def roles(tenant: TenantHandle, group_id: str = "g1") -> dict[str, int]:
    data = await tenant.server.ok("/group/get_group_member_list", {"groupID": group_id},
                                  tenant.admin)
    assert data["total"] == len(data["members"])
    return {m["userID"]: m["roleLevel"] for m in data["members"]}


async def test_create_group_and_read_it(tenant: TenantHandle) -> None:
    srv = tenant.server
    alice, bob, carol, dave = await tenant.users("alice", "bob", "carol", "dave")
    info = await make_group(tenant, "alice", admins=("bob",), members=("carol",))
    assert info["groupID"] == "g1" and info["groupName"] == "g1 name"
    assert info["ownerUserID"] == "alice" and info["creatorUserID"] == "alice"
    assert info["memberCount"] == 3 and info["status"] == 0 and info["needVerification"] == 0

    got = await srv.ok("/group/get_groups_info", {"groupIDs": ["g1"]}, carol)
    assert got["groupInfos"] == [info]
    assert (await srv.ok("/group/get_groups_info", {"groupIDs": ["g1"]}, tenant.admin)
            )["groupInfos"] == [info]
    # The contract's "member/admin": a user outside the group is refused.
    assert await code(srv, "/group/get_groups_info", {"groupIDs": ["g1"]}, dave) == 1201
    members = await srv.ok("/group/get_group_member_list", {"groupID": "g1"}, carol)
    assert members["total"] == 3
    assert [(m["userID"], m["roleLevel"]) for m in members["members"]] == [
        ("alice", 100), ("bob", 60), ("carol", 20)]
    assert members["members"][1]["nickname"] == "Bob"  # the user's, no group nickname set
    admins_only = await srv.ok("/group/get_group_member_list",
                               {"groupID": "g1", "filter": 2}, alice)
    assert [m["userID"] for m in admins_only["members"]] == ["bob"]
    paged = await srv.ok("/group/get_group_member_list", {
        "groupID": "g1", "pagination": {"pageNumber": 2, "showNumber": 2}}, alice)
    assert paged["total"] == 3 and [m["userID"] for m in paged["members"]] == ["carol"]
    joined = await srv.ok("/group/get_joined_group_list", {"fromUserID": "carol"}, carol)
    assert joined["total"] == 1 and joined["groups"][0]["groupID"] == "g1"
    assert (await srv.ok("/group/get_joined_group_list", {"fromUserID": "dave"},
                         dave))["total"] == 0

    for uid in ("alice", "bob", "carol"):
        [(ct, tips)] = await notes(tenant, uid)
        assert ct == 1501
        assert tips["groupID"] == "g1" and tips["opUserID"] == "alice"
        assert [m["userID"] for m in tips["memberList"]] == ["alice", "bob", "carol"]
    assert await notes(tenant, "dave") == []

    # A generated groupID when none is given.
    gen = await srv.ok("/group/create_group", {"ownerUserID": "dave", "groupInfo": {
        "groupName": "solo"}}, dave)
    assert gen["groupInfo"]["groupID"] and gen["groupInfo"]["memberCount"] == 1

    async def create(body: dict[str, Any], token: str = alice) -> int:
        return await code(srv, "/group/create_group", {
            "ownerUserID": "alice", "groupInfo": {"groupID": "g2", "groupName": "x"},
            **body}, token)

    assert await create({}, bob) == 1002  # bob's token acting as alice
    assert await create({"groupInfo": {"groupID": "g1", "groupName": "x"}}) == 1003
    assert await create({"memberUserIDs": ["nobody"]}) == 1004
    assert await create({"memberUserIDs": ["bob"], "adminUserIDs": ["bob"]}) == 1001
    assert await create({"memberUserIDs": ["alice"]}) == 1001
    assert await create({"groupInfo": {"groupID": "g2", "groupName": "  "}}) == 1001
    assert await create({"groupInfo": {"groupID": "g2", "groupName": "x",
                                       "needVerification": 7}}) == 1001
    assert await code(srv, "/group/get_groups_info", {"groupIDs": ["g1", "g2"]}, alice) == 1004
    assert await code(srv, "/group/get_group_member_list", {"groupID": "g1"}, dave) == 1201
    assert await code(srv, "/group/get_group_member_list", {"groupID": "zz"}, alice) == 1004
    assert await code(srv, "/group/get_joined_group_list", {"fromUserID": "bob"}, alice) == 1002
    assert await code(srv, "/group/get_recv_group_applicationList",
                      {"fromUserID": "bob"}, alice) == 1002


async def test_set_group_info(tenant: TenantHandle) -> None:
    srv = tenant.server
    alice, bob, carol, dave = await tenant.users("alice", "bob", "carol", "dave")
    await make_group(tenant, "alice", admins=("bob",), members=("carol",))
    await srv.ok("/group/set_group_info", {"groupInfo": {
        "groupID": "g1", "groupName": "renamed", "notification": "read me",
        "needVerification": 1}}, bob)
    [info] = (await srv.ok("/group/get_groups_info", {"groupIDs": ["g1"]}, alice))["groupInfos"]
    assert info["groupName"] == "renamed" and info["notification"] == "read me"
    assert info["needVerification"] == 1 and info["introduction"] == ""
    assert info["notificationUserID"] == "bob" and info["notificationUpdateTime"] > 0
    for uid in ("alice", "bob", "carol"):
        ct, tips = (await notes(tenant, uid))[-1]
        assert ct == 1502 and tips["opUserID"] == "bob"
        assert tips["group"]["groupName"] == "renamed"

    def body(**fields: Any) -> dict[str, Any]:
        return {"groupInfo": {"groupID": "g1", **fields}}

    assert await code(srv, "/group/set_group_info", body(groupName="x"), carol) == 1002
    assert await code(srv, "/group/set_group_info", body(groupName="x"), dave) == 1201
    assert await code(srv, "/group/set_group_info", body(), alice) == 1001
    assert await code(srv, "/group/set_group_info", body(groupName=""), alice) == 1001
    assert await code(srv, "/group/set_group_info", body(groupName=5), alice) == 1001
    assert await code(srv, "/group/set_group_info",
                      {"groupInfo": {"groupID": "nope", "groupName": "x"}}, alice) == 1004
    [info] = (await srv.ok("/group/get_groups_info", {"groupIDs": ["g1"]}, alice))["groupInfos"]
    assert info["groupName"] == "renamed"


async def test_join_open_and_by_application(tenant: TenantHandle) -> None:
    srv = tenant.server
    alice, bob, carol, dave, erin = await tenant.users("alice", "bob", "carol", "dave", "erin")
    await make_group(tenant, "alice", admins=("bob",), members=("carol",), group_id="open",
                     mode=1)
    await make_group(tenant, "alice", admins=("bob",), members=("carol",), group_id="apply")
    await make_group(tenant, "alice", group_id="closed", mode=2)

    # Mode 1: anyone joins at once; everyone (the newcomer too) gets 1510.
    await srv.ok("/group/join_group", {"groupID": "open", "reqMessage": "hi",
                                       "joinSource": 3}, dave)
    assert (await roles(tenant, "open"))["dave"] == 20
    for uid in ("alice", "carol", "dave"):
        ct, tips = (await notes(tenant, uid))[-1]
        assert ct == 1510 and tips["entrantUser"]["userID"] == "dave"
    assert await code(srv, "/group/join_group", {"groupID": "open"}, dave) == 1003
    assert await code(srv, "/group/join_group", {"groupID": "open", "userID": "erin"},
                      dave) == 1002

    # Mode 2: an application is refused.
    assert await code(srv, "/group/join_group", {"groupID": "closed"}, dave) == 1002

    # Mode 0: an application, seen by the owner and admins; 1503 to them and the applicant.
    await srv.ok("/group/join_group", {"groupID": "apply", "reqMessage": "let me in"}, dave)
    await srv.ok("/group/join_group", {"groupID": "apply", "reqMessage": "me too"}, erin)
    assert "dave" not in await roles(tenant, "apply")
    for uid in ("alice", "bob", "dave"):
        ct, tips = (await notes(tenant, uid))[-1 if uid == "dave" else -2]
        assert ct == 1503 and tips["applicant"]["userID"] == "dave"
        assert tips["reqMsg"] == "let me in"
    assert 1503 not in await kinds(tenant, "carol")
    for uid, tok in (("alice", alice), ("bob", bob)):
        recv = await srv.ok("/group/get_recv_group_applicationList", {"fromUserID": uid}, tok)
        assert recv["total"] == 2
        assert [(r["userInfo"]["userID"], r["groupInfo"]["groupID"], r["handleResult"])
                for r in recv["groupRequests"]] == [("erin", "apply", 0), ("dave", "apply", 0)]
    assert (await srv.ok("/group/get_recv_group_applicationList", {"fromUserID": "carol"},
                         carol))["total"] == 0

    answer = {"groupID": "apply", "fromUserID": "dave", "handleResult": 1, "handledMsg": "ok"}
    assert await code(srv, "/group/group_application_response", answer, carol) == 1002
    assert await code(srv, "/group/group_application_response", answer, erin) == 1201
    await srv.ok("/group/group_application_response", answer, bob)
    assert (await roles(tenant, "apply"))["dave"] == 20
    dave_kinds = await kinds(tenant, "dave")
    assert dave_kinds[-2:] == [1505, 1510]
    assert (await kinds(tenant, "alice"))[-2:] == [1505, 1510]
    assert (await kinds(tenant, "carol"))[-1] == 1510
    assert await code(srv, "/group/group_application_response", answer, bob) == 1004

    refuse = {"groupID": "apply", "fromUserID": "erin", "handleResult": -1,
              "handledMsg": "no"}
    await srv.ok("/group/group_application_response", refuse, alice)
    assert "erin" not in await roles(tenant, "apply")
    ct, tips = (await notes(tenant, "erin"))[-1]
    assert ct == 1506 and tips["handleMsg"] == "no" and tips["opUserID"] == "alice"
    assert (await kinds(tenant, "bob"))[-1] == 1506
    recv = await srv.ok("/group/get_recv_group_applicationList", {"fromUserID": "alice"}, alice)
    assert {r["userInfo"]["userID"]: (r["handleResult"], r["handleUserID"])
            for r in recv["groupRequests"]} == {"dave": (1, "bob"), "erin": (-1, "alice")}
    # Re-applying after a refusal opens the application again.
    await srv.ok("/group/join_group", {"groupID": "apply", "reqMessage": "again"}, erin)
    recv = await srv.ok("/group/get_recv_group_applicationList", {"fromUserID": "alice"}, alice)
    assert recv["groupRequests"][0]["userInfo"]["userID"] == "erin"
    assert recv["groupRequests"][0]["handleResult"] == 0
    assert await code(srv, "/group/group_application_response",
                      {**answer, "handleResult": 0}, bob) == 1001


async def test_invitations(tenant: TenantHandle) -> None:
    srv = tenant.server
    alice, bob, carol, *_ = await tenant.users("alice", "bob", "carol", "dave", "erin",
                                               "frank", "grace")
    await make_group(tenant, "alice", admins=("bob",), members=("carol",), group_id="g0")
    await make_group(tenant, "alice", admins=("bob",), members=("carol",), group_id="g2",
                     mode=2)

    # Mode 0: a plain member's invitation enters the invitees at once.
    await srv.ok("/group/invite_user_to_group", {"groupID": "g0", "invitedUserIDs": ["dave"],
                                                 "reason": "friend of mine"}, carol)
    member = {m["userID"]: m for m in (await srv.ok(
        "/group/get_group_member_list", {"groupID": "g0"}, carol))["members"]}["dave"]
    assert member["roleLevel"] == 20 and member["inviterUserID"] == "carol"
    assert member["joinSource"] == 2
    for uid in ("alice", "carol", "dave"):
        ct, tips = (await notes(tenant, uid))[-1]
        assert ct == 1509 and tips["opUserID"] == "carol"
        assert [u["userID"] for u in tips["invitedUserList"]] == ["dave"]

    # Mode 2: a plain member's invitation becomes applications; an admin's adds directly.
    await srv.ok("/group/invite_user_to_group", {"groupID": "g2",
                                                 "invitedUserIDs": ["erin", "frank"]}, carol)
    assert set(await roles(tenant, "g2")) == {"alice", "bob", "carol"}
    recv = await srv.ok("/group/get_recv_group_applicationList", {"fromUserID": "bob"}, bob)
    assert {(r["userInfo"]["userID"], r["inviterUserID"], r["joinSource"])
            for r in recv["groupRequests"]} == {("erin", "carol", 2), ("frank", "carol", 2)}
    assert (await kinds(tenant, "erin"))[-1] == 1503
    await srv.ok("/group/group_application_response", {
        "groupID": "g2", "fromUserID": "erin", "handleResult": 1}, alice)
    assert (await roles(tenant, "g2"))["erin"] == 20
    await srv.ok("/group/invite_user_to_group", {"groupID": "g2",
                                                 "invitedUserIDs": ["grace"]}, bob)
    assert (await roles(tenant, "g2"))["grace"] == 20
    # frank, with carol's invitation still pending, is invited by an admin and enters:
    # his application is settled with it, and nobody can accept it afterwards.
    await srv.ok("/group/invite_user_to_group", {"groupID": "g2",
                                                 "invitedUserIDs": ["frank"]}, bob)
    assert (await roles(tenant, "g2"))["frank"] == 20
    recv = await srv.ok("/group/get_recv_group_applicationList", {"fromUserID": "bob"}, bob)
    assert {r["userInfo"]["userID"]: r["handleResult"] for r in recv["groupRequests"]} == {
        "erin": 1, "frank": 1}
    assert await code(srv, "/group/group_application_response", {
        "groupID": "g2", "fromUserID": "frank", "handleResult": 1}, alice) == 1004

    def invite(*uids: str, group: str = "g0") -> dict[str, Any]:
        return {"groupID": group, "invitedUserIDs": list(uids)}

    assert await code(srv, "/group/invite_user_to_group", invite("carol"), alice) == 1003
    assert await code(srv, "/group/invite_user_to_group", invite("erin", "erin"), alice) == 1001
    assert await code(srv, "/group/invite_user_to_group", invite(), alice) == 1001
    assert await code(srv, "/group/invite_user_to_group", invite("ghost"), alice) == 1004
    assert await code(srv, "/group/invite_user_to_group", invite("erin"),
                      tenant.tokens["frank"]) == 1201
    assert await code(srv, "/group/invite_user_to_group", invite("erin", group="nope"),
                      alice) == 1004
    # Someone who has blocked the inviter cannot be invited by them.
    await srv.ok("/friend/add_black", {"ownerUserID": "erin", "blackUserID": "carol"},
                 tenant.tokens["erin"])
    assert await code(srv, "/group/invite_user_to_group", invite("frank", "erin"),
                      carol) == 1301
    assert "frank" not in await roles(tenant, "g0")
    await srv.ok("/group/invite_user_to_group", invite("erin"), alice)
    assert "erin" in await roles(tenant, "g0")


async def test_kick_quit_and_transfer(tenant: TenantHandle) -> None:
    srv = tenant.server
    alice, bob, carol, dave, _ = await tenant.users("alice", "bob", "carol", "dave", "erin")
    await make_group(tenant, "alice", admins=("bob", "carol"), members=("dave", "erin"))

    def kick(*uids: str) -> dict[str, Any]:
        return {"groupID": "g1", "kickedUserIDs": list(uids), "reason": "spam"}

    assert await code(srv, "/group/kick_group", kick("erin"), dave) == 1002
    assert await code(srv, "/group/kick_group", kick("carol"), bob) == 1002
    assert await code(srv, "/group/kick_group", kick("alice"), bob) == 1002
    assert await code(srv, "/group/kick_group", kick("bob"), bob) == 1001
    assert await code(srv, "/group/kick_group", kick("erin", "nobody"), bob) == 1201
    assert await code(srv, "/group/kick_group", kick("erin", "carol"), bob) == 1002
    assert set(await roles(tenant)) == {"alice", "bob", "carol", "dave", "erin"}
    await srv.ok("/group/kick_group", kick("erin"), bob)
    assert "erin" not in await roles(tenant)
    for uid in ("alice", "dave", "erin"):
        ct, tips = (await notes(tenant, uid))[-1]
        assert ct == 1508 and tips["opUserID"] == "bob"
        assert [u["userID"] for u in tips["kickedUserList"]] == ["erin"]
    await srv.ok("/group/kick_group", kick("carol"), alice)
    assert "carol" not in await roles(tenant)
    assert await code(srv, "/group/kick_group", kick("dave"), carol) == 1201

    # Quitting: a member leaves; the owner must transfer first.
    assert await code(srv, "/group/quit_group", {"groupID": "g1", "userID": "dave"},
                      bob) == 1002
    await srv.ok("/group/quit_group", {"groupID": "g1", "userID": "dave"}, dave)
    assert set(await roles(tenant)) == {"alice", "bob"}
    for uid in ("alice", "bob", "dave"):
        ct, tips = (await notes(tenant, uid))[-1]
        assert ct == 1504 and tips["quitUser"]["userID"] == "dave"
    assert await code(srv, "/group/quit_group", {"groupID": "g1", "userID": "dave"},
                      dave) == 1201
    assert await code(srv, "/group/quit_group", {"groupID": "g1", "userID": "alice"},
                      alice) == 1002

    transfer = {"groupID": "g1", "oldOwnerUserID": "alice", "newOwnerUserID": "bob"}
    assert await code(srv, "/group/transfer_group", transfer, bob) == 1002
    assert await code(srv, "/group/transfer_group",
                      {**transfer, "oldOwnerUserID": "bob", "newOwnerUserID": "alice"},
                      bob) == 1002
    assert await code(srv, "/group/transfer_group", {**transfer, "newOwnerUserID": "dave"},
                      alice) == 1201
    assert await code(srv, "/group/transfer_group", {**transfer, "newOwnerUserID": "alice"},
                      alice) == 1001
    await srv.ok("/group/transfer_group", transfer, alice)
    assert await roles(tenant) == {"alice": 20, "bob": 100}
    [info] = (await srv.ok("/group/get_groups_info", {"groupIDs": ["g1"]}, bob))["groupInfos"]
    assert info["ownerUserID"] == "bob"
    for uid in ("alice", "bob"):
        ct, tips = (await notes(tenant, uid))[-1]
        assert ct == 1507 and tips["newGroupOwner"]["userID"] == "bob"
        assert tips["oldGroupOwner"] == "alice"
    await srv.ok("/group/quit_group", {"groupID": "g1", "userID": "alice"}, alice)
    assert await roles(tenant) == {"bob": 100}


async def test_mutes(tenant: TenantHandle) -> None:
    srv = tenant.server
    alice, bob, carol, dave = await tenant.users("alice", "bob", "carol", "dave")
    await make_group(tenant, "alice", admins=("bob",), members=("carol", "dave"))

    def members() -> Any:
        return srv.ok("/group/get_group_member_list", {"groupID": "g1"}, alice)

    before = now_ms()
    await srv.ok("/group/mute_group_member", {"groupID": "g1", "userID": "carol",
                                              "mutedSeconds": 60}, bob)
    end = {m["userID"]: m["muteEndTime"] for m in (await members())["members"]}
    assert before + 60_000 <= end["carol"] <= now_ms() + 60_000 and end["dave"] == 0
    ct, tips = (await notes(tenant, "dave"))[-1]
    assert ct == 1512 and tips["mutedUser"]["userID"] == "carol" and tips["mutedSeconds"] == 60
    await srv.ok("/group/cancel_mute_group_member", {"groupID": "g1", "userID": "carol"}, alice)
    assert {m["userID"]: m["muteEndTime"] for m in (await members())["members"]}["carol"] == 0
    assert (await kinds(tenant, "carol"))[-1] == 1513
    await srv.ok("/group/mute_group_member", {"groupID": "g1", "userID": "dave",
                                              "mutedSeconds": 10}, alice)
    await srv.ok("/group/mute_group_member", {"groupID": "g1", "userID": "dave",
                                              "mutedSeconds": 0}, alice)
    assert {m["userID"]: m["muteEndTime"] for m in (await members())["members"]}["dave"] == 0
    assert (await kinds(tenant, "dave"))[-2:] == [1512, 1513]

    def mute(uid: str, seconds: Any = 60) -> dict[str, Any]:
        return {"groupID": "g1", "userID": uid, "mutedSeconds": seconds}

    assert await code(srv, "/group/mute_group_member", mute("dave"), carol) == 1002
    assert await code(srv, "/group/mute_group_member", mute("alice"), bob) == 1002
    assert await code(srv, "/group/mute_group_member", mute("bob"), bob) == 1002
    assert await code(srv, "/group/mute_group_member", mute("nobody"), bob) == 1201
    assert await code(srv, "/group/mute_group_member", mute("dave", -1), bob) == 1001
    assert await code(srv, "/group/mute_group_member", mute("dave", "60"), bob) == 1001
    assert await code(srv, "/group/mute_group_member", {"groupID": "g1", "userID": "dave"},
                      bob) == 1001
    assert await code(srv, "/group/cancel_mute_group_member", mute("dave"), carol) == 1002

    assert await code(srv, "/group/mute_group", {"groupID": "g1"}, carol) == 1002
    await srv.ok("/group/mute_group", {"groupID": "g1"}, bob)
    [info] = (await srv.ok("/group/get_groups_info", {"groupIDs": ["g1"]}, alice))["groupInfos"]
    assert info["status"] == 3
    assert (await kinds(tenant, "carol"))[-1] == 1514
    assert await code(srv, "/group/cancel_mute_group", {"groupID": "g1"}, dave) == 1002
    await srv.ok("/group/cancel_mute_group", {"groupID": "g1"}, alice)
    [info] = (await srv.ok("/group/get_groups_info", {"groupIDs": ["g1"]}, alice))["groupInfos"]
    assert info["status"] == 0
    ct, tips = (await notes(tenant, "carol"))[-1]
    assert ct == 1515 and tips["opUserID"] == "alice"


async def test_set_group_member_info(tenant: TenantHandle) -> None:
    srv = tenant.server
    alice, bob, carol, dave = await tenant.users("alice", "bob", "carol", "dave")
    await make_group(tenant, "alice", admins=("bob",), members=("carol", "dave"))
    await make_group(tenant, "bob", members=("carol",), group_id="g2")

    def body(*members: dict[str, Any]) -> dict[str, Any]:
        return {"members": [{"groupID": "g1", **m} for m in members]}

    await srv.ok("/group/set_group_member_info", body({"userID": "carol", "nickname": "Cee",
                                                       "ex": "x"}), carol)
    await srv.ok("/group/set_group_member_info", body({"userID": "dave", "faceURL": "f"}), bob)
    await srv.ok("/group/set_group_member_info", body({"userID": "carol", "roleLevel": 60},
                                                      {"userID": "bob", "roleLevel": 20}), alice)
    data = await srv.ok("/group/get_group_member_list", {"groupID": "g1"}, alice)
    by_id = {m["userID"]: m for m in data["members"]}
    assert by_id["carol"]["nickname"] == "Cee" and by_id["carol"]["ex"] == "x"
    assert by_id["carol"]["roleLevel"] == 60 and by_id["bob"]["roleLevel"] == 20
    assert by_id["dave"]["faceURL"] == "f" and by_id["dave"]["operatorUserID"] == "bob"
    ct, tips = (await notes(tenant, "dave"))[-1]
    assert ct == 1516 and tips["changedUser"]["userID"] == "bob"
    assert (await kinds(tenant, "dave")).count(1516) == 4

    async def refused(token: str, *members: dict[str, Any]) -> int:
        return await code(srv, "/group/set_group_member_info", body(*members), token)

    assert await refused(dave, {"userID": "bob", "nickname": "n"}) == 1002
    assert await refused(bob, {"userID": "bob", "roleLevel": 60}) == 1002
    assert await refused(carol, {"userID": "dave", "roleLevel": 60}) == 1002
    assert await refused(carol, {"userID": "alice", "nickname": "n"}) == 1002
    assert await refused(alice, {"userID": "alice", "roleLevel": 20}) == 1002
    assert await refused(alice, {"userID": "dave", "roleLevel": 100}) == 1001
    assert await refused(alice, {"userID": "dave"}) == 1001
    assert await refused(alice, {"userID": "nobody", "nickname": "n"}) == 1201
    assert await refused(dave, {"userID": "dave", "nickname": "D"},
                         {"userID": "carol", "nickname": "n"}) == 1002
    assert await refused(dave, {"userID": "dave", "nickname": "D"},
                         {"userID": "dave", "ex": "e"}) == 1001
    # All or nothing: dave's own change in the refused request above was not stored.
    by_id = {m["userID"]: m for m in (await srv.ok(
        "/group/get_group_member_list", {"groupID": "g1"}, alice))["members"]}
    assert by_id["dave"]["nickname"] == "Dave"
    # Several groups in one request.
    await srv.ok("/group/set_group_member_info", {"members": [
        {"groupID": "g1", "userID": "carol", "nickname": "C1"},
        {"groupID": "g2", "userID": "carol", "nickname": "C2"}]}, carol)
    g2 = await srv.ok("/group/get_group_member_list", {"groupID": "g2"}, carol)
    assert {m["userID"]: m["nickname"] for m in g2["members"]}["carol"] == "C2"


async def test_dismissed_group_refuses_every_change(tenant: TenantHandle) -> None:
    srv = tenant.server
    alice, bob, carol, dave = await tenant.users("alice", "bob", "carol", "dave")
    await make_group(tenant, "alice", admins=("bob",), members=("carol",))
    await srv.ok("/group/join_group", {"groupID": "g1"}, dave)  # a pending application
    assert await code(srv, "/group/dismiss_group", {"groupID": "g1"}, bob) == 1002
    assert await code(srv, "/group/dismiss_group", {"groupID": "g1"}, dave) == 1201
    await srv.ok("/group/dismiss_group", {"groupID": "g1"}, alice)
    for uid in ("alice", "bob", "carol"):
        ct, tips = (await notes(tenant, uid))[-1]
        assert ct == 1511 and tips["opUserID"] == "alice"
    [info] = (await srv.ok("/group/get_groups_info", {"groupIDs": ["g1"]}, carol))["groupInfos"]
    assert info["status"] == 2
    assert (await srv.ok("/group/get_joined_group_list", {"fromUserID": "carol"},
                         carol))["total"] == 0
    assert (await srv.ok("/group/get_recv_group_applicationList", {"fromUserID": "alice"},
                         alice))["total"] == 0

    g = {"groupID": "g1"}
    changes: list[tuple[str, dict[str, Any], str]] = [
        ("/group/set_group_info", {"groupInfo": {**g, "groupName": "x"}}, alice),
        ("/group/join_group", {**g, "userID": "dave"}, dave),
        ("/group/group_application_response", {**g, "fromUserID": "dave", "handleResult": 1},
         alice),
        ("/group/invite_user_to_group", {**g, "invitedUserIDs": ["dave"]}, alice),
        ("/group/kick_group", {**g, "kickedUserIDs": ["carol"]}, alice),
        ("/group/quit_group", {**g, "userID": "carol"}, carol),
        ("/group/transfer_group", {**g, "oldOwnerUserID": "alice", "newOwnerUserID": "bob"},
         alice),
        ("/group/dismiss_group", g, alice),
        ("/group/mute_group_member", {**g, "userID": "carol", "mutedSeconds": 5}, alice),
        ("/group/cancel_mute_group_member", {**g, "userID": "carol"}, alice),
        ("/group/mute_group", g, alice),
        ("/group/cancel_mute_group", g, alice),
        ("/group/set_group_member_info", {"members": [{**g, "userID": "carol",
                                                       "nickname": "n"}]}, carol),
    ]
    for path, body, token in changes:
        assert await code(srv, path, body, token) == 1203, path
        assert await code(srv, path, body, tenant.admin) == 1203, path
    assert await roles(tenant) == {"alice": 100, "bob": 60, "carol": 20}


async def test_tenant_admin_token_has_owner_rights(sqlite_tenant: TenantHandle) -> None:
    tenant, srv = sqlite_tenant, sqlite_tenant.server
    adm = tenant.admin
    _, bob, _, _ = await tenant.users("alice", "bob", "carol", "dave")
    info = await make_group(tenant, "alice", admins=("bob",), members=("carol",), mode=1,
                            token=adm)
    assert info["ownerUserID"] == "alice" and info["creatorUserID"] == "alice"
    await srv.ok("/group/set_group_info", {"groupInfo": {"groupID": "g1",
                                                         "introduction": "i"}}, adm)
    ct, tips = (await notes(tenant, "carol"))[-1]
    assert ct == 1502 and tips["opUserID"] == "alice"  # the admin acts as the owner
    await srv.ok("/group/set_group_member_info", {"members": [
        {"groupID": "g1", "userID": "carol", "roleLevel": 60}]}, adm)
    await srv.ok("/group/mute_group_member", {"groupID": "g1", "userID": "bob",
                                              "mutedSeconds": 5}, adm)
    await srv.ok("/group/kick_group", {"groupID": "g1", "kickedUserIDs": ["bob"]}, adm)
    assert await code(srv, "/group/kick_group", {"groupID": "g1", "kickedUserIDs": ["alice"]},
                      adm) == 1002
    # The admin is not held to the blacklist, and joins users it names.
    await srv.ok("/friend/add_black", {"ownerUserID": "bob", "blackUserID": "alice"}, bob)
    await srv.ok("/group/invite_user_to_group", {"groupID": "g1", "invitedUserIDs": ["bob"]},
                 adm)
    assert await code(srv, "/group/join_group", {"groupID": "g1"}, adm) == 1001
    await srv.ok("/group/join_group", {"groupID": "g1", "userID": "dave"}, adm)
    await srv.ok("/group/quit_group", {"groupID": "g1", "userID": "dave"}, adm)
    assert await roles(tenant) == {"alice": 100, "carol": 60, "bob": 20}
    assert await code(srv, "/group/transfer_group", {
        "groupID": "g1", "oldOwnerUserID": "carol", "newOwnerUserID": "bob"}, adm) == 1002
    await srv.ok("/group/transfer_group", {
        "groupID": "g1", "oldOwnerUserID": "alice", "newOwnerUserID": "carol"}, adm)
    for uid in ("alice", "bob", "carol"):
        assert (await srv.ok("/group/get_joined_group_list", {"fromUserID": uid},
                             adm))["total"] == 1
    assert (await srv.ok("/group/get_recv_group_applicationList", {"fromUserID": "carol"},
                         adm))["total"] == 0
    await srv.ok("/group/dismiss_group", {"groupID": "g1"}, adm)
    assert (await kinds(tenant, "alice"))[-1] == 1511


async def test_other_tenants_groups_are_not_found(
        sqlite_tenant: TenantHandle, make_tenant: Any) -> None:
    tenant, srv = sqlite_tenant, sqlite_tenant.server
    await tenant.users("alice", "bob")
    await make_group(tenant, "alice", members=("bob",), mode=1)
    other: TenantHandle = await make_tenant(srv)
    (mallory,) = await other.users("mallory")
    g = {"groupID": "g1"}
    probes: list[tuple[str, dict[str, Any]]] = [
        ("/group/get_groups_info", {"groupIDs": ["g1"]}),
        ("/group/get_group_member_list", g),
        ("/group/set_group_info", {"groupInfo": {**g, "groupName": "x"}}),
        ("/group/join_group", {**g, "userID": "mallory"}),
        ("/group/group_application_response", {**g, "fromUserID": "mallory",
                                               "handleResult": 1}),
        ("/group/invite_user_to_group", {**g, "invitedUserIDs": ["mallory"]}),
        ("/group/kick_group", {**g, "kickedUserIDs": ["bob"]}),
        ("/group/quit_group", {**g, "userID": "mallory"}),
        ("/group/transfer_group", {**g, "oldOwnerUserID": "mallory",
                                   "newOwnerUserID": "mallory2"}),
        ("/group/dismiss_group", g),
        ("/group/mute_group_member", {**g, "userID": "bob", "mutedSeconds": 5}),
        ("/group/cancel_mute_group_member", {**g, "userID": "bob"}),
        ("/group/mute_group", g),
        ("/group/cancel_mute_group", g),
        ("/group/set_group_member_info", {"members": [{**g, "userID": "mallory",
                                                       "nickname": "m"}]}),
    ]
    for path, body in probes:
        for token in (mallory, other.admin):
            assert await code(srv, path, body, token) == 1004, (path, token)
    # Group IDs are per tenant: the other tenant may use the same one.
    await make_group(other, "mallory")
    assert set(await roles(tenant)) == {"alice", "bob"}
    assert await roles(other) == {"mallory": 100}


async def test_concurrent_joins_and_creates(tenant: TenantHandle) -> None:
    srv = tenant.server
    names = [f"u{i}" for i in range(8)]
    await tenant.users("alice", *names)
    await make_group(tenant, "alice", mode=1)
    results = await asyncio.gather(*(srv.post("/group/join_group", {"groupID": "g1"},
                                              tenant.tokens[u]) for u in names))
    assert [env["errCode"] for _, env in results] == [0] * len(names)
    assert set(await roles(tenant)) == {"alice", *names}
    # Every member's notifications are gap-free (notes() checks) and end with the joins.
    assert (await kinds(tenant, "alice")).count(1510) == len(names)
    assert (await kinds(tenant, "u0"))[0] == 1510

    creates = await asyncio.gather(*(srv.post("/group/create_group", {
        "ownerUserID": u, "groupInfo": {"groupID": "race", "groupName": u}},
        tenant.tokens[u]) for u in names))
    assert sorted(env["errCode"] for _, env in creates) == [0] + [1003] * (len(names) - 1)
    assert len(await roles(tenant, "race")) == 1
