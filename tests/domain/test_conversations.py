"""The conversation list over a real server: membership, latest message, read state."""

from __future__ import annotations

from typing import Any

from tests.conftest import TenantHandle
from tests.domain.test_messages import code, group, make_group, single


async def conversations(tenant: TenantHandle, owner: str) -> dict[str, dict[str, Any]]:
    data = await tenant.server.ok("/conversation/get_all_conversations",
                                  {"ownerUserID": owner}, tenant.tokens[owner])
    convs = data["conversations"]
    times = [c["latestMsgSendTime"] for c in convs]
    assert times == sorted(times, reverse=True)  # newest first
    return {c["conversationID"]: c for c in convs}


async def test_conversations_with_unread_counts(tenant: TenantHandle) -> None:
    srv = tenant.server
    alice, bob, carol = await tenant.users("alice", "bob", "carol")
    await make_group(tenant, "alice", ["bob"])
    await srv.ok("/msg/send_msg", single("alice", "bob", "a1"), alice)
    await srv.ok("/msg/send_msg", single("alice", "bob", "a2"), alice)
    await srv.ok("/msg/send_msg", single("bob", "alice", "b1"), bob)
    await srv.ok("/msg/send_msg", group("alice", "g1", "g-a"), alice)
    await srv.ok("/msg/send_msg", group("bob", "g1", "g-b"), bob)
    await srv.ok("/msg/send_msg", single("carol", "bob", "c1"), carol)

    mine = await conversations(tenant, "bob")
    assert set(mine) == {"si_alice_bob", "sg_g1", "si_bob_carol"}  # n_bob is not listed
    pair, grp, other = mine["si_alice_bob"], mine["sg_g1"], mine["si_bob_carol"]
    assert (pair["conversationType"], pair["userID"], pair["groupID"]) == (1, "alice", "")
    assert (grp["conversationType"], grp["userID"], grp["groupID"]) == (3, "", "g1")
    # Own messages are never unread.
    assert [(c["maxSeq"], c["hasReadSeq"], c["unreadCount"]) for c in (pair, grp, other)] \
        == [(3, 0, 2), (2, 0, 1), (1, 0, 1)]
    assert pair["latestMsg"]["seq"] == 3 and pair["latestMsg"]["sendID"] == "bob"
    assert other["ownerUserID"] == "bob" and other["latestMsg"]["content"] == \
        single("carol", "bob", "c1")["content"]

    await srv.ok("/msg/mark_msgs_as_read", {"ownerUserID": "bob",
                                            "conversationID": "si_alice_bob", "seqs": [3]}, bob)
    await srv.ok("/msg/revoke_msg", {"userID": "carol", "conversationID": "si_bob_carol",
                                     "seq": 1}, carol)
    mine = await conversations(tenant, "bob")
    assert (mine["si_alice_bob"]["hasReadSeq"], mine["si_alice_bob"]["unreadCount"]) == (3, 0)
    # Neither the revoked message nor the revoke's tip (seq 2) counts: a revoke is no news
    # to read (OpenIM's revoke notification does not count as unread either).
    assert (mine["si_bob_carol"]["maxSeq"], mine["si_bob_carol"]["unreadCount"]) == (2, 0)
    assert mine["si_bob_carol"]["latestMsg"]["contentType"] == 2101

    theirs = await conversations(tenant, "alice")
    assert theirs["si_alice_bob"]["unreadCount"] == 1 and theirs["sg_g1"]["unreadCount"] == 1
    assert await code(srv, "/conversation/get_all_conversations", {"ownerUserID": "alice"},
                      bob) == 1002
    assert await code(srv, "/conversation/get_all_conversations", {"ownerUserID": "nobody"},
                      tenant.admin) == 1004


async def test_a_user_without_messages_has_group_conversations_only(
        sqlite_tenant: TenantHandle) -> None:
    t = sqlite_tenant
    await t.users("alice", "bob")
    assert await conversations(t, "bob") == {}
    await make_group(t, "alice", ["bob"])
    [conv] = (await conversations(t, "bob")).values()
    assert (conv["conversationID"], conv["maxSeq"], conv["latestMsg"]) == ("sg_g1", 0, None)
