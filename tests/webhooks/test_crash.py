"""Crash safety: `imhub serve` killed with SIGKILL in the middle of delivering loses no
after event. The receiver ends with every committed event (by webhook-id) at least once,
and every message event carries the seq the message was stored with."""

from __future__ import annotations

import asyncio
import secrets
import sqlite3
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import yaml
from starlette.responses import Response

from tests.conftest import free_port
from tests.processes import IMHUB as _IMHUB
from tests.processes import Process as _Process
from tests.processes import Serve
from tests.processes import run_cli as _imhub

from .receiver import Hit, Receiver, serve_receiver

ACTIONS = 2_000
USERS = 40
KILL_AFTER = 300  # deliveries the receiver has seen when the server is killed

@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with serve_receiver() as r:
        yield r


def _committed(db: Path) -> tuple[set[str], dict[str, int]]:
    """Event IDs in the outbox, and each stored chat message's seq by serverMsgID."""
    with sqlite3.connect(db) as conn:
        events = {r[0] for r in conn.execute("SELECT event_id FROM events")}
        seqs = {r[0]: r[1] for r in conn.execute(
            "SELECT server_msg_id, seq FROM messages WHERE session_type = 1")}
    return events, seqs



class _Stall:
    """Makes the receiver hold every request once it has had `after` of them, until
    `release` is set; the held requests then end with a 503 (their sender never saw an
    answer). `held` lists their webhook-ids."""

    def __init__(self, receiver: Receiver, after: int) -> None:
        self.stalled = asyncio.Event()
        self.release = asyncio.Event()
        self.held: list[str] = []
        self._receiver, self._after = receiver, after
        receiver.answer = self._answer

    async def _answer(self, hit: Hit) -> Response | None:
        if len(self._receiver.hits) >= self._after:
            self.stalled.set()
        if self.stalled.is_set() and not self.release.is_set():
            self.held.append(hit.webhook_id)
            await self.release.wait()
            return Response("too late", status_code=503)
        return None

async def test_sigkill_mid_delivery_loses_nothing(tmp_path: Path, receiver: Receiver) -> None:
    db = tmp_path / "imhub.db"
    port = free_port()
    config = tmp_path / "hub.yml"
    config.write_text(yaml.safe_dump({
        "database": {"url": f"sqlite+aiosqlite:///{db}"},
        "server": {"host": "127.0.0.1", "port": port},
        "webhooks": {"allowNetworks": ["127.0.0.0/8"],
                     "delivery": {"pollSeconds": 0.2, "timeout": 5, "leaseSeconds": 30}},
    }))
    tenant = orjson.loads(_imhub("tenant", "create", "crash", "--json", config=config).stdout)
    admin = {"token": tenant["adminToken"]}

    # After KILL_AFTER deliveries the receiver stops answering, so that when the server
    # dies some attempts are in flight and the rest of the backlog is pending. Held
    # requests end with a 503 once released: the dead server never saw an answer.
    stall = _Stall(receiver, KILL_AFTER)
    stalled, release, held = stall.stalled, stall.release, stall.held
    server = Serve(config, port, tmp_path / "serve.log")
    await server.start()
    try:
        async with httpx.AsyncClient(base_url=server.base, headers=admin, timeout=30) as http:
            r = await http.post("/webhook/set_config", json={"config": {
                **{hook: {"enable": True} for hook in (
                    "afterUserRegister", "afterSendSingleMsg", "afterOfflinePush")},
                "retrySchedule": [0, 0.5, 1, 1, 1, 1, 1, 1, 1, 1]}})
            assert r.json()["errCode"] == 0, r.text
            r = await http.post("/webhook/endpoint/add", json={"url": receiver.url})
            assert r.json()["errCode"] == 0, r.text
            users = [f"u{i}" for i in range(USERS)]
            r = await http.post("/user/user_register", json={"users": [
                {"userID": u, "nickname": u} for u in users]})
            assert r.json()["errCode"] == 0, r.text
            sent: dict[int, dict[str, Any]] = {}

            async def drive(items: list[int]) -> None:
                queue = list(reversed(items))

                async def lane() -> None:
                    while queue:
                        i = queue.pop()
                        body = {"sendID": users[i % USERS],
                                "recvID": users[(i * 7 + 1) % USERS], "sessionType": 1,
                                "contentType": 101, "clientMsgID": f"c{i}",
                                "content": orjson.dumps({"content": f"m{i}"}).decode()}
                        try:
                            r = await http.post("/msg/send_msg", json=body)
                        except httpx.TransportError:
                            if server.alive:
                                raise
                            return  # killed under this request: sent again after restart
                        data = r.json()
                        assert data["errCode"] == 0, data
                        assert data["data"]["seq"] > 0
                        sent[i] = data["data"]

                await asyncio.gather(*(lane() for _ in range(16)))

            # Send until the receiver has stalled with attempts in flight, then kill.
            driving = asyncio.create_task(drive(list(range(ACTIONS))))
            await asyncio.wait_for(stalled.wait(), 60)
            await receiver.wait_for(lambda r: len(held) >= 5, what="attempts in flight")
            committed_before, _ = _committed(db)
            server.kill()
            await driving
        in_flight = set(held)
        delivered_before = receiver.delivered_ids()
        assert in_flight and not in_flight & delivered_before
        assert len(delivered_before) < len(committed_before), "nothing left to deliver"
        release.set()

        # Restart and finish the work: every action is sent (the same clientMsgID again
        # returns the first result), then every committed event must arrive.
        await server.start()
        async with httpx.AsyncClient(base_url=server.base, headers=admin, timeout=30) as http:
            await drive([i for i in range(ACTIONS) if i not in sent])
        assert len(sent) == ACTIONS
        # Offline-push events are written after the sends return: wait until the outbox
        # stops growing and the receiver has all of it.
        while True:
            committed, seqs = _committed(db)
            await receiver.wait_for(lambda r, want=committed: want <= r.delivered_ids(),
                                    timeout=60, what="every committed event")
            await asyncio.sleep(0.5)
            if _committed(db)[0] == committed:
                break
    finally:
        release.set()
        server.stop()
    assert committed_before <= committed
    assert {m["serverMsgID"] for m in sent.values()} <= set(seqs)
    assert len(seqs) == ACTIONS
    bodies = {h.webhook_id: h.json for h in receiver.ok()}
    assert set(bodies) == committed
    assert in_flight <= set(bodies), "attempts cut off by the crash were made again"
    messages = [b for b in bodies.values()
                if b["callbackCommand"] == "callbackAfterSendSingleMsgCommand"]
    assert len(messages) == ACTIONS
    for body in messages:
        assert body["seq"] == seqs[body["serverMsgID"]] != 0
    for event_id, body in bodies.items():
        assert body["eventID"] == event_id


