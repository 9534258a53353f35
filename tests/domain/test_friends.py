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
