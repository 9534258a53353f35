"""AuditLog: one JSON line per committed after-event, written off the event loop."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import select

from hub.bus import AfterEvent, hook
from hub.db.models import Event
from hub.errors import ConfigError
from hub.plugin import build_plugin
from hub.settings import PluginSpec
from plugins.audit_log import AuditLog, AuditLogConfig
from tests.plugins.conftest import StartWith

MODULE = "plugins.audit_log:AuditLog"


def _lines(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def _event(n: int) -> AfterEvent:
    return AfterEvent(hook=hook("afterAddFriend"), event_id=f"evt{n}", tenant_id="t1",
                      operation_id=f"op{n}", occurred_at=1_700_000_000_000 + n, key="a",
                      payload={"fromUserID": "a", "toUserID": "b", "reqMsg": "é\n\"x\""})


def _writers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "imhub-audit-log"]


async def test_every_event_is_one_line_and_close_writes_what_is_queued(tmp_path: Path
                                                                       ) -> None:
    path = tmp_path / "audit.jsonl"
    log = AuditLog(AuditLogConfig(path=str(path)))
    before = len(_writers())
    await log.start()
    events = [_event(n) for n in range(500)]
    for ev in events:
        await log.after(ev)
    await log.close()
    assert len(_writers()) == before, "the writer thread has ended"
    assert _lines(path) == [ev.body() for ev in events]


async def test_flush_waits_for_the_lines_handed_over(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = AuditLog(AuditLogConfig(path=str(path)))
    await log.start()
    try:
        await log.after(_event(1))
        await log.flush()
        assert [line["eventID"] for line in _lines(path)] == ["evt1"]
    finally:
        await log.close()


async def test_it_appends_to_an_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    path.write_bytes(b'{"old": true}\n')
    log = AuditLog(AuditLogConfig(path=str(path)))
    await log.start()
    await log.after(_event(1))
    await log.close()
    assert [line.get("eventID") for line in _lines(path)] == [None, "evt1"]


@pytest.mark.parametrize(("config", "key"), [
    ({}, "path"),
    ({"path": ""}, "path"),
    ({"path": "/nonexistent-dir/audit.jsonl"}, "path"),
    ({"path": "."}, "path"),
    ({"path": "a.jsonl", "rotate": True}, "rotate"),
])
def test_bad_config_names_the_plugin_and_the_key(config: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as exc:
        build_plugin(PluginSpec(module=MODULE, config=config))
    assert f"plugin '{MODULE}' config key '{key}'" in str(exc.value)


async def test_the_server_logs_each_after_event_with_its_operation_id(
        start_with: StartWith, tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    tenant = await start_with({"module": MODULE, "config": {"path": str(path)}})
    srv, hub = tenant.server, tenant.server.hub
    ann, _ = await tenant.users("ann", "bob")
    status, env = await srv.post("/friend/add_friend", {"fromUserID": "ann",
                                                        "toUserID": "bob"}, ann,
                                 operation_id="op-audit-1")
    assert env["errCode"] == 0, (status, env)
    await srv.ok("/user/update_user_info", {"userInfo": {"userID": "ann", "nickname": "A"}},
                 ann)
    await hub.bus.drain()
    log = next(h for h in hub.bus.handlers if isinstance(h, AuditLog))
    await log.flush()

    lines = _lines(path)
    async with hub.sessions() as s:
        stored = [orjson.loads(p) for p in (await s.execute(
            select(Event.payload).where(Event.tenant_id == tenant.tenant_id)
            .order_by(Event.pos))).scalars()]
    assert sorted(lines, key=lambda b: b["eventID"]) == \
        sorted(stored, key=lambda b: b["eventID"]), "one line per event, the event body"
    commands = sorted(line["callbackCommand"] for line in lines)
    assert commands == ["callbackAfterAddFriendCommand", "callbackAfterUpdateUserInfoCommand",
                        "callbackAfterUserRegisterCommand", "callbackAfterUserRegisterCommand"]
    (added,) = [b for b in lines if b["callbackCommand"] == "callbackAfterAddFriendCommand"]
    assert (added["operationID"], added["fromUserID"], added["toUserID"]) == \
        ("op-audit-1", "ann", "bob")