async def test_workers_share_the_work_and_take_over_a_dead_ones(
        tmp_path: Path, receiver: Receiver) -> None:
    """PostgreSQL, `imhub serve` without delivery, two `imhub worker` processes. One is
    killed with attempts in flight; the other takes its deliveries over once their leases
    run out, and every event arrives."""
    from sqlalchemy.ext.asyncio import create_async_engine

    from tests.conftest import PG_URL

    schema = "t_" + secrets.token_hex(6)
    admin_engine = create_async_engine(PG_URL)
    async with admin_engine.begin() as conn:
        await conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    port = free_port()
    config = tmp_path / "hub.yml"
    config.write_text(yaml.safe_dump({
        "database": {"url": PG_URL, "schema": schema},
        "server": {"host": "127.0.0.1", "port": port},
        "webhooks": {"allowNetworks": ["127.0.0.0/8"], "delivery": {
            "enabled": False, "pollSeconds": 0.1, "timeout": 1, "leaseSeconds": 3,
            "maxInFlight": 8}},
    }))
    stall = _Stall(receiver, 100)
    release, held = stall.release, stall.held
    server = Serve(config, port, tmp_path / "serve.log")
    workers = [Worker(config, tmp_path / f"worker{i}.log") for i in range(2)]
    try:
        tenant = orjson.loads(_imhub("tenant", "create", "nodes", "--json",
                                     config=config).stdout)
        await server.start()
        for w in workers:
            w.start()
        async with httpx.AsyncClient(base_url=server.base, timeout=30,
                                     headers={"token": tenant["adminToken"]}) as http:
            r = await http.post("/webhook/set_config", json={"config": {
                "afterUserRegister": {"enable": True}, "retrySchedule": [0, 0.2, 0.5, 1, 1]}})
            assert r.json()["errCode"] == 0, r.text
            r = await http.post("/webhook/endpoint/add", json={"url": receiver.url})
            assert r.json()["errCode"] == 0, r.text
            for batch in range(10):
                r = await http.post("/user/user_register", json={"users": [
                    {"userID": f"u{batch}_{i}"} for i in range(30)]})
                assert r.json()["errCode"] == 0, r.text
                await asyncio.sleep(0.05)
        await receiver.wait_for(lambda r: len(held) >= 10, timeout=30,
                                what="attempts in flight")
        # Before the kill no event was attempted twice: two workers never share one.
        before = [h.webhook_id for h in receiver.hits] + held
        assert len(before) == len(set(before))
        # Kill a worker that has attempts in flight.
        async with admin_engine.connect() as conn:
            ids = ", ".join(f"'{e}'" for e in held)  # IDs imhub made: hex, no quotes
            leases = (await conn.exec_driver_sql(
                f'SELECT event_id, lease_owner FROM "{schema}".webhook_deliveries'
                f" WHERE status = 'pending' AND event_id IN ({ids})")).all()
        victim = next(w for w in workers if any(f"-{w.pid}-" in o for _e, o in leases))
        survivor = next(w for w in workers if w is not victim)
        orphans = {e for e, o in leases if f"-{victim.pid}-" in o}
        victim.kill()
        release.set()
        await receiver.wait_for(lambda r: len(r.delivered_ids()) == 300, timeout=30,
                                what="all 300 events")
        for _ in range(100):  # the survivor records its results a moment later
            async with admin_engine.connect() as conn:
                done = (await conn.exec_driver_sql(
                    f'SELECT count(*) FROM "{schema}".webhook_deliveries'
                    " WHERE status = 'delivered'")).scalar_one()
            if done == 300:
                break
            await asyncio.sleep(0.1)
        async with admin_engine.connect() as conn:
            ids = ", ".join(f"'{e}'" for e in orphans)
            takeover = (await conn.exec_driver_sql(
                f'SELECT event_id, worker, status_code FROM "{schema}".webhook_attempts'
                f" WHERE event_id IN ({ids})")).all()
    finally:
        release.set()
        for w in workers:
            w.stop()
        server.stop()
        async with admin_engine.begin() as conn:
            await conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        await admin_engine.dispose()
    # The dead worker's attempts in flight were made again by the other once its leases
    # ran out; the dead one never recorded them.
    assert orphans and {e for e, _w, code in takeover if code == 200} == orphans
    assert all(f"-{survivor.pid}-" in w for _e, w, _c in takeover), takeover


class Worker(_Process):
    """`imhub worker` in a subprocess."""

    def __init__(self, config: Path, log: Path) -> None:
        self._cmd = [*_IMHUB, "worker", "--config", str(config)]
        self._log = log
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> None:
        with self._log.open("ab") as log:
            self.proc = subprocess.Popen(self._cmd, stdout=log, stderr=log)

