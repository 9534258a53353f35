"""One transaction per action: state change, notifications and after-events commit together."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from sqlalchemy import bindparam, insert
from sqlalchemy.ext.asyncio import AsyncSession

from .bus.catalogue import Hook
from .bus.handler import AfterEvent
from .clock import new_id, now_ms
from .context import Ctx
from .db.fast import On, Statement
from .db.models import Event

PostCommit = Callable[[], Awaitable[None] | None]

# Every column but the autoincrement `pos`, compiled once (hub/db/fast.py).
_INSERT_EVENTS = Statement(insert(Event).values(
    {c.name: bindparam(c.name) for c in Event.__table__.columns if c.name != "pos"}))


class Tx:
    """What a domain action writes through. Created and committed by `Hub.tx`."""

    __slots__ = ("_post", "_rows", "ctx", "db", "events", "session")

    def __init__(self, session: AsyncSession, ctx: Ctx, db: On | None = None) -> None:
        self.session = session
        # Where hub/db/fast.py statements run: the batch's driver connection when the
        # committer resolved it (no savepoint in between), else the session.
        self.db: On = db if db is not None else session
        self.ctx = ctx
        self.events: list[AfterEvent] = []
        self._rows: list[dict[str, Any]] = []
        self._post: list[PostCommit] = []

    def after(self, hook: Hook, payload: dict[str, Any], *, key: str | None = None) -> AfterEvent:
        """Record an after-event; it becomes an outbox row of this transaction."""
        ev = AfterEvent(
            hook=hook,
            event_id=new_id("evt"),
            tenant_id=self.ctx.tenant_id,
            operation_id=self.ctx.operation_id,
            occurred_at=now_ms(),
            key=key if key is not None else str(payload.get(hook.key, "")),
            payload=payload,
        )
        self._rows.append({
            "event_id": ev.event_id, "tenant_id": ev.tenant_id,
            "callback_command": hook.callback_command, "key": ev.key,
            "operation_id": ev.operation_id, "occurred_at": ev.occurred_at,
            "payload": orjson.dumps(ev.body()).decode(), "dispatched": 0,
        })
        self.events.append(ev)
        return ev

    async def flush(self) -> None:
        """Insert the outbox rows recorded so far. The committer calls this at the end of
        the write, inside its savepoint; one INSERT costs less than the ORM's flush."""
        if self._rows:
            rows, self._rows = self._rows, []
            await _INSERT_EVENTS.many(self.db, rows)

    def on_commit(self, fn: PostCommit) -> None:
        """Run `fn` after a successful commit (pushes, cache updates); never on rollback."""
        self._post.append(fn)

    @property
    def post_commit(self) -> list[PostCommit]:
        return self._post
