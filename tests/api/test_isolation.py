"""Tenant isolation: every route, called with tenant B's admin token and with a B user's
token on tenant A's IDs, answers exactly as it does for IDs that exist nowhere, leaks
nothing of A's, and changes nothing of A's."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from sqlalchemy import select

from hub.api.registry import ROUTES
from hub.db.schema import metadata
from tests.conftest import Database, Server, TenantHandle, settings_for

A = {"u1": "alpha_u1", "u2": "alpha_u2", "u3": "alpha_u3", "g": "alpha_g"}


def _bodies(ids: dict[str, str]) -> dict[str, dict[str, Any]]:
    u1, u2, u3, g = ids["u1"], ids["u2"], ids["u3"], ids["g"]
    conv = f"si_{min(u1, u2)}_{max(u1, u2)}"
    page = {"pageNumber": 1, "showNumber": 50}
    return {
        "/auth/get_user_token": {"userID": u1, "platformID": 1},
        "/auth/force_logout": {"userID": u1, "platformID": 1},
        "/user/update_user_info": {"userInfo": {"userID": u1, "nickname": "x"}},
        "/user/get_users_info": {"userIDs": [u1, u2]},
        "/user/get_users_online_status": {"userIDs": [u1, u2]},
        "/friend/add_friend": {"fromUserID": u1, "toUserID": u3},
        "/friend/add_friend_response": {"fromUserID": u3, "toUserID": u1, "handleResult": 1},
        "/friend/delete_friend": {"ownerUserID": u1, "friendUserID": u2},
        "/friend/set_friend_remark": {"ownerUserID": u1, "friendUserID": u2, "remark": "x"},
        "/friend/get_friend_list": {"userID": u1, "pagination": page},
        "/friend/get_friend_apply_list": {"userID": u1, "pagination": page},
        "/friend/get_self_friend_apply_list": {"userID": u1, "pagination": page},
        "/friend/add_black": {"ownerUserID": u1, "blackUserID": u2},
        "/friend/remove_black": {"ownerUserID": u1, "blackUserID": u3},
        "/friend/get_black_list": {"userID": u1, "pagination": page},
        "/group/create_group": {"ownerUserID": u1, "memberUserIDs": [u2], "adminUserIDs": [],
                                "groupInfo": {"groupID": g + "2", "groupName": "x"}},
        "/group/set_group_info": {"groupInfo": {"groupID": g, "groupName": "x"}},
        "/group/dismiss_group": {"groupID": g},
        "/group/mute_group": {"groupID": g},
        "/group/cancel_mute_group": {"groupID": g},
        "/group/get_groups_info": {"groupIDs": [g]},
        "/group/get_group_member_list": {"groupID": g, "pagination": page},
        "/group/get_joined_group_list": {"fromUserID": u1, "pagination": page},
        "/group/get_recv_group_applicationList": {"fromUserID": u1, "pagination": page},
        "/group/join_group": {"groupID": g, "reqMessage": "x", "joinSource": 3, "userID": u3},
        "/group/group_application_response": {"groupID": g, "fromUserID": u3,
                                              "handleResult": 1, "handledMsg": ""},
        "/group/invite_user_to_group": {"groupID": g, "invitedUserIDs": [u3], "reason": ""},
        "/group/kick_group": {"groupID": g, "kickedUserIDs": [u2], "reason": ""},
        "/group/quit_group": {"groupID": g, "userID": u2},
        "/group/transfer_group": {"groupID": g, "oldOwnerUserID": u1, "newOwnerUserID": u2},
        "/group/mute_group_member": {"groupID": g, "userID": u2, "mutedSeconds": 60},
        "/group/cancel_mute_group_member": {"groupID": g, "userID": u2, "mutedSeconds": 0},
        "/group/set_group_member_info": {"members": [{"groupID": g, "userID": u2,
                                                      "nickname": "x"}]},
        "/msg/send_msg": {"sendID": u1, "recvID": u2, "sessionType": 1, "contentType": 101,
                          "content": json.dumps({"content": "hi"})},
        "/msg/newest_seq": {"userID": u1},
        "/msg/pull_msg_by_seq": {"userID": u1, "seqRanges": [
            {"conversationID": conv, "begin": 1, "end": 10, "num": 10}]},
        "/msg/revoke_msg": {"userID": u1, "conversationID": conv, "seq": 1},
        "/msg/mark_msgs_as_read": {"ownerUserID": u2, "conversationID": conv, "seqs": [1]},
        "/conversation/get_all_conversations": {"ownerUserID": u1},
        "/webhook/endpoint/update": {"endpointID": ids["ep"], "url": "http://127.0.0.1:9/x"},
        "/webhook/endpoint/delete": {"endpointID": ids["ep"]},
        "/webhook/endpoint/rotate_secret": {"endpointID": ids["ep"]},
        "/webhook/events/list": {"endpointID": ids["ep"], "pagination": page},
        "/webhook/replay": {"eventIDs": [ids["event"]]},
    }


# Routes whose bodies name no existing ID of anyone's: they act inside the caller's tenant
# by construction (B registering its own "alpha_u1" is B's user). A's rows are still
# checked unchanged after they run.
_NO_FOREIGN_IDS = {"/user/user_register", "/webhook/get_config", "/webhook/set_config",
                   "/webhook/endpoint/add", "/webhook/endpoint/list"}


async def _snapshot(srv: Server, tenant_id: str) -> dict[str, list[tuple[Any, ...]]]:
    out: dict[str, list[tuple[Any, ...]]] = {}
    async with srv.hub.sessions() as s:
        for table in metadata.sorted_tables:
            if "tenant_id" not in table.c:
                continue
            rows = (await s.execute(select(table).where(table.c.tenant_id == tenant_id))).all()
            out[table.name] = sorted(tuple(r) for r in rows)
    return out


@pytest.fixture
async def isolated(database: Database, make_server: Callable[..., Awaitable[Server]],
                   make_tenant: Callable[..., Awaitable[TenantHandle]]
                   ) -> tuple[TenantHandle, TenantHandle, dict[str, str]]:
    srv = await make_server(settings_for(database, webhooks={
        "allowNetworks": ["127.0.0.0/8"], "delivery": {"enabled": False}}))
    a, b = await make_tenant(srv, "alpha"), await make_tenant(srv, "beta")
    await a.users(A["u1"], A["u2"], A["u3"])
    await b.users("beta_u1")
    await a.befriend(A["u1"], A["u2"])
    await srv.ok("/friend/add_black", {"ownerUserID": A["u1"], "blackUserID": A["u3"]}, a.admin)
    await srv.ok("/group/create_group", {"ownerUserID": A["u1"], "memberUserIDs": [A["u2"]],
                                         "adminUserIDs": [], "groupInfo": {
                                             "groupID": A["g"], "groupName": "Alpha",
                                             "needVerification": 0}}, a.admin)
    await srv.ok("/group/join_group", {"groupID": A["g"], "reqMessage": "hi", "joinSource": 3},
                 a.tokens[A["u3"]])
    await srv.ok("/msg/send_msg", _bodies({**A, "ep": "", "event": ""})["/msg/send_msg"],
                 a.admin)
    ep = await srv.ok("/webhook/endpoint/add", {"url": "http://127.0.0.1:9/hook"}, a.admin)
    async with srv.hub.sessions() as s:
        from hub.db.models import Event
        event = (await s.execute(select(Event.event_id).where(
            Event.tenant_id == a.tenant_id).limit(1))).scalar_one()
    return a, b, {**A, "ep": ep["endpointID"], "event": event}


async def test_tenant_b_reaches_nothing_of_tenant_a(
        isolated: tuple[TenantHandle, TenantHandle, dict[str, str]]) -> None:
    a, b, ids = isolated
    srv = a.server
    nowhere = {k: v.replace("alpha_", "nowhere_") if k not in ("ep", "event")
               else v[:-6] + "ffffff" for k, v in ids.items()}
    foreign, unknown = _bodies(ids), _bodies(nowhere)
    assert set(foreign) | _NO_FOREIGN_IDS == {r.path for r in ROUTES}, "route not in matrix"
    before = await _snapshot(srv, a.tenant_id)
    for token_name, token in (("B admin", b.admin), ("B user", b.tokens["beta_u1"])):
        for path, body in foreign.items():
            status, env = await srv.post(path, body, token)
            u_status, u_env = await srv.post(path, unknown[path], token)
            where = (token_name, path, env, u_env)
            assert env["errCode"] == u_env["errCode"] and status == u_status, where
            if env["errCode"] == 0:
                # Same answer as for IDs that exist nowhere, with nothing of A's in it.
                leaked = json.dumps(env["data"])
                assert "alpha" not in leaked and a.tenant_id not in leaked, where
            else:
                assert env["errCode"] in (1002, 1004), where
        for path in _NO_FOREIGN_IDS:
            await srv.post(path, {}, token)
    assert await _snapshot(srv, a.tenant_id) == before
