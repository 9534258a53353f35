"""The pipeline through a real server on both databases: a plugin's deny reaches the
caller and stores nothing; a hanging plugin costs its timeout, then its failure policy
decides; a failure inside the transaction leaves neither the change nor its event."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson
import pytest
from sqlalchemy import select

from hub.core import Hub
from hub.db.models import Event
from tests.bus._plugins import RecordAfter
from tests.bus.conftest import StartWith

AFTER_ADD_FRIEND = "callbackAfterAddFriendCommand"
TIMEOUT = 0.3


async def _events(hub: Hub, tenant_id: str, command: str) -> list[dict[str, Any]]:
    """The outbox rows of one tenant and callbackCommand, as their stored bodies."""
    async with hub.sessions() as s:
        rows = (await s.execute(select(Event.payload).where(
            Event.tenant_id == tenant_id, Event.callback_command == command
        ).order_by(Event.pos))).scalars().all()
    return [orjson.loads(r) for r in rows]


async def _requests_to(tenant: Any, user: str) -> list[str]:
    data = await tenant.server.ok("/friend/get_friend_apply_list", {"userID": user},
                                  tenant.admin)
    return [r["fromUserID"] for r in data["friendRequests"]]


async def test_a_plugin_deny_reaches_the_caller_and_nothing_is_stored(start_with: StartWith
                                                                     ) -> None:
    tenant = await start_with({"module": "tests.bus._plugins:DenyAddFriend",
                               "config": {"errCode": 7001, "errMsg": "no"}})
    srv, hub = tenant.server, tenant.server.hub
    alice, _ = await tenant.users("alice", "bob")
    status, env = await srv.post("/friend/add_friend",
                                 {"fromUserID": "alice", "toUserID": "bob", "reqMsg": "hi"},
                                 alice)
    assert (env["errCode"], env["errMsg"]) == (7001, "no")
    assert 400 <= status < 500
    assert await _requests_to(tenant, "bob") == []
    assert await _events(hub, tenant.tenant_id, AFTER_ADD_FRIEND) == []
    # The query does see this tenant's events: registering wrote two.
    assert len(await _events(hub, tenant.tenant_id, "callbackAfterUserRegisterCommand")) == 2


@pytest.mark.parametrize("failed_continue", [True, False])
async def test_a_hanging_plugin_costs_its_timeout_then_its_policy_decides(
        start_with: StartWith, failed_continue: bool) -> None:
    tenant = await start_with({"module": "tests.bus._plugins:HangAddFriend",
                               "timeout": TIMEOUT, "failedContinue": failed_continue})
    srv = tenant.server
    alice, _ = await tenant.users("alice", "bob")
    start = time.perf_counter()
    status, env = await srv.post("/friend/add_friend",
                                 {"fromUserID": "alice", "toUserID": "bob"}, alice)
    elapsed = time.perf_counter() - start
    assert TIMEOUT <= elapsed < TIMEOUT + 0.5
    events = await _events(srv.hub, tenant.tenant_id, AFTER_ADD_FRIEND)
    if failed_continue:
        assert (status, env["errCode"]) == (200, 0)
        assert await _requests_to(tenant, "bob") == ["alice"]
        assert len(events) == 1
    else:
        assert (status, env["errCode"]) == (503, 5001)
        assert await _requests_to(tenant, "bob") == []
        assert events == []


async def test_a_failure_inside_the_transaction_leaves_no_state_and_no_event(
        start_with: StartWith, monkeypatch: pytest.MonkeyPatch) -> None:
    tenant = await start_with({"module": "tests.bus._plugins:RecordAfter"})
    srv, hub = tenant.server, tenant.server.hub
    await tenant.users("alice", "bob", "carol")
    recorder = next(h for h in hub.bus.handlers if isinstance(h, RecordAfter))
    await hub.bus.drain()
    recorder.events.clear()

    # add_friend records its after-event, then stores the notification: failing there
    # leaves an event row in the session that the rollback has to take back.
    real_send = hub.notifier.send

    async def send(tx: Any, user_ids: Any, *args: Any, **kwargs: Any) -> None:
        ids = list(user_ids)
        if ids[0] == "alice":
            raise RuntimeError("injected failure")
        await real_send(tx, ids, *args, **kwargs)

    monkeypatch.setattr(hub.notifier, "send", send)
    # Concurrent, so that with a group commit both may share one transaction: the failing
    # action must take back only its own writes.
    (failed_status, failed), (_, ok) = await asyncio.gather(
        srv.post("/friend/add_friend", {"fromUserID": "alice", "toUserID": "bob"},
                 tenant.admin, operation_id="op-failing"),
        srv.post("/friend/add_friend", {"fromUserID": "carol", "toUserID": "bob"},
                 tenant.admin, operation_id="op-fine"))
    assert failed_status == 500 and failed["errCode"] != 0
    assert ok["errCode"] == 0

    assert await _requests_to(tenant, "bob") == ["carol"]
    events = await _events(hub, tenant.tenant_id, AFTER_ADD_FRIEND)
    assert [(e["fromUserID"], e["operationID"]) for e in events] == [("carol", "op-fine")]
    await hub.bus.drain()
    assert [(e.hook.name, e.payload["fromUserID"]) for e in recorder.events] == [
        ("afterAddFriend", "carol")]

    # Nothing was left half-done: the same request goes through once the fault is gone.
    monkeypatch.setattr(hub.notifier, "send", real_send)
    await srv.ok("/friend/add_friend", {"fromUserID": "alice", "toUserID": "bob"},
                 tenant.admin)
    assert sorted(await _requests_to(tenant, "bob")) == ["alice", "carol"]
    assert len(await _events(hub, tenant.tenant_id, AFTER_ADD_FRIEND)) == 2
