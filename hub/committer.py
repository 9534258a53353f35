"""Group commit: concurrent `Hub.write` calls share one transaction.

A writer task takes up to `max_batch` queued writes, opens one transaction, runs the
write functions (so that a failing one fails alone: see below),
commits once, and then, in queue order, hands each write's after-events to the bus, runs
its synchronous post-commit work and resolves its caller. A caller therefore returns
only after its transaction has committed, and pushes leave in commit order.

Under load this turns N commits (N fsyncs on SQLite with synchronous=FULL) into one; an
idle server commits each write at once, without waiting to fill a batch.

SQLite has one writer (and imhub gives it one connection), so it gets one writer task.
PostgreSQL gets a few: seq allocation is an upsert under a row lock, so concurrent
batches stay correct. Two batches that lock the same rows in opposite orders deadlock;
PostgreSQL aborts one statement, and that write is queued again for a later batch. So a
write function may run more than once: it must write only through `tx` (never
`hub.read()` or `hub.write()` inside, which on SQLite's single connection would wait for
itself) and keep no state between runs.

A batch is first run whole, without savepoints: each write straight into the one
transaction, on the driver connection resolved once for the batch (`Tx.db`), its
compiled-statement rows and seq counters gathered for the end of the batch (hub/tx.py's
`Batch`). Writes rarely fail, and a savepoint per write (two statements, or the ORM's
`begin_nested()` bookkeeping) cost more than the write itself. If any write raises, the
whole transaction is rolled back and the batch runs again the careful way: each write in
its own savepoint, so that only the failing one fails (and a deadlocked one is queued
again). A write function must therefore let database errors propagate (never catch one
and go on): on PostgreSQL an error aborts the transaction it happened in.

A write declared `orm=False` writes only through `tx.db`, `tx.insert`, `tx.allocate`,
`tx.after` and the compiled statements of hub/db/fast.py, as sending a message does. On
SQLite a batch of such writes runs whole on the driver connection with no ORM session
(`_bare`: its set-up and commit cost more than a small batch's SQL); one that asks for
`tx.session` there anyway sends the batch round again with a session. In the careful
run such a write gets a plain SQL savepoint instead of the session's `begin_nested()`.

Post-commit work that is a coroutine runs in its own task, awaited by the caller; a
failure there is logged, not raised, since the action has committed.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from . import metrics
from .bus import Bus
from .context import Ctx
from .db import fast
from .db.engine import SQLITE_WRITER_BEGIN
from .tx import Batch, SessionNeeded, Tx

log = logging.getLogger("imhub.committer")

WriteFn = Callable[[Tx], Awaitable[Any]]

# PostgreSQL's deadlock_detected and serialization_failure: worth another try.
_RETRY_STATES = frozenset({"40P01", "40001"})
_MAX_ATTEMPTS = 5
_BEGIN = text("SELECT 1")
# From this many actions a batch (writes, counted by their `size`), its COMMIT may run in
# the event loop (hub/db/sqlite.py).
_HURRY = 8
# Conversations whose newest seq is remembered between batches (SQLite), at most.
_KNOWN_SEQS = 100_000


@dataclass(slots=True, eq=False)
class _Item:
    ctx: Ctx
    fn: WriteFn
    orm: bool
    changes_checks: bool
    future: asyncio.Future[tuple[Any, list[asyncio.Task[None]]]]
    size: int = 1
    attempts: int = 0
    tx: Tx | None = None
    result: Any = None
    error: BaseException | None = None
    posts: list[asyncio.Task[None]] = field(default_factory=list)


def _retryable(exc: BaseException) -> bool:
    """A deadlock or serialization failure (counted): worth another try."""
    if isinstance(exc, DBAPIError) and (
            getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
    ) in _RETRY_STATES:
        metrics.commit_conflicts_total.inc()
        return True
    return False


class Committer:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], bus: Bus, *,
                 sqlite: bool, writers: int = 1, max_batch: int = 256) -> None:
        self._sessions = sessions
        self._sqlite = sqlite
        # SQLite's engine, for batches run without a session (`_bare`).
        bind = sessions.kw.get("bind")
        self._engine: AsyncEngine | None = (
            bind if sqlite and isinstance(bind, AsyncEngine) else None)
        self._bus = bus
        self._writers = writers
        self._max_batch = max_batch
        # The newest committed seq of conversations (hub/tx.py's Batch), while this
        # process is the only writer (SQLite); forgotten after a write outside a batch.
        self._known_seqs: dict[tuple[str, str], int] | None = {} if sqlite else None
        self._queue: asyncio.Queue[_Item] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._posts: set[asyncio.Task[None]] = set()
        # Done when the last committed batch's callers have been answered.
        self._resolved: asyncio.Future[None] | None = None
        # Called once per committed batch that wrote after-events (delivery's wake-up).
        self.on_events: Callable[[], None] | None = None
        # Called after a batch with a write that may change what sends check (hub/checks.py).
        self.on_checks_changed: Callable[[], None] | None = None

    async def write(self, ctx: Ctx, fn: WriteFn, *, orm: bool = True,
                    changes_checks: bool = True, size: int = 1) -> Any:
        """Queue `fn` for the next batch; return its result once that batch has committed.
        `orm=False`: `fn` does not use the ORM (only tx.after and hub/db/fast.py
        statements), so on SQLite its savepoint can skip the ORM's bookkeeping.
        `changes_checks=False`: `fn` changes nothing that a send checks (hub/checks.py).
        `size`: how many actions `fn` writes (a batch of sends), for where the COMMIT runs."""
        queue = self._queue if self._queue is not None else self._start()
        future: asyncio.Future[tuple[Any, list[asyncio.Task[None]]]] = (
            asyncio.get_running_loop().create_future())
        queue.put_nowait(_Item(ctx, fn, orm, changes_checks, future, size))
        result, posts = await future
        for task in posts:
            # Shielded: a caller that goes away does not cancel another part's push.
            await asyncio.shield(task)
        return result

    def _start(self) -> asyncio.Queue[_Item]:
        # Started on first use, inside the running loop (Hub is built outside one).
        self._queue = asyncio.Queue()
        self._tasks = [asyncio.create_task(self._run(), name=f"imhub-writer-{i}")
                       for i in range(self._writers)]
        return self._queue

    async def close(self) -> None:
        """Finish queued writes, stop the writers, wait for post-commit tasks."""
        if self._queue is not None:
            await self._queue.join()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks, self._queue = [], None
        if self._resolved is not None:
            await self._resolved  # set once the last batch is answered (each is, before the next)
        while self._posts:
            await asyncio.gather(*list(self._posts), return_exceptions=True)

    async def _run(self) -> None:
        assert self._queue is not None
        queue = self._queue
        while True:
            batch = [await queue.get()]
            while len(batch) < self._max_batch and not queue.empty():
                batch.append(queue.get_nowait())
            # A caller cancelled while queued never learns the outcome: skip its write.
            live = [item for item in batch if not item.future.done()]
            try:
                if live:
                    await self._commit(live)
            except Exception as exc:  # never leave a caller waiting
                log.exception("group commit failed")
                for item in live:
                    if not item.future.done():
                        item.future.set_exception(exc)
            finally:
                for _ in batch:
                    queue.task_done()

    async def _commit(self, batch: list[_Item]) -> None:
        done, retry = await self._whole(batch)
        if done is None:
            done, retry = await self._careful(batch)
        # Before any caller hears of the commit, so that a send after (say) a block sees it.
        if self.on_checks_changed is not None and any(i.changes_checks for i in batch):
            self.on_checks_changed()
        # Resolved here, before the next batch: each hop through the loop's queue of
        # callbacks waits for a whole loop iteration, milliseconds under load, and the
        # acks and pushes of this batch only leave after it (5-10 % more messages/s than
        # resolving from a callback, in A/B runs of bench/chat_throughput.py). Pushes are
        # queued in commit order.
        self._resolved = asyncio.get_running_loop().create_future()
        self._resolve_all(done, self._resolved)
        if self.on_events is not None and any(i.tx and i.tx.undispatched for i in done):
            self.on_events()
        for item in retry:
            assert self._queue is not None
            self._queue.put_nowait(item)

    async def _whole(self, batch: list[_Item]
                     ) -> tuple[list[_Item] | None, list[_Item]]:
        """Run the batch in one transaction without savepoints. (None, []) when a write
        failed among others: the transaction is rolled back and nothing is decided."""
        if self._engine is not None and not any(item.orm for item in batch):
            try:
                return await self._bare(self._engine, batch)
            except SessionNeeded:
                pass  # rolled back: run it again with a session
        async with self._sessions() as session:
            trans = await session.begin()
            try:
                if not self._sqlite:
                    # asyncpg's adapter opens its transaction at its first statement; one
                    # run on the driver directly would otherwise be its own transaction.
                    await session.execute(_BEGIN)
                db = await fast.driver_of(session)
                shared = await self._run_items(batch, session, db)
            except Exception as exc:
                await trans.rollback()
                return self._failed(batch, exc)
            if db.sqlite is not None:
                # A batch this big means writers queue up: commit in the loop if the disk
                # is quick (hub/db/sqlite.py says why).
                db.driver.hurry = sum(i.size for i in batch) >= _HURRY
            try:
                await trans.commit()
            except Exception as exc:
                # The commit itself failed: nothing of this batch is stored.
                for item in batch:
                    item.tx, item.error = None, exc
            else:
                self._learn(shared)
        return batch, []

    async def _bare(self, engine: AsyncEngine, batch: list[_Item]
                    ) -> tuple[list[_Item] | None, list[_Item]]:
        """`_whole` for a batch of `orm=False` writes on SQLite: BEGIN, the writes and
        COMMIT straight on the driver connection, without an ORM session, whose set-up
        and commit cost ~0.3 ms a batch, more than a small batch's SQL. A write that asks
        for `tx.session` anyway raises SessionNeeded, after the rollback."""
        async with engine.connect() as conn:
            db = await fast.driver_of(conn)
            assert db.sqlite is not None
            db.sqlite.execute(SQLITE_WRITER_BEGIN)
            try:
                shared = await self._run_items(batch, None, db)
            except BaseException as exc:
                if db.sqlite.in_transaction:
                    db.sqlite.execute("ROLLBACK")
                if isinstance(exc, SessionNeeded) or not isinstance(exc, Exception):
                    for item in batch:
                        item.tx = item.result = None
                    raise
                return self._failed(batch, exc)
            db.driver.hurry = sum(i.size for i in batch) >= _HURRY
            try:
                await db.driver.commit()
            except Exception as exc:
                if db.sqlite.in_transaction:
                    db.sqlite.execute("ROLLBACK")
                for item in batch:
                    item.tx, item.error = None, exc
            else:
                self._learn(shared)
        return batch, []

    def _learn(self, batch: Batch) -> None:
        """Remember the seqs a committed batch wrote (SQLite only)."""
        known = self._known_seqs
        if known is not None:
            if len(known) + len(batch.last_seqs) > _KNOWN_SEQS:
                known.clear()  # rarely reached; a clear is simpler than an LRU
            known.update(batch.last_seqs)

    async def _run_items(self, batch: list[_Item], session: AsyncSession | None,
                         db: fast.Driver) -> Batch:
        shared = Batch(self._known_seqs)
        for item in batch:
            tx = Tx(session, item.ctx, db, shared)
            item.result = await item.fn(tx)
            await tx.flush()
            if item.orm and session is not None:
                await session.flush()  # its errors are its own, not the next one's
            item.tx = tx
        if db.sqlite is not None:
            await shared.settle_outbox(db)
        await shared.flush(db)
        return shared

    @staticmethod
    def _failed(batch: list[_Item], exc: Exception
                ) -> tuple[list[_Item] | None, list[_Item]]:
        """After a rolled-back whole run: the careful way for several writes, or the one
        write's own outcome."""
        for other in batch:
            other.tx = other.result = None
        retryable = _retryable(exc)
        if len(batch) > 1:
            return None, []
        # A write alone: its error is its own, no need to run it again.
        item = batch[0]
        item.attempts += 1
        if retryable and item.attempts < _MAX_ATTEMPTS:
            return [], [item]
        item.error = exc
        return [item], []

    async def _careful(self, batch: list[_Item]) -> tuple[list[_Item], list[_Item]]:
        """Run the batch with a savepoint per write, so that a failing one fails alone."""
        if self._known_seqs is not None:
            self._known_seqs.clear()  # its writes allocate outside a Batch
        done: list[_Item] = []
        retry: list[_Item] = []
        async with self._sessions() as session:
            try:
                async with session.begin():
                    for item in batch:
                        tx = Tx(session, item.ctx)
                        try:
                            async with self._savepoint(session, item):
                                item.result = await item.fn(tx)
                                await tx.flush()
                        except Exception as exc:
                            item.attempts += 1
                            if _retryable(exc) and item.attempts < _MAX_ATTEMPTS:
                                retry.append(item)
                            else:
                                item.error = exc
                                done.append(item)
                            continue
                        item.tx = tx
                        done.append(item)
            except Exception as exc:
                # The commit itself failed: nothing of this batch is stored.
                for item in done:
                    if item.error is None:
                        item.tx, item.error = None, exc
        return done, retry

    def _savepoint(self, session: AsyncSession, item: _Item) -> AbstractAsyncContextManager[Any]:
        if item.orm or not self._sqlite:
            return session.begin_nested()
        return fast.savepoint(session)

    def _resolve_all(self, items: list[_Item], resolved: asyncio.Future[None]) -> None:
        try:
            for item in items:
                try:
                    self._resolve(item)
                except Exception:  # committed: its caller must not hear otherwise
                    log.exception("after-commit work failed", extra={
                        "operationID": item.ctx.operation_id})
                    if item.error is None and not item.future.done():
                        item.future.set_result((item.result, item.posts))
        finally:
            resolved.set_result(None)

    def _resolve(self, item: _Item) -> None:
        if item.error is not None:
            if not item.future.done():
                item.future.set_exception(item.error)
            return
        assert item.tx is not None
        tx = item.tx
        if tx.events:
            self._bus.after(tx.events)
        for post in tx.post_commit:
            try:
                out = post()
            except Exception:
                log.exception("post-commit work failed", extra={"operationID":
                                                                 item.ctx.operation_id})
                continue
            if inspect.isawaitable(out):
                task = asyncio.ensure_future(self._logged(out, item.ctx))
                self._posts.add(task)
                task.add_done_callback(self._posts.discard)
                item.posts.append(task)
        if not item.future.done():
            item.future.set_result((item.result, item.posts))

    @staticmethod
    async def _logged(aw: Awaitable[Any], ctx: Ctx) -> None:
        try:
            await aw
        except Exception:
            log.exception("post-commit work failed", extra={"operationID": ctx.operation_id})
