"""One transaction per action: state change, notifications and after-events commit together.

When the committer runs a batch whole (hub/committer.py), its writes share a `Batch`:
rows written through `Tx.insert` and the outbox rows of `Tx.after` are inserted at the
end of the batch, one executemany per statement, and a conversation's seqs are counted
in memory after its first allocation in the batch (which takes the row's lock on
PostgreSQL), its counter row set once at the end. On SQLite, where the committer is the
only writer, it also remembers each conversation's newest committed seq between batches,
so a conversation it has seen needs no read at all: every seq must therefore be
allocated through `Tx.allocate`. A batch of sends thus costs one
statement per message and one per conversation, rather than four per message. A write
run on its own (a savepoint per write) does all of it at once instead.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import orjson
from sqlalchemy import bindparam, insert, literal, select
from sqlalchemy.ext.asyncio import AsyncSession

from .bus.catalogue import Hook
from .bus.handler import AfterEvent
from .clock import new_id, now_ms
from .context import Ctx
from .db.delivery import WebhookEndpoint
from .db.fast import Driver, On, Statement
from .db.models import Event
from .domain.seqs import SET_MAX_SEQ, allocate

PostCommit = Callable[[], Awaitable[None] | None]

# Every column but the autoincrement `pos`, compiled once (hub/db/fast.py).
_INSERT_EVENTS = Statement(insert(Event).values(
    {c.name: bindparam(c.name) for c in Event.__table__.columns if c.name != "pos"}))


# Whether a tenant has an endpoint that may take its after-events.
_HAS_ENDPOINT = Statement(select(literal(1)).where(
    WebhookEndpoint.tenant_id == bindparam("t"), WebhookEndpoint.disabled == 0,
    WebhookEndpoint.deleted == 0).limit(1))


class Batch:
    """What the writes of one whole batch leave for its end (see the module docstring)."""

    __slots__ = ("_known", "_rows", "_seqs", "last_seqs", "undispatched")

    def __init__(self, known_seqs: dict[tuple[str, str], int] | None = None) -> None:
        self._rows: dict[Statement, list[Any]] = {}
        # (tenant, conversation) -> [the last seq handed out, the last one stored]
        self._seqs: dict[tuple[str, str], list[int]] = {}
        # The newest seq of conversations as committed, when the committer knows it (the
        # only writer, on SQLite): a conversation found there needs no read of its counter.
        self._known = known_seqs
        # After `flush`: the newest seq of each conversation this batch wrote to.
        self.last_seqs: dict[tuple[str, str], int] = {}
        # Whether it left outbox rows for the dispatcher (hub/webhooks/dispatch.py).
        self.undispatched = True

    def insert(self, stmt: Statement, rows: Sequence[Any]) -> None:
        self._rows.setdefault(stmt, []).extend(rows)

    def allocate_now(self, tenant_id: str, conversation_id: str, n: int) -> int | None:
        """`allocate` when no read is needed (the counter counted in this batch, or known
        from the last); None otherwise."""
        key = (tenant_id, conversation_id)
        counter = self._seqs.get(key)
        if counter is None:
            stored = self._known.get(key) if self._known is not None else None
            if stored is None:
                return None
            counter = self._seqs[key] = [stored, stored]
        counter[0] += n
        return counter[0] - n + 1

    async def allocate(self, db: On, tenant_id: str, conversation_id: str, n: int) -> int:
        first = self.allocate_now(tenant_id, conversation_id, n)
        if first is None:
            first = await allocate(db, tenant_id, conversation_id, n)
            last = first + n - 1
            self._seqs[(tenant_id, conversation_id)] = [last, last]
        return first

    async def flush(self, db: On) -> None:
        """Write what the batch left: its rows in the order first written, then counters."""
        for stmt, rows in self._rows.items():
            await stmt.many(db, rows)
        moved = [{"t": t, "c": c, "n": last} for (t, c), (last, stored) in self._seqs.items()
                 if last != stored]
        if moved:
            await SET_MAX_SEQ.many(db, moved)
        self.last_seqs = {key: last for key, (last, _) in self._seqs.items()}
        self._rows, self._seqs = {}, {}

    async def settle_outbox(self, db: Driver) -> None:
        """Store the events of tenants with no endpoint as dispatched already: the
        dispatcher would fan them out to nobody, at a transaction per batch. Asked inside
        this batch's transaction, under SQLite's one writer, so an endpoint committed
        before it takes its events and one committed after it would not have anyway."""
        rows = self._rows.get(_INSERT_EVENTS)
        if not rows:
            self.undispatched = False
            return
        served: dict[str, bool] = {}
        for row in rows:
            tenant_id = row["tenant_id"]
            found = served.get(tenant_id)
            if found is None:
                found = served[tenant_id] = bool(await _HAS_ENDPOINT.rows(db, {"t": tenant_id}))
            if not found:
                row["dispatched"] = 1
        self.undispatched = any(served.values())


class SessionNeeded(Exception):
    """A write used `Tx.session` in a batch run without one (the committer runs that
    batch again with a session)."""


class Tx:
    """What a domain action writes through. Created and committed by the group commit
    (hub/committer.py) for each `Hub.write`."""

    __slots__ = ("_batch", "_post", "_rows", "_session", "ctx", "db", "events")

    def __init__(self, session: AsyncSession | None, ctx: Ctx, db: On | None = None,
                 batch: Batch | None = None) -> None:
        self._session = session
        self._batch = batch
        # Where hub/db/fast.py statements run: the batch's driver connection when the
        # committer resolved it (no savepoint in between), else the session.
        found = db if db is not None else session
        assert found is not None, "a Tx needs a session or a driver connection"
        self.db: On = found
        self.ctx = ctx
        self.events: list[AfterEvent] = []
        self._rows: list[dict[str, Any]] = []
        self._post: list[PostCommit] = []

    def after(self, hook: Hook, payload: dict[str, Any], *, key: str | None = None,
              ctx: Ctx | None = None) -> AfterEvent:
        """Record an after-event; it becomes an outbox row of this transaction. `ctx`: the
        action's, when one write stores several actions (a batch of sends)."""
        ctx = ctx or self.ctx
        if key is None:
            found = payload.get(hook.key, "")
            key = found if type(found) is str else str(found)
        # hook, event_id, tenant_id, operation_id, occurred_at, key, payload (by position:
        # one per message sent)
        ev = AfterEvent(hook, new_id("evt"), ctx.tenant_id, ctx.operation_id, now_ms(), key,
                        payload)
        self._rows.append({
            "event_id": ev.event_id, "tenant_id": ev.tenant_id,
            "callback_command": hook.callback_command, "key": ev.key,
            "operation_id": ev.operation_id, "occurred_at": ev.occurred_at,
            "payload": orjson.dumps(ev.body()).decode(), "dispatched": 0,
        })
        self.events.append(ev)
        return ev

    @property
    def session(self) -> AsyncSession:
        """The ORM session of this transaction. A batch of `orm=False` writes on SQLite
        runs without one (hub/committer.py): asking for it there runs the batch again
        with a session."""
        if self._session is None:
            raise SessionNeeded
        return self._session

    @property
    def has_session(self) -> bool:
        """Whether this write runs with an ORM session (a batch of `orm=False` writes on
        SQLite runs without one, until a write asks for `session`)."""
        return self._session is not None

    @property
    def undispatched(self) -> bool:
        """Whether its after-events wait for the dispatcher (always, outside a batch)."""
        return bool(self.events) and (self._batch is None or self._batch.undispatched)

    async def insert(self, stmt: Statement, rows: Sequence[Any]) -> None:
        """Insert `rows` with a compiled statement (hub/db/fast.py): now, or at the end of
        the batch. Nothing in this transaction may read them back, or change them (a row
        may be an object, a Draft), before the commit."""
        if self._batch is not None:
            self._batch.insert(stmt, rows)
        else:
            await stmt.many(self.db, rows)

    def allocate_now(self, conversation_id: str, n: int = 1, *,
                     tenant_id: str | None = None) -> int | None:
        """`allocate` without waiting, when the batch can count it without a read (a
        counter it counted already, or the committer's memory on SQLite); else None."""
        if self._batch is None:
            return None
        return self._batch.allocate_now(tenant_id or self.ctx.tenant_id, conversation_id, n)

    async def allocate(self, conversation_id: str, n: int = 1, *,
                       tenant_id: str | None = None) -> int:
        """Reserve n seqs of a conversation of this tenant (or of `tenant_id`); return
        the first."""
        t = tenant_id or self.ctx.tenant_id
        if self._batch is not None:
            return await self._batch.allocate(self.db, t, conversation_id, n)
        return await allocate(self.db, t, conversation_id, n)

    async def flush(self) -> None:
        """Insert the outbox rows recorded so far (or leave them to the batch). The
        committer calls this at the end of the write; one INSERT costs less than the ORM's
        flush."""
        if self._rows:
            rows, self._rows = self._rows, []
            await self.insert(_INSERT_EVENTS, rows)

    def on_commit(self, fn: PostCommit) -> None:
        """Run `fn` after a successful commit (pushes, cache updates); never on rollback."""
        self._post.append(fn)

    @property
    def post_commit(self) -> list[PostCommit]:
        return self._post
