"""Group commit on a real database: concurrent writes share transactions, a failing write
rolls back alone, callers return after the commit, post-commit work runs in order."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
from sqlalchemy import bindparam, func, insert, select
from sqlalchemy.exc import IntegrityError

from hub.bus import hook
from hub.context import Actor, Ctx
from hub.db.fast import Statement
from hub.db.models import ConversationSeq, Event, User
from hub.domain.seqs import allocate
from hub.tx import Tx
from tests.conftest import Database, Server, settings_for

CTX = Ctx(Actor("t1"), "op")


class Boom(Exception):
    pass


def _user(i: int) -> User:
    return User(tenant_id="t1", user_id=f"u{i}", nickname="", face_url="", ex="",
                create_time=0)


async def _add_user_minus_one(hub: Any) -> None:
    """User u-1, whom the tests' failing writes insert again (a duplicate key)."""
    async def first(tx: Tx) -> None:
        tx.session.add(_user(-1))

    await hub.write(CTX, first)


async def _user_ids(srv: Server) -> set[str]:
    async with srv.hub.read() as s:
        return set((await s.execute(select(User.user_id).where(User.tenant_id == "t1")))
                   .scalars())


async def test_failing_writes_roll_back_alone(server: Server) -> None:
    hub = server.hub
    sessions: set[int] = set()

    def write(i: int) -> Any:
        async def fn(tx: Tx) -> int:
            sessions.add(id(tx.session))
            tx.session.add(_user(i))
            await allocate(tx.session, "t1", "sg_shared")
            if i % 7 == 3:
                await tx.session.flush()
                raise Boom(i)  # after its rows reached the database
            if i % 11 == 5:
                tx.session.add(_user(-1))  # a duplicate key: fails at flush
            return i
        return fn

    await _add_user_minus_one(hub)
    outcomes = await asyncio.gather(*(hub.write(CTX, write(i)) for i in range(200)),
                                    return_exceptions=True)
    failed = {i for i, o in enumerate(outcomes) if isinstance(o, Exception)}
    for i, o in enumerate(outcomes):
        if i % 7 == 3:
            assert isinstance(o, Boom) and o.args == (i,)
        elif i % 11 == 5:
            assert isinstance(o, IntegrityError), o
        else:
            assert o == i
    committed = {f"u{i}" for i in range(-1, 200)} - {f"u{i}" for i in failed}
    assert await _user_ids(server) == committed
    async with hub.read() as s:
        seq = await s.get(ConversationSeq, ("t1", "sg_shared"))
    assert seq is not None and seq.max_seq == 200 - len(failed)  # no gap from a failure
    # Concurrent writes shared transactions.
    assert len(sessions) < 100


_INSERT_USER = Statement(insert(User.__table__).values(
    {c.name: bindparam(c.name) for c in User.__table__.columns}))
_AFTER = hook("afterUserRegister")


async def test_core_only_writes_roll_back_alone(server: Server) -> None:
    # orm=False: on SQLite a plain SAVEPOINT instead of the session's begin_nested().
    hub = server.hub

    def write(i: int) -> Any:
        async def fn(tx: Tx) -> int:
            await allocate(tx.session, "t1", "c")
            tx.after(_AFTER, {"userID": f"u{i}"})
            user = "u-1" if i % 11 == 5 else f"u{i}"  # u-1 exists: a duplicate key
            await _INSERT_USER.many(tx.session, [{
                "tenant_id": "t1", "user_id": user, "nickname": "", "face_url": "",
                "ex": "", "create_time": 0}])
            if i % 7 == 3:
                raise Boom(i)
            return i
        return fn

    await _add_user_minus_one(hub)
    outcomes = await asyncio.gather(*(hub.write(CTX, write(i), orm=False)
                                      for i in range(150)), return_exceptions=True)
    ok = {i for i, o in enumerate(outcomes) if o == i}
    for i, o in enumerate(outcomes):
        if i % 11 == 5:
            assert isinstance(o, IntegrityError), o
        elif i % 7 == 3:
            assert isinstance(o, Boom)
    assert ok == {i for i in range(150) if i % 11 != 5 and i % 7 != 3}
    assert await _user_ids(server) == {"u-1"} | {f"u{i}" for i in ok}
    async with hub.read() as s:
        seq = await s.get(ConversationSeq, ("t1", "c"))
        events = (await s.execute(select(Event.payload).where(
            Event.tenant_id == "t1"))).scalars().all()
    assert seq is not None and seq.max_seq == len(ok)
    assert sorted(int(orjson.loads(p)["userID"][1:]) for p in events) == sorted(ok)


