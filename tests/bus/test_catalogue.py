"""The catalogue (and so docs/hooks.md, generated from it) says what events really carry."""

from __future__ import annotations

import json

import orjson
from sqlalchemy import select

from hub.bus.catalogue import BY_COMMAND
from hub.db.models import Event
from tests.conftest import TenantHandle

_ENVELOPE = {"callbackCommand", "eventID", "tenantID", "operationID", "occurredAt"}


async def test_every_stored_event_carries_its_catalogue_fields(
        sqlite_tenant: TenantHandle) -> None:
    t, srv = sqlite_tenant, sqlite_tenant.server
    await t.users("ann", "ben", "cat")
    await t.befriend("ann", "ben")
    await srv.ok("/friend/add_friend", {"fromUserID": "cat", "toUserID": "ann"}, t.admin)
    await srv.ok("/friend/add_friend_response", {"fromUserID": "cat", "toUserID": "ann",
                                                 "handleResult": -1}, t.admin)
    await srv.ok("/friend/set_friend_remark", {"ownerUserID": "ann", "friendUserID": "ben",
                                               "remark": "B"}, t.admin)
    await srv.ok("/friend/add_black", {"ownerUserID": "ann", "blackUserID": "cat"}, t.admin)
    await srv.ok("/friend/remove_black", {"ownerUserID": "ann", "blackUserID": "cat"}, t.admin)
    await srv.ok("/user/update_user_info", {"userInfo": {"userID": "ann", "nickname": "A"}},
                 t.admin)
    await srv.ok("/group/create_group", {"ownerUserID": "ann", "memberUserIDs": ["ben"],
                                         "adminUserIDs": [], "groupInfo": {
                                             "groupID": "g1", "groupName": "G",
                                             "needVerification": 1}}, t.admin)
    await srv.ok("/group/join_group", {"groupID": "g1", "reqMessage": "", "joinSource": 3},
                 t.tokens["cat"])
    await srv.ok("/group/set_group_info", {"groupInfo": {"groupID": "g1", "groupName": "H"}},
                 t.admin)
    await srv.ok("/group/mute_group_member", {"groupID": "g1", "userID": "cat",
                                              "mutedSeconds": 60}, t.admin)
    await srv.ok("/group/mute_group", {"groupID": "g1"}, t.admin)
    await srv.ok("/group/cancel_mute_group", {"groupID": "g1"}, t.admin)
    await srv.ok("/group/set_group_member_info", {"members": [
        {"groupID": "g1", "userID": "ben", "nickname": "Benny"}]}, t.admin)
    await srv.ok("/group/kick_group", {"groupID": "g1", "kickedUserIDs": ["cat"],
                                       "reason": ""}, t.admin)
    await srv.ok("/group/invite_user_to_group", {"groupID": "g1", "invitedUserIDs": ["cat"],
                                                 "reason": ""}, t.admin)
    await srv.ok("/group/quit_group", {"groupID": "g1", "userID": "cat"}, t.admin)
    await srv.ok("/group/transfer_group", {"groupID": "g1", "oldOwnerUserID": "ann",
                                           "newOwnerUserID": "ben"}, t.admin)
    text = json.dumps({"content": "hi"})
    sent = await srv.ok("/msg/send_msg", {"sendID": "ann", "recvID": "ben", "sessionType": 1,
                                          "contentType": 101, "content": text}, t.admin)
    await srv.ok("/msg/send_msg", {"sendID": "ann", "groupID": "g1", "sessionType": 3,
                                   "contentType": 101, "content": text}, t.admin)
    await srv.ok("/msg/mark_msgs_as_read", {"ownerUserID": "ben", "conversationID":
                                            "si_ann_ben", "seqs": [sent["seq"]]}, t.admin)
    await srv.ok("/msg/revoke_msg", {"userID": "ann", "conversationID": "si_ann_ben",
                                     "seq": sent["seq"]}, t.admin)
    await srv.ok("/group/dismiss_group", {"groupID": "g1"}, t.admin)
    await srv.ok("/friend/delete_friend", {"ownerUserID": "ann", "friendUserID": "ben"},
                 t.admin)
    await srv.hub.pusher.drain()

    async with srv.hub.sessions() as s:
        rows = (await s.execute(select(Event.callback_command, Event.payload).where(
            Event.tenant_id == t.tenant_id))).all()
    seen = set()
    for command, payload in rows:
        hook = BY_COMMAND[command]
        keys = set(orjson.loads(payload)) - _ENVELOPE
        assert keys <= set(hook.fields) | {"conversationID"}, (hook.name, keys - set(hook.fields))
        assert set(hook.fields) - keys <= {"offlinePushInfo", "conversationID"}, (
            hook.name, set(hook.fields) - keys)
        seen.add(hook.name)
    assert len(seen) >= 20, sorted(seen)
