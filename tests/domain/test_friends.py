from __future__ import annotations

from tests.conftest import TenantHandle


async def test_friend_request_agree_and_list(tenant: TenantHandle) -> None:
    srv = tenant.server
    alice, bob = await tenant.users("alice", "bob")
    await srv.ok("/friend/add_friend", {"fromUserID": "alice", "toUserID": "bob",
                                        "reqMsg": "hi"}, alice)
    recv = await srv.ok("/friend/get_friend_apply_list", {"userID": "bob"}, bob)
    assert recv["total"] == 1
    assert recv["friendRequests"][0]["fromUserID"] == "alice"
    assert recv["friendRequests"][0]["reqMsg"] == "hi"
    sent = await srv.ok("/friend/get_self_friend_apply_list", {"userID": "alice"}, alice)
    assert [r["toUserID"] for r in sent["friendRequests"]] == ["bob"]
    await srv.ok("/friend/add_friend_response", {"fromUserID": "alice", "toUserID": "bob",
                                                 "handleResult": 1, "handleMsg": "ok"}, bob)
    for me, tok, other in (("alice", alice, "bob"), ("bob", bob, "alice")):
        friends = await srv.ok("/friend/get_friend_list", {"userID": me}, tok)
        assert friends["total"] == 1
        assert friends["friendsInfo"][0]["friendUser"]["userID"] == other


async def _code(t: TenantHandle, path: str, body: dict[str, object]) -> tuple[int, str]:
    _, env = await t.server.post(path, body, t.admin)
    return env["errCode"], env["errMsg"]


async def _friends(t: TenantHandle, user: str) -> list[str]:
    data = await t.server.ok("/friend/get_friend_list", {"userID": user}, t.admin)
    return sorted(f["friendUser"]["userID"] for f in data["friendsInfo"])


async def test_friend_rules(tenant: TenantHandle) -> None:
    """OpenIM's rules, each checked before the write: unknown users, blacklists, requests
    that replace earlier ones, agreeing that settles the reverse request, one-sided
    deletion; and the notifications of each user, gap-free by seq."""
    t = tenant
    await t.users("alice", "bob", "carol", "dave", "erin")
    add = "/friend/add_friend"
    answer = "/friend/add_friend_response"
    assert await _code(t, add, {"fromUserID": "alice", "toUserID": "nobody"}) == (
        1004, "user nobody not found")
    assert await _code(t, add, {"fromUserID": "nobody", "toUserID": "alice"}) == (
        1004, "user nobody not found")
    assert (await _code(t, add, {"fromUserID": "alice", "toUserID": "alice"}))[0] == 1001
    # A blacklist entry blocks requests to its owner, and is not added twice.
    await t.server.ok("/friend/add_black", {"ownerUserID": "bob", "blackUserID": "alice"},
                      t.admin)
    assert (await _code(t, "/friend/add_black",
                        {"ownerUserID": "bob", "blackUserID": "alice"}))[0] == 1003
    assert (await _code(t, add, {"fromUserID": "alice", "toUserID": "bob"}))[0] == 1301
    await t.server.ok(add, {"fromUserID": "bob", "toUserID": "alice"}, t.admin)  # one way
    # Refused, then asked again: the new request replaces the old one.
    await t.server.ok(add, {"fromUserID": "alice", "toUserID": "carol", "reqMsg": "1"}, t.admin)
    await t.server.ok(answer, {"fromUserID": "alice", "toUserID": "carol",
                               "handleResult": -1}, t.admin)
    assert (await _code(t, answer, {"fromUserID": "alice", "toUserID": "carol",
                                    "handleResult": 1}))[0] == 1004
    await t.server.ok(add, {"fromUserID": "alice", "toUserID": "carol", "reqMsg": "2"}, t.admin)
    await t.server.ok(answer, {"fromUserID": "alice", "toUserID": "carol",
                               "handleResult": 1}, t.admin)
    assert await _friends(t, "alice") == ["carol"] and await _friends(t, "carol") == ["alice"]
    assert (await _code(t, add, {"fromUserID": "alice", "toUserID": "carol"}))[0] == 1003
    # Agreeing to one request settles the reverse one.
    await t.server.ok(add, {"fromUserID": "dave", "toUserID": "erin"}, t.admin)
    await t.server.ok(add, {"fromUserID": "erin", "toUserID": "dave"}, t.admin)
    await t.server.ok(answer, {"fromUserID": "dave", "toUserID": "erin", "handleResult": 1},
                      t.admin)
    assert (await _code(t, answer, {"fromUserID": "erin", "toUserID": "dave",
                                    "handleResult": 1}))[0] == 1004
    # Deleting removes the owner's row only; a remark needs a friend.
    await t.server.ok("/friend/set_friend_remark", {"ownerUserID": "alice",
                                                   "friendUserID": "carol", "remark": "C"},
                      t.admin)
    await t.server.ok("/friend/delete_friend", {"ownerUserID": "alice",
                                               "friendUserID": "carol"}, t.admin)
    assert await _friends(t, "alice") == [] and await _friends(t, "carol") == ["alice"]
    for path, body in (("/friend/set_friend_remark", {"ownerUserID": "alice",
                                                      "friendUserID": "carol", "remark": "x"}),
                       ("/friend/delete_friend", {"ownerUserID": "alice",
                                                  "friendUserID": "carol"})):
        assert (await _code(t, path, body))[0] == 1302
    # Every change left its notifications, seqs 1..n in each user's n_ conversation.
    for user in ("alice", "carol", "dave"):
        seqs = await t.server.ok("/msg/newest_seq", {"userID": user}, t.admin)
        top = seqs["maxSeqs"][f"n_{user}"]
        pulled = await t.server.ok("/msg/pull_msg_by_seq", {"userID": user, "seqRanges": [
            {"conversationID": f"n_{user}", "begin": 1, "end": top, "num": 100}]}, t.admin)
        msgs = pulled["msgs"][f"n_{user}"]
        assert [m["seq"] for m in msgs] == list(range(1, top + 1)) and top >= 2
        assert all(m["sessionType"] == 4 and 1201 <= m["contentType"] <= 1208 for m in msgs)
    carol = await t.server.ok("/msg/pull_msg_by_seq", {"userID": "carol", "seqRanges": [
        {"conversationID": "n_carol", "begin": 1, "end": 100, "num": 100}]}, t.admin)
    # Two requests (1203 each), the refusal (1202), the approval (1201) and FriendAdded
    # (1204); alice's remark and deletion notify alice alone.
    assert [m["contentType"] for m in carol["msgs"]["n_carol"]] == [
        1203, 1202, 1203, 1201, 1204]