async def test_a_batchs_seqs_and_rows_are_written_at_its_end(
        database: Database, make_server: Any) -> None:
    # Tx.allocate counts a conversation's seqs in memory after its first in a batch, and
    # Tx.insert leaves rows to the end of the batch: the stored counters and rows must be
    # exactly those of the writes that succeeded, gap-free per conversation, whether the
    # batch committed whole or ran again write by write after a failure. (One writer on
    # PostgreSQL too: concurrent batches that take three conversations' rows in different
    # orders deadlock, which costs a second each and is the deadlock test's subject.)
    hub = (await make_server(settings_for(database, commit={"pg_writers": 1}))).hub

    def write(i: int) -> Any:
        async def fn(tx: Tx) -> tuple[str, int]:
            conv = f"c{i % 3}"
            seq = await tx.allocate(conv)
            user = "u-1" if i % 13 == 6 else f"u{i}"  # u-1 exists: fails at the batch's end
            await tx.insert(_INSERT_USER, [{
                "tenant_id": "t1", "user_id": user, "nickname": f"{conv}:{seq}", "face_url": "",
                "ex": "", "create_time": 0}])
            tx.after(_AFTER, {"userID": f"u{i}"})
            if i % 17 == 9:
                raise Boom(i)
            return conv, seq
        return fn

    await _add_user_minus_one(hub)
    tasks = []
    for i in range(120):
        tasks.append(asyncio.create_task(hub.write(CTX, write(i), orm=False)))
        if i % 40 == 0:
            await asyncio.sleep(0)  # batches of several sizes
    outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    ok = {i: o for i, o in enumerate(outcomes) if not isinstance(o, BaseException)}
    for i, o in enumerate(outcomes):
        if i % 13 == 6:
            assert isinstance(o, IntegrityError), o
        elif i % 17 == 9:
            assert isinstance(o, Boom)
    assert set(ok) == {i for i in range(120) if i % 13 != 6 and i % 17 != 9}
    by_conv: dict[str, list[int]] = {}
    for conv, seq in ok.values():
        by_conv.setdefault(conv, []).append(seq)
    async with hub.read() as s:
        counters = dict((await s.execute(select(
            ConversationSeq.conversation_id, ConversationSeq.max_seq).where(
            ConversationSeq.tenant_id == "t1"))).all())
        nicknames = dict((await s.execute(select(User.user_id, User.nickname).where(
            User.tenant_id == "t1", User.user_id != "u-1"))).all())
        events = (await s.execute(select(Event.payload).where(
            Event.tenant_id == "t1"))).scalars().all()
    for conv, seqs in by_conv.items():
        assert sorted(seqs) == list(range(1, len(seqs) + 1)), conv  # no gap, no repeat
        assert counters[conv] == len(seqs)
    assert nicknames == {f"u{i}": f"{conv}:{seq}" for i, (conv, seq) in ok.items()}
    assert sorted(int(orjson.loads(p)["userID"][1:]) for p in events) == sorted(ok)


async def test_callers_return_after_commit_and_post_commit_runs_in_order(
        server: Server) -> None:
    hub = server.hub
    order: list[int] = []
    seen_by_caller: list[bool] = []

    def write(i: int) -> Any:
        async def fn(tx: Tx) -> None:
            tx.session.add(_user(i))
            tx.on_commit(lambda: order.append(i))
        return fn

    async def caller(i: int) -> None:
        await hub.write(CTX, write(i))
        # Read on another connection on PostgreSQL: the row is committed, not just flushed.
        async with hub.read() as s:
            seen_by_caller.append(await s.get(User, ("t1", f"u{i}")) is not None)

    tasks = []
    for i in range(60):
        tasks.append(asyncio.create_task(caller(i)))
        if i % 10 == 0:
            await asyncio.sleep(0)  # let the writer start a batch mid-stream
    await asyncio.gather(*tasks)
    assert all(seen_by_caller) and len(seen_by_caller) == 60
    if server.hub.engine.dialect.name == "sqlite":
        assert order == list(range(60))  # one writer: commit order is queue order
    else:
        assert sorted(order) == list(range(60))


async def test_async_post_commit_work_is_awaited_by_its_caller(server: Server) -> None:
    done: list[str] = []

    async def later() -> None:
        await asyncio.sleep(0.01)
        done.append("post")

    async def fn(tx: Tx) -> str:
        tx.on_commit(later)
        return "result"

    assert await server.hub.write(CTX, fn) == "result"
    assert done == ["post"]


