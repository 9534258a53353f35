"""The send queue (hub/domain/send_queue.py) on a real database, driven in-process so
that a test decides what shares a batch: a failing send fails alone and seqs stay
gap-free after it, closing the hub stores and answers every queued send, and two nodes'
batches over the same conversations do not deadlock on PostgreSQL."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import select

from hub.context import Actor, Ctx
from hub.core import Hub
from hub.db.models import Message
from hub.domain.sending import SendMsgReq, send_msg
from hub.domain.users import RegisterReq, user_register
from hub.metrics import REGISTRY
from hub.tenants import create_tenant
from tests.conftest import Database, counting, pg_schema, settings_for
from tests.domain.test_messages import single


def _node(db: Database) -> Hub:
    return Hub(settings_for(db, webhooks={"delivery": {"enabled": False}}))


async def _started(db: Database, users: tuple[str, ...] = ("alice", "bob")
                   ) -> tuple[Hub, Ctx]:
    """A hub without a server, a tenant with `users`, and its admin's Ctx."""
    hub = _node(db)
    await hub.start()
    async with hub.sessions() as s, s.begin():
        tenant_id = (await create_tenant(s, "queue")).tenant_id
    ctx = Ctx(Actor(tenant_id), "op-queue")
    await user_register(hub, ctx, RegisterReq.model_validate(
        {"users": [{"userID": u} for u in users]}))
    return hub, ctx


@pytest.fixture
async def hub(sqlite_database: Database) -> AsyncIterator[tuple[Hub, Ctx]]:
    hub, ctx = await _started(sqlite_database)
    try:
        yield hub, ctx
    finally:
        await hub.close()


def _send(hub: Hub, ctx: Ctx, body: str, **extra: Any) -> asyncio.Task[dict[str, Any]]:
    return asyncio.create_task(send_msg(hub, ctx, SendMsgReq.model_validate(
        single("alice", "bob", body, **extra))))


async def test_a_failing_send_fails_alone_and_the_next_batch_gets_the_next_seq(
        hub: tuple[Hub, Ctx]) -> None:
    h, ctx = hub
    first = await _send(h, ctx, "first", clientMsgID="c-1")
    # One batch (queued before it is written): a resend among new sends. Its write fails
    # whole on the unique clientMsgID; each send is written again on its own, so the new
    # ones are stored with their seqs and the resend is answered from the first send.
    sends = [_send(h, ctx, "again", clientMsgID="c-1"),
             *(_send(h, ctx, f"m{i}", clientMsgID=f"n-{i}") for i in range(6))]
    answers = await asyncio.gather(*sends)
    assert answers[0] == first
    assert sorted(a["seq"] for a in answers[1:]) == [2, 3, 4, 5, 6, 7]
    # Those writes allocated their seqs outside a batch: the committer, which remembers
    # each conversation's newest seq on SQLite, must have forgotten it, or the next send
    # would be handed seq 2 again.
    assert (await _send(h, ctx, "next"))["seq"] == 8
    assert (await _send(h, ctx, "and next"))["seq"] == 9


async def test_drain_returns_once_every_queued_send_is_stored_and_answered(
        hub: tuple[Hub, Ctx]) -> None:
    h, ctx = hub
    await _send(h, ctx, "first")  # what a send checks is kept: the rest queue at once
    sends = [_send(h, ctx, f"m{i}") for i in range(20)]
    await asyncio.sleep(0)
    assert not any(s.done() for s in sends)
    await h.sends.drain()
    await asyncio.sleep(0)  # the callers' tasks take their answers
    assert all(s.done() for s in sends)
    assert sorted(s.result()["seq"] for s in sends) == list(range(2, 22))


async def test_closing_the_hub_stores_and_answers_every_queued_send(
        sqlite_database: Database) -> None:
    hub, ctx = await _started(sqlite_database)
    try:
        # The first send reads what a send checks; the rest find it kept and are queued
        # at once, without waiting for anything.
        await _send(hub, ctx, "first")
        sends = [_send(hub, ctx, f"m{i}") for i in range(15)]
        for _ in range(3):  # these are queued, and their batch goes to the group commit
            await asyncio.sleep(0)
        sends += [_send(hub, ctx, f"m{i}") for i in range(15, 30)]  # queued behind it
        await asyncio.sleep(0)
        assert not any(s.done() for s in sends)
    finally:
        await hub.close()
    # Closing waited for them: nothing is written after the hub has closed.
    assert all(s.done() for s in sends)
    assert sorted(s.result()["seq"] for s in sends) == list(range(2, 32))
    path = sqlite_database.url.split(":///", 1)[1]
    with sqlite3.connect(path) as db:
        seqs = [r[0] for r in db.execute(
            "SELECT seq FROM messages WHERE conversation_id = 'si_alice_bob' ORDER BY seq")]
        events = db.execute("SELECT count(*) FROM events WHERE callback_command = "
                            "'callbackAfterSendSingleMsgCommand'").fetchone()[0]
    assert seqs == list(range(1, 32))
    assert events == 31


async def test_two_nodes_sending_into_the_same_conversations_never_deadlock() -> None:
    # Each node writes one batch of sends at a time, its seq counters taken in one order
    # (tenant, conversation): two nodes' batches over the same conversations then queue
    # on PostgreSQL's row locks instead of deadlocking (each deadlock costs a second).
    peers = tuple(f"p{i:02d}" for i in range(20))
    async with pg_schema() as db:
        a, ctx = await _started(db, ("alice", *peers))
        b = _node(db)
        await b.start()
        try:
            conflicts = REGISTRY.get_sample_value("imhub_commit_conflicts_total") or 0.0
            for _ in range(3):
                # Queued on both nodes before either writes: A in one order, B in the other.
                await asyncio.gather(
                    *(asyncio.create_task(send_msg(a, ctx, SendMsgReq.model_validate(
                        single("alice", p, "from a")))) for p in peers),
                    *(asyncio.create_task(send_msg(b, ctx, SendMsgReq.model_validate(
                        single("alice", p, "from b")))) for p in reversed(peers)))
            assert (REGISTRY.get_sample_value("imhub_commit_conflicts_total") or 0.0
                    ) == conflicts
            async with a.read() as s:
                rows = (await s.execute(select(Message.conversation_id, Message.seq).where(
                    Message.tenant_id == ctx.tenant_id))).all()
            by_conv: dict[str, list[int]] = {}
            for conv, seq in rows:
                by_conv.setdefault(conv, []).append(seq)
            assert len(by_conv) == 20
            assert all(sorted(seqs) == [1, 2, 3, 4, 5, 6] for seqs in by_conv.values())
        finally:
            await b.close()
            await a.close()


async def test_a_burst_of_sends_on_postgresql_opens_no_connection_past_the_pool() -> None:
    # Each send reads its checks on PostgreSQL. Unbounded, 200 at once took the pool's
    # overflow, whose connections are opened for one read and closed after it.
    async with pg_schema() as db:
        hub, ctx = await _started(db)
        try:
            with counting(hub.engine, "connect") as opened:
                answers = await asyncio.gather(*(_send(hub, ctx, f"m{i}") for i in range(200)))
            assert sorted(a["seq"] for a in answers) == list(range(1, 201))
            assert opened[0] <= hub.settings.database.pool_size
        finally:
            await hub.close()
