"""Outbox to deliveries: each committed after-event becomes one delivery row per endpoint
that takes it.

Events are read in `pos` (commit) order, a batch at a time; the batch's deliveries are
inserted and its events marked dispatched in one transaction, so a crash either keeps
the whole batch undispatched or has it fanned out exactly once. On PostgreSQL an
advisory lock lets one node dispatch at a time, which keeps deliveries of one key
created in commit order across nodes.

Which endpoints take an event:

- the endpoint is enabled and not deleted, and its `events` list (if any) names the
  event's callbackCommand;
- the tenant's webhook config admits the event: with no config at all every after event
  goes out (the Svix-like default for a tenant that only registered endpoints); with a
  config, only hooks it enables, subject to their `attentionIds` and content-type
  filters (OpenIM semantics: a hook absent from the file is off).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, cast

import orjson
from sqlalchemy import Table, select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from ..bus.catalogue import BY_COMMAND
from ..db.delivery import WebhookDelivery, WebhookEndpoint
from .endpoints import EndpointInfo

if TYPE_CHECKING:
    from .config import WebhookConfig

DEFAULT_RETRY_SCHEDULE: tuple[float, ...] = (0, 5, 300, 1800, 7200, 18000, 36000, 36000)
# Any constant that no other part of imhub uses as an advisory lock key.
_DISPATCH_LOCK = 726411004

_endpoints = cast(Table, WebhookEndpoint.__table__)
_deliveries = cast(Table, WebhookDelivery.__table__)

# Hot-path statements go to the driver as they are: executemany of plain tuples skips
# SQLAlchemy's per-row parameter processing, which costs more than the database.
_INSERT_DELIVERY = (
    "INSERT INTO webhook_deliveries (tenant_id, event_id, endpoint_id, event_pos, okey,"
    " status, attempts, tries, next_attempt_at, lease_owner, lease_until, last_status,"
    " last_error, create_time, update_time)"
    " VALUES (?, ?, ?, ?, ?, 'pending', 0, 0, ?, ?, ?, 0, '', ?, ?)")


@functools.cache
def _numbered(sql: str) -> str:
    parts = sql.split("?")
    return "".join(f"{p}${i}" for i, p in enumerate(parts[:-1], 1)) + parts[-1]


def driver_sql(conn: AsyncConnection, sql: str) -> str:
    """`sql` written with `?` placeholders, in the driver's own paramstyle."""
    return _numbered(sql) if conn.dialect.paramstyle == "numeric_dollar" else sql

Executor = AsyncConnection | AsyncSession
# Whether the dispatching process takes a new delivery to this endpoint itself.
Take = Callable[[EndpointInfo], bool]


class ConfigSource(Protocol):
    """`hub.webhook_configs` (hub/webhooks/config.py), as far as delivery uses it."""

    async def get(self, tenant_id: str) -> Any: ...


@dataclass(frozen=True, slots=True)
class Policy:
    """What a tenant's webhook config says about its after events."""

    config: WebhookConfig | None = None

    @property
    def retry_schedule(self) -> tuple[float, ...]:
        if self.config is None:
            return DEFAULT_RETRY_SCHEDULE
        return tuple(self.config.retry_schedule) or DEFAULT_RETRY_SCHEDULE

    def admits(self, callback_command: str, body: bytes) -> bool:
        if self.config is None:
            return True
        hook = BY_COMMAND.get(callback_command)
        if hook is None:
            return False
        return bool(self.config.wants_after(hook.name, orjson.loads(body)))


NO_CONFIG = Policy()


class PolicyNotLoaded(Exception):
    """A batch met a tenant whose policy was not loaded before its transaction began."""


class Policies:
    """Tenant policies, loaded before a transaction and read synchronously inside it.

    Loading may read the database (the config cache fills itself through a session of
    its own), which inside a transaction on SQLite's single connection would wait for
    that very transaction; so `load` comes first, and `get` never does I/O.
    """

    def __init__(self, source: ConfigSource | None) -> None:
        self._source = source
        self._memo: dict[str, Policy] = {}

    async def load(self, tenant_ids: Iterable[str]) -> None:
        for tenant_id in set(tenant_ids) - self._memo.keys():
            policy = NO_CONFIG
            if self._source is not None:
                entry = await self._source.get(tenant_id)
                config = getattr(entry, "config", None)
                if config is not None:
                    policy = Policy(config)
            self._memo[tenant_id] = policy

    def get(self, tenant_id: str) -> Policy:
        try:
            return self._memo[tenant_id]
        except KeyError:
            raise PolicyNotLoaded(tenant_id) from None


@dataclass(frozen=True, slots=True)
class OutboxEvent:
    pos: int
    event_id: str
    tenant_id: str
    callback_command: str
    key: str
    operation_id: str
    body: bytes

    @classmethod
    def of(cls, row: Any) -> OutboxEvent:
        return cls(int(row.pos), row.event_id, row.tenant_id, row.callback_command, row.key,
                   row.operation_id, row.payload.encode())


def _by_pos(event: OutboxEvent) -> int:
    return event.pos