@pytest.mark.parametrize("database", ["postgresql"], indirect=True)
async def test_a_deadlocked_write_is_retried(database: Database, make_server: Any) -> None:
    # Two writers lock two seq rows in opposite orders; PostgreSQL aborts one of them,
    # whose write runs again in a later batch. Both end up committed, each once.
    srv = await make_server(settings_for(database))
    runs: list[str] = []

    def crossing(name: str, first: str, second: str) -> Any:
        async def fn(tx: Tx) -> None:
            runs.append(name)
            await allocate(tx.session, "t1", first)
            await asyncio.sleep(0.2)
            await allocate(tx.session, "t1", second)
        return fn

    one = asyncio.create_task(srv.hub.write(CTX, crossing("one", "a", "b")))
    await asyncio.sleep(0.1)  # `one` is in its own batch before `two` is queued
    two = asyncio.create_task(srv.hub.write(CTX, crossing("two", "b", "a")))
    await asyncio.gather(one, two)
    assert len(runs) == 3  # one of them ran twice
    async with srv.hub.read() as s:
        seqs = dict((await s.execute(select(ConversationSeq.conversation_id,
                                            ConversationSeq.max_seq).where(
            ConversationSeq.tenant_id == "t1"))).all())
    assert seqs == {"a": 2, "b": 2}
    async with srv.hub.read() as s:
        assert (await s.execute(select(func.count()).select_from(User))).scalar_one() == 0


async def test_driver_only_writes_commit_without_a_session(server: Server) -> None:
    # orm=False writes through tx.db alone: on SQLite their batch runs on the driver
    # connection with no ORM session; a write that asks for tx.session anyway sends its
    # batch round again with one, and every write still commits once or fails alone.
    hub = server.hub
    runs: dict[int, int] = {}
    without_session: set[int] = set()

    def write(i: int) -> Any:
        async def fn(tx: Tx) -> int:
            runs[i] = runs.get(i, 0) + 1
            if not tx.has_session:
                without_session.add(i)
            await tx.allocate("c")
            tx.after(_AFTER, {"userID": f"u{i}"})
            user = "u-1" if i % 11 == 5 else f"u{i}"  # u-1 exists: a duplicate key
            await tx.insert(_INSERT_USER, [{
                "tenant_id": "t1", "user_id": user, "nickname": "", "face_url": "",
                "ex": "", "create_time": 0}])
            if i == 250:
                tx.session  # noqa: B018  # asks for the ORM session
            if i % 7 == 3:
                raise Boom(i)
            return i
        return fn

    await _add_user_minus_one(hub)
    clean = [i for i in range(100) if i % 11 != 5 and i % 7 != 3]
    assert await asyncio.gather(*(hub.write(CTX, write(i), orm=False)
                                  for i in clean)) == clean
    if hub.committer._engine is not None:  # SQLite
        assert without_session == set(clean)
    mixed = range(100, 220)
    outcomes = await asyncio.gather(*(hub.write(CTX, write(i), orm=False) for i in mixed),
                                    return_exceptions=True)
    ok = set(clean) | {i for i, o in zip(mixed, outcomes, strict=True) if o == i}
    for i, o in zip(mixed, outcomes, strict=True):
        if i % 11 == 5:
            assert isinstance(o, IntegrityError), o
        elif i % 7 == 3:
            assert isinstance(o, Boom)
    asking = [i for i in range(240, 260) if i % 11 != 5 and i % 7 != 3]
    assert await asyncio.gather(*(hub.write(CTX, write(i), orm=False)
                                  for i in asking)) == asking
    if hub.committer._engine is not None:  # the batch ran again, with a session
        assert runs[250] == 2 and 250 in without_session
    ok |= set(asking)
    assert ok == {i for i in (*range(220), *range(240, 260)) if i % 11 != 5 and i % 7 != 3}
    assert await _user_ids(server) == {"u-1"} | {f"u{i}" for i in ok}
    async with hub.read() as s:
        seq = await s.get(ConversationSeq, ("t1", "c"))
        events = (await s.execute(select(Event.payload).where(
            Event.tenant_id == "t1"))).scalars().all()
    assert seq is not None and seq.max_seq == len(ok)  # no gap from a failure or a rerun
    assert sorted(int(orjson.loads(p)["userID"][1:]) for p in events) == sorted(ok)
