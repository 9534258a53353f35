"""Delivery history and replay: /webhook/events/list and /webhook/replay, and the same for
`imhub events list|replay` (which work on the database while the server runs).

Times (`since`, `until`) are the events' occurredAt, unix milliseconds, both inclusive.

Replay sets deliveries back to `pending`, due now, with a fresh retry schedule; their
attempts stay in the history and the numbering goes on. `{eventIDs}` replays every
delivery of those events (whatever its state) to endpoints still enabled; an event
that reached no endpoint is fanned out again to the endpoints that take it now.
`{endpointID, status: "failed"}` replays that endpoint's failed deliveries, in chunks
of one transaction each, so a long replay neither holds the database nor starts over.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Literal, cast

import orjson
from pydantic import Field, model_validator
from sqlalchemy import Select, Table, and_, exists, func, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncEngine

from ..api.routing import Router
from ..bus.catalogue import BY_COMMAND, HOOKS
from ..clock import now_ms
from ..context import Ctx
from ..core import Hub
from ..db.delivery import (
    FAILED,
    IS_FAILED,
    PENDING,
    STATUSES,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
)
from ..db.models import Event
from ..domain._schema import ID, Millis, Pagination, Req
from ..errors import BadArgument, NotFound
from .dispatch import ConfigSource, OutboxEvent, Policies, fan_out

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection

router = Router()

_events = cast(Table, Event.__table__)
_deliveries = cast(Table, WebhookDelivery.__table__)
_attempts = cast(Table, WebhookAttempt.__table__)
_endpoints = cast(Table, WebhookEndpoint.__table__)

REPLAY_CHUNK = 500
Progress = Callable[[int], None]
Status = Literal["pending", "delivered", "failed"]


class ListReq(Req):
    status: Status | None = None
    callbackCommand: str | None = None
    endpointID: ID | None = None
    since: Millis | None = None
    until: Millis | None = None
    pagination: Pagination = Field(default_factory=Pagination)


class ReplayReq(Req):
    eventIDs: list[ID] | None = Field(default=None, max_length=10_000)
    endpointID: ID | None = None
    status: Literal["failed"] | None = None
    since: Millis | None = None
    until: Millis | None = None

    @model_validator(mode="after")
    def _one_form(self) -> ReplayReq:
        if self.eventIDs:
            if self.endpointID is not None or self.status is not None:
                raise ValueError("give either eventIDs, or endpointID with status 'failed'")
        elif self.endpointID is None or self.status != "failed":
            raise ValueError("give eventIDs, or endpointID with status 'failed'")
        return self


def _command(name: str | None) -> str | None:
    if name is None:
        return None
    hook = BY_COMMAND.get(name) or HOOKS.get(name)
    if hook is None:
        raise BadArgument(f"callbackCommand: unknown {name!r}")
    return hook.callback_command


def _event_query(tenant_id: str, *, status: str | None = None, command: str | None = None,
                 endpoint_id: str | None = None, since: int | None = None,
                 until: int | None = None) -> Select[Any]:
    q = select(_events).where(_events.c.tenant_id == tenant_id)
    if command is not None:
        q = q.where(_events.c.callback_command == command)
    if since is not None:
        q = q.where(_events.c.occurred_at >= since)
    if until is not None:
        q = q.where(_events.c.occurred_at <= until)
    if status is not None or endpoint_id is not None:
        cond = [_deliveries.c.tenant_id == tenant_id,
                _deliveries.c.event_id == _events.c.event_id]
        if status is not None:
            cond.append(_deliveries.c.status == status)
        if endpoint_id is not None:
            cond.append(_deliveries.c.endpoint_id == endpoint_id)
        q = q.where(exists().where(and_(*cond)))
    return q.order_by(_events.c.pos.desc())


async def list_events(db: AsyncEngine | AsyncConnection, tenant_id: str, *,
                      status: str | None = None, command: str | None = None,
                      endpoint_id: str | None = None, since: int | None = None,
                      until: int | None = None, page: int = 1, size: int = 100
                      ) -> dict[str, Any]:
    """Events, newest first, each with its deliveries and their attempts."""
    if status is not None and status not in STATUSES:
        raise BadArgument(f"status: must be one of {', '.join(STATUSES)}")
    q = _event_query(tenant_id, status=status, command=_command(command),
                     endpoint_id=endpoint_id, since=since, until=until)
    async with _connect(db) as conn:
        total = (await conn.execute(
            select(func.count()).select_from(q.order_by(None).subquery()))).scalar_one()
        events = (await conn.execute(q.limit(size).offset((page - 1) * size))).all()
        ids = [e.event_id for e in events]
        deliveries: dict[str, list[dict[str, Any]]] = {}
        if ids:
            dq = select(_deliveries).where(_deliveries.c.tenant_id == tenant_id,
                                           _deliveries.c.event_id.in_(ids))
            if endpoint_id is not None:
                dq = dq.where(_deliveries.c.endpoint_id == endpoint_id)
            if status is not None:
                dq = dq.where(_deliveries.c.status == status)
            drows = (await conn.execute(dq.order_by(_deliveries.c.endpoint_id))).all()
            attempts: dict[tuple[str, str], list[dict[str, Any]]] = {}
            if drows:
                arows = await conn.execute(
                    select(_attempts)
                    .where(_attempts.c.tenant_id == tenant_id,
                           _attempts.c.event_id.in_(ids))
                    .order_by(_attempts.c.attempt))
                for a in arows:
                    attempts.setdefault((a.event_id, a.endpoint_id), []).append({
                        "attempt": a.attempt, "statusCode": a.status_code,
                        "latencyMs": a.latency_ms, "error": a.error,
                        "response": a.response, "worker": a.worker, "time": a.create_time,
                    })
            for d in drows:
                deliveries.setdefault(d.event_id, []).append({
                    "endpointID": d.endpoint_id, "status": d.status,
                    "attemptCount": d.attempts,
                    "nextAttemptAt": d.next_attempt_at if d.status == PENDING else 0,
                    "lastStatus": d.last_status, "lastError": d.last_error,
                    "updateTime": d.update_time,
                    "attempts": attempts.get((d.event_id, d.endpoint_id), []),
                })
    return {"total": int(total), "events": [{
        "eventID": e.event_id, "callbackCommand": e.callback_command, "key": e.key,
        "operationID": e.operation_id, "occurredAt": e.occurred_at,
        "dispatched": bool(e.dispatched), "body": orjson.loads(e.payload),
        "deliveries": deliveries.get(e.event_id, []),
    } for e in events]}


class _connect:
    """An engine's connection, or the caller's connection as it is."""

    def __init__(self, db: AsyncEngine | AsyncConnection) -> None:
        self._db = db
        self._own: AsyncConnection | None = None

    async def __aenter__(self) -> AsyncConnection:
        if isinstance(self._db, AsyncEngine):
            self._own = await self._db.connect()
            return self._own
        return self._db

    async def __aexit__(self, *exc: object) -> None:
        if self._own is not None:
            await self._own.close()


def _requeue_values(now: int) -> dict[str, Any]:
    return {"status": PENDING, "tries": 0, "next_attempt_at": now, "lease_owner": "",
            "lease_until": 0, "update_time": now}


async def _live_endpoints(conn: AsyncConnection, tenant_id: str) -> set[str]:
    return set((await conn.execute(select(_endpoints.c.endpoint_id).where(
        _endpoints.c.tenant_id == tenant_id, _endpoints.c.disabled == 0,
        _endpoints.c.deleted == 0))).scalars())


async def replay_events(db: AsyncEngine, tenant_id: str, event_ids: Sequence[str],
                        configs: ConfigSource | None = None) -> int:
    """Requeue every delivery of these events to an enabled endpoint; fan out again the
    ones that reached none. Unknown (or another tenant's) IDs: NotFound, nothing done."""
    ids = list(dict.fromkeys(event_ids))
    now = now_ms()
    policies = Policies(configs)
    await policies.load([tenant_id])  # before the transaction: it may read the database
    async with db.begin() as conn:
        rows = (await conn.execute(select(_events).where(
            _events.c.tenant_id == tenant_id, _events.c.event_id.in_(ids)))).all()
        found = {r.event_id: r for r in rows}
        for eid in ids:
            if eid not in found:
                raise NotFound(f"event {eid} not found")
        live = await _live_endpoints(conn, tenant_id)
        have = (await conn.execute(
            select(_deliveries.c.event_id, _deliveries.c.endpoint_id, _deliveries.c.status)
            .where(_deliveries.c.tenant_id == tenant_id,
                   _deliveries.c.event_id.in_(ids)))).all()
        targets = [(eid, ep) for eid, ep, st in have if ep in live and st != PENDING]
        requeued = 0
        for i in range(0, len(targets), REPLAY_CHUNK):
            chunk = targets[i:i + REPLAY_CHUNK]
            res = await conn.execute(
                update(_deliveries)
                .where(_deliveries.c.tenant_id == tenant_id,
                       tuple_(_deliveries.c.event_id, _deliveries.c.endpoint_id).in_(chunk),
                       _deliveries.c.status != PENDING)
                .values(**_requeue_values(now)))
            requeued += res.rowcount or 0
        reached = {eid for eid, _ep, _st in have}
        lonely = [OutboxEvent.of(found[eid]) for eid in ids
                  if eid not in reached and found[eid].dispatched]
        if lonely:
            out = await fan_out(conn, sorted(lonely, key=lambda e: e.pos), policies, now=now)
            requeued += out.deliveries
    return requeued


def _failed_query(tenant_id: str, endpoint_id: str, since: int | None,
                  until: int | None) -> Select[Any]:
    q = (select(_deliveries.c.event_id, _deliveries.c.event_pos)
         .where(_deliveries.c.tenant_id == tenant_id,
                _deliveries.c.endpoint_id == endpoint_id, IS_FAILED))
    if since is not None or until is not None:
        q = q.join(_events, _events.c.event_id == _deliveries.c.event_id)
        if since is not None:
            q = q.where(_events.c.occurred_at >= since)
        if until is not None:
            q = q.where(_events.c.occurred_at <= until)
    return q


async def count_failed(db: AsyncEngine, tenant_id: str, endpoint_id: str,
                       since: int | None = None, until: int | None = None) -> int:
    q = _failed_query(tenant_id, endpoint_id, since, until)
    async with db.connect() as conn:
        return int((await conn.execute(
            select(func.count()).select_from(q.subquery()))).scalar_one())


async def replay_failed(db: AsyncEngine, tenant_id: str, endpoint_id: str, *,
                        since: int | None = None, until: int | None = None,
                        progress: Progress | None = None) -> int:
    """Requeue the endpoint's failed deliveries, oldest first, a chunk per transaction.

    The walk goes by event position, so a delivery that fails again while the replay
    runs is not taken twice.
    """
    async with db.connect() as conn:
        row = (await conn.execute(select(_endpoints.c.disabled, _endpoints.c.deleted).where(
            _endpoints.c.tenant_id == tenant_id,
            _endpoints.c.endpoint_id == endpoint_id))).first()
    if row is None or row.deleted:
        raise NotFound(f"endpoint {endpoint_id} not found")
    if row.disabled:
        raise BadArgument(f"endpoint {endpoint_id} is disabled; enable it first "
                          "(/webhook/endpoint/update with disabled: false)")
    after = -1
    requeued = 0
    base = _failed_query(tenant_id, endpoint_id, since, until)
    while True:
        async with db.begin() as conn:
            chunk = (await conn.execute(
                base.where(_deliveries.c.event_pos > after)
                .order_by(_deliveries.c.event_pos).limit(REPLAY_CHUNK))).all()
            if not chunk:
                break
            after = max(int(r.event_pos) for r in chunk)
            res = await conn.execute(
                update(_deliveries)
                .where(_deliveries.c.tenant_id == tenant_id,
                       _deliveries.c.endpoint_id == endpoint_id,
                       _deliveries.c.event_id.in_([r.event_id for r in chunk]),
                       _deliveries.c.status == FAILED)
                .values(**_requeue_values(now_ms())))
            n = res.rowcount or 0
        requeued += n
        if progress is not None:
            progress(n)
    return requeued


@router.post("/webhook/events/list", ListReq, admin_only=True)
async def events_list(hub: Hub, ctx: Ctx, req: ListReq) -> dict[str, Any]:
    """After events, newest first, with their deliveries and attempts."""
    p = req.pagination
    return await list_events(hub.read_engine or hub.engine, ctx.tenant_id, status=req.status,
                             command=req.callbackCommand, endpoint_id=req.endpointID,
                             since=req.since, until=req.until, page=p.pageNumber,
                             size=p.showNumber)


@router.post("/webhook/replay", ReplayReq, admin_only=True)
async def replay(hub: Hub, ctx: Ctx, req: ReplayReq) -> dict[str, int]:
    """Send events again: {eventIDs} or {endpointID, status: "failed", since?, until?}."""
    if req.eventIDs:
        n = await replay_events(hub.engine, ctx.tenant_id, req.eventIDs,
                                getattr(hub, "webhook_configs", None))
    else:
        assert req.endpointID is not None
        n = await replay_failed(hub.engine, ctx.tenant_id, req.endpointID, since=req.since,
                                until=req.until)
    if n and hub.delivery is not None:
        hub.delivery.poke()
    return {"requeued": n}