@dataclass(slots=True)
class Fanout:
    """One delivery created by a dispatch: the event, its endpoint, and the retry schedule."""

    event: OutboxEvent
    endpoint: EndpointInfo
    schedule: tuple[float, ...]
    leased: bool = False


@dataclass(slots=True)
class Dispatched:
    events: int = 0
    deliveries: int = 0
    leased: list[Fanout] = field(default_factory=list)
    ordered: bool = False


async def enabled_endpoints(db: Executor, tenant_ids: Iterable[str]
                            ) -> dict[str, list[EndpointInfo]]:
    ids = sorted(set(tenant_ids))
    out: dict[str, list[EndpointInfo]] = {t: [] for t in ids}
    if not ids:
        return out
    rows = await db.execute(select(_endpoints).where(
        _endpoints.c.tenant_id.in_(ids), _endpoints.c.disabled == 0,
        _endpoints.c.deleted == 0))
    for row in rows:
        out[row.tenant_id].append(EndpointInfo.of(row))
    return out


async def fan_out(db: AsyncConnection, events: Sequence[OutboxEvent], policies: Policies, *,
                  now: int, lease_owner: str = "", lease_until: int = 0,
                  take: Take | None = None) -> Dispatched:
    """Insert the deliveries of `events`. Those `take` accepts (never key-ordered ones,
    which wait their turn through the claim query) are inserted already leased to
    `lease_owner`, so the caller can send them without claiming them again."""
    result = Dispatched(events=len(events))
    by_tenant = await enabled_endpoints(db, {e.tenant_id for e in events})
    rows: list[tuple[Any, ...]] = []
    # A batch repeats few (tenant, command) pairs: decide each one's endpoints once.
    targets: dict[tuple[str, str], list[EndpointInfo]] = {}
    for ev in events:
        pair = (ev.tenant_id, ev.callback_command)
        endpoints = targets.get(pair)
        if endpoints is None:
            endpoints = targets[pair] = [ep for ep in by_tenant.get(ev.tenant_id, ())
                                         if ep.admits(ev.callback_command)]
        if not endpoints:
            continue
        policy = policies.get(ev.tenant_id)
        if policy.config is not None and not policy.admits(ev.callback_command, ev.body):
            continue
        for ep in endpoints:
            ordered = ep.ordering == "key"
            leased = not ordered and take is not None and take(ep)
            result.ordered |= ordered
            if leased:
                result.leased.append(Fanout(ev, ep, policy.retry_schedule, leased=True))
            # A leased row is not due before its lease ends: the claim query's index
            # then skips it, and it comes due by itself if its worker dies.
            rows.append((ev.tenant_id, ev.event_id, ep.endpoint_id, ev.pos,
                         ev.key if ordered else None, lease_until if leased else now,
                         lease_owner if leased else "", lease_until if leased else 0,
                         now, now))
    if rows:
        await db.exec_driver_sql(driver_sql(db, _INSERT_DELIVERY), rows)
    result.deliveries = len(rows)
    return result


async def undispatched_tenants(conn: AsyncConnection, limit: int) -> set[str]:
    """The tenants of the next batch, so their policies can be loaded beforehand."""
    rows = await conn.execute(text(
        "SELECT DISTINCT tenant_id FROM (SELECT tenant_id FROM events WHERE dispatched = 0"
        " ORDER BY pos LIMIT :n) AS batch"), {"n": limit})
    return set(rows.scalars())


_TAKE_BATCH = (
    "UPDATE events SET dispatched = 1 WHERE pos IN ("
    "SELECT pos FROM events WHERE dispatched = 0 ORDER BY pos LIMIT ?{lock}) "
    "RETURNING pos, event_id, tenant_id, callback_command, key, operation_id, payload")


async def dispatch_batch(conn: AsyncConnection, policies: Policies, *, limit: int, now: int,
                         lease_owner: str = "", lease_until: int = 0,
                         take: Take | None = None) -> Dispatched:
    """Fan out the oldest undispatched events, in the caller's transaction.

    `policies` must hold the batch's tenants (see `undispatched_tenants`); one that
    committed its first event since raises PolicyNotLoaded: roll back and go again.
    """
    postgresql = conn.dialect.name == "postgresql"
    if postgresql:
        await conn.exec_driver_sql("SELECT pg_advisory_xact_lock($1)", (_DISPATCH_LOCK,))
    # One statement takes the batch and marks it, so on SQLite the transaction holds the
    # write lock from its first statement (no read-then-write upgrade to fail).
    sql = _TAKE_BATCH.format(lock=" FOR UPDATE SKIP LOCKED" if postgresql else "")
    taken: list[Any] = list(await conn.exec_driver_sql(driver_sql(conn, sql), (limit,)))
    # RETURNING gives no order; commit order is what key-ordered endpoints need.
    events = [OutboxEvent(pos, eid, tenant, command, key, op, payload.encode())
              for pos, eid, tenant, command, key, op, payload in taken]
    events.sort(key=_by_pos)
    if not events:
        return Dispatched()
    return await fan_out(conn, events, policies, now=now, lease_owner=lease_owner,
                         lease_until=lease_until, take=take)
