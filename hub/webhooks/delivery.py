"""The delivery engine: durable, signed, retried after-event webhooks.

One engine runs per process (in `imhub serve`, or alone in `imhub worker`):

- the dispatcher fans committed outbox events out into delivery rows (dispatch.py),
  woken after each commit that wrote events, polling as a fallback;
- the claimer leases due deliveries (PostgreSQL: `FOR UPDATE SKIP LOCKED`, so several
  workers never take the same row; a dead worker's lease runs out and the row comes
  back). Fresh deliveries are inserted already leased by the dispatcher that made them,
  which saves a claim round trip on the hot path;
- lanes, one per endpoint, send with the endpoint's maxConcurrency and rateLimit (kept
  by all nodes together through Redis when there is one);
- the recorder writes attempts, delivery states and endpoint counters in batches: every
  result that arrives while a batch commits joins the next one (group commit).

The next attempt's time is stored, so a restart resumes the schedule. A delivery is
attempted only while its lease has at least the attempt timeout plus a margin left, so
two workers never make the same attempt at once; a crash between the attempt and its
record makes the attempt again later (at least once, same webhook-id).
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import functools
import heapq
import logging
import os
import random
import secrets
import socket
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, cast
from urllib.parse import urlsplit, urlunsplit

import httpx
from redis.exceptions import RedisError
from sqlalchemy import Table, bindparam, func, select, text, tuple_, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ..clock import now_ms
from ..db.delivery import (
    DELIVERED,
    FAILED,
    IS_PENDING,
    PENDING,
    WebhookDelivery,
    WebhookEndpoint,
)
from ..db.models import Event
from ..metrics import deliveries_total, delivery_seconds, oldest_pending_seconds, queue_depth
from ..settings import DeliverySettings
from .dispatch import (
    ConfigSource,
    OutboxEvent,
    Policies,
    PolicyNotLoaded,
    dispatch_batch,
    driver_sql,
    undispatched_tenants,
)
from .endpoints import EndpointInfo
from .netguard import BlockedAddress, NetGuard
from .request import signed_headers
from .transport import FastTransport

if TYPE_CHECKING:
    from ..core import Hub

_T = TypeVar("_T")
# Runs a function of a Core connection in a write transaction (Hub.run_in_transaction).
Transactions = Callable[[Callable[[AsyncConnection], Awaitable[Any]]], Awaitable[Any]]


class SharedLimits(Protocol):
    """An endpoint's rateLimit and maxConcurrency kept by all nodes together
    (hub/cluster.py's Cluster). Each raises RedisError or OSError when it cannot."""

    async def reserve_slot(self, key: str, interval: float) -> float: ...

    async def acquire_slot(self, key: str, limit: int, hold: float, token: str) -> bool: ...

    async def release_slot(self, key: str, token: str) -> None: ...


# How long a node waits before asking again for a place under a full maxConcurrency.
_FULL_WAIT = (0.01, 0.04)

log = logging.getLogger("imhub.delivery")

RESPONSE_KEEP = 4096
# An attempt starts only with this much lease left beyond the timeout (at most a quarter
# of the lease).
_LEASE_MARGIN_MS = 5_000
# Retry-After is honoured up to this many seconds.
_MAX_RETRY_AFTER = 7 * 24 * 3600
_METRICS_EVERY = 5.0
# A lane holds what its endpoint gets through in this many seconds, at least the minimum.
_LANE_SECONDS = 2.0
_LANE_MIN_HELD = 256
_RATE_WINDOW = 0.25
# The recorder lets results gather this long while attempts are in flight.
_RECORD_LINGER = 0.05
_RECORD_BATCH = 2_000
# Claims for retries falling due come at most this often (seconds): a retry is at most
# this late, well inside its ±20 % jitter.
_CLAIM_GAP = 0.02

_deliveries = cast(Table, WebhookDelivery.__table__)
_endpoints = cast(Table, WebhookEndpoint.__table__)
_events = cast(Table, Event.__table__)

# The per-attempt writes, as driver SQL (see dispatch.driver_sql).
_INSERT_ATTEMPT = (
    "INSERT INTO webhook_attempts (tenant_id, event_id, endpoint_id, attempt, status_code,"
    " latency_ms, error, response, worker, create_time) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
# `status = ?` (always 'pending'): an endpoint disabled meanwhile failed the row, and
# that stands. Bound, not spelled out, so that no planner prefers a partial index on
# pending rows to the primary key (PostgreSQL's generic plans did, scanning the queue
# for every row).
_UPDATE_DELIVERY = (
    "UPDATE webhook_deliveries SET status = ?, attempts = ?, tries = ?, next_attempt_at = ?,"
    " lease_owner = '', lease_until = 0, last_status = ?, last_error = ?, update_time = ?"
    " WHERE tenant_id = ? AND event_id = ? AND endpoint_id = ? AND lease_owner = ?"
    " AND status = ?")
_OUTCOMES = {name: deliveries_total.labels(name)
             for name in ("delivered", "retry", "failed", "gone")}


@dataclass(slots=True)
class _Job:
    """One delivery this process holds the lease of."""

    tenant_id: str
    event_id: str
    endpoint_id: str
    command: str
    operation_id: str
    body: bytes
    attempts: int
    tries: int
    ordered: bool
    lease_until: int
    schedule: tuple[float, ...]


@dataclass(slots=True)
class _Outcome:
    job: _Job
    status: str  # the delivery's new status
    code: int
    error: str
    response: str
    latency: float
    next_attempt_at: int
    at: int
    gone: bool  # 410: disable the endpoint


class _Lane:
    """An endpoint's queue of jobs and its concurrency and rate state."""

    __slots__ = ("alone", "done", "held", "info", "next_slot", "queue", "rate", "since",
                 "urls", "workers")

    def __init__(self, info: EndpointInfo) -> None:
        self.info = info
        self.queue: deque[_Job] = deque()
        self.workers = 0
        self.held = 0  # jobs queued, in flight, or waiting to be recorded
        self.next_slot = 0.0
        self.alone = False  # Redis could not keep its limits: this process does
        self.urls: dict[str, str] = {}
        # Attempts finished per second (smoothed): how much work this lane may hold.
        self.rate = 0.0
        self.done = 0
        self.since = 0.0

    def finished(self, now: float) -> None:
        self.done += 1
        span = now - self.since
        if span >= _RATE_WINDOW:
            measured = self.done / span if self.since else 0.0
            self.rate = measured if not self.rate else (self.rate + measured) / 2
            self.done, self.since = 0, now

    def update(self, info: EndpointInfo) -> None:
        if info.url != self.info.url:
            self.urls.clear()
        self.info = info

    def url_for(self, command: str) -> str:
        url = self.urls.get(command)
        if url is None:
            # OpenIM's path-suffix form; a query string stays after the path.
            parts = urlsplit(self.info.url)
            url = urlunsplit(parts._replace(path=parts.path.rstrip("/") + "/" + command))
            self.urls[command] = url
        return url


def node_name() -> str:
    return f"{socket.gethostname()[:40]}-{os.getpid()}-{secrets.token_hex(3)}"


def retry_after_seconds(headers: Iterable[tuple[bytes, bytes]], now: float) -> float | None:
    """Retry-After as seconds from now: delay-seconds or an HTTP date."""
    for name, value in headers:
        if name.lower() != b"retry-after":
            continue
        raw = value.decode("latin-1").strip()
        if raw.isdigit():
            return min(float(raw), _MAX_RETRY_AFTER)
        try:
            when = email.utils.parsedate_to_datetime(raw)
        except (TypeError, ValueError, IndexError):
            return None
        return min(max(0.0, when.timestamp() - now), _MAX_RETRY_AFTER)
    return None


def _describe(exc: BaseException, timeout: float) -> str:
    if isinstance(exc, httpx.TimeoutException):
        return f"timed out after {timeout:g}s ({type(exc).__name__})"
    cause = exc.__cause__
    if isinstance(cause, BlockedAddress):
        return f"blocked: {cause}"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def next_delay(schedule: tuple[float, ...], tries: int, retry_after: float | None,
               rng: random.Random) -> float | None:
    """Seconds until the next attempt after `tries` failed ones, or None when spent.

    schedule[i] is the wait before attempt i+1 (schedule[0] before the first), with
    +-20 % jitter; a Retry-After pushes it to at least that long.
    """
    if tries >= len(schedule):
        return None
    delay = schedule[tries] * rng.uniform(0.8, 1.2)
    if retry_after is not None:
        delay = max(delay, retry_after)
    return delay


class DeliveryEngine:
    def __init__(self, engine: AsyncEngine, settings: DeliverySettings, *,
                 read_engine: AsyncEngine | None = None,
                 allow_networks: Iterable[str] = (), configs: ConfigSource | None = None,
                 release_leases_on_start: bool | None = None,
                 transactions: Transactions | None = None,
                 shared: SharedLimits | None = None) -> None:
        self._db = engine
        # Endpoints' rateLimit and maxConcurrency across nodes, when clustered.
        self._shared = shared
        # The hub's group commit, when this engine shares SQLite's one writer with it.
        self._transactions = transactions
        # Reads that need no transaction (SQLite: beside the writer, not after it).
        self._reads = read_engine or engine
        self._dialect = engine.dialect.name
        self._s = settings
        self._configs = configs
        self.node = node_name()
        self._guard = NetGuard(allow_networks=list(allow_networks))
        # SQLite serves one node: leases left by a killed predecessor are stale at once.
        self._release_on_start = (self._dialect == "sqlite" if release_leases_on_start is None
                                  else release_leases_on_start)
        self._lease_ms = int(settings.lease_seconds * 1000)
        self._min_lease_left = (int(settings.timeout * 1000)
                                + min(_LEASE_MARGIN_MS, self._lease_ms // 4))
        # Jobs held at once (queued, in flight, unrecorded): enough to keep the pipes
        # full, few enough that other nodes find work to claim rather than leases to
        # wait out. One endpoint may hold only part of it, so a slow one cannot starve
        # the others.
        self._cap = 4 * settings.max_in_flight
        self._rng = random.Random()
        self._lanes: dict[tuple[str, str], _Lane] = {}
        self._outcomes: list[_Outcome] = []
        self._held = 0  # jobs enqueued and not yet recorded
        self._throttled = False  # work was left for lack of room: look again once freed
        self._counts = dict.fromkeys(_OUTCOMES, 0)
        self.recorded = 0  # attempts written to the database by this engine
        self._stale: set[tuple[str, str]] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self._workers: set[asyncio.Task[None]] = set()
        self._closing = False
        self._started = False
        self._transport: FastTransport | None = None
        self._senders = 0  # lane workers, each with at most one attempt in flight
        self._short = False  # a lane went without a worker for lack of maxInFlight
        self._intake: asyncio.Event | None = None
        self._want_dispatch = True
        self._want_claim = True
        self._record_wake: asyncio.Event | None = None
        self._flush_lock: asyncio.Lock | None = None
        self._claim_timer: asyncio.TimerHandle | None = None
        self._claim_due = 0.0
        self._claim_dues: list[float] = []  # a heap of loop times when retries fall due
        self._gauges: set[str] = set()

    @classmethod
    def for_hub(cls, hub: Hub) -> DeliveryEngine:
        # On SQLite, dispatch and result writes join the hub's group commit: one writer
        # connection, so transactions of their own would take turns with the chat's
        # batches, each with its own COMMIT and fsync.
        shared = hub.run_in_transaction if hub.engine.dialect.name == "sqlite" else None
        return cls(hub.engine, hub.settings.webhooks.delivery,
                   read_engine=getattr(hub, "read_engine", None),
                   allow_networks=hub.settings.webhooks.allow_networks,
                   configs=getattr(hub, "webhook_configs", None), transactions=shared,
                   shared=hub.cluster)

    async def _in_transaction(self, fn: Callable[[AsyncConnection], Awaitable[_T]]) -> _T:
        """Run `fn` in a write transaction (the hub's group commit, when shared); it may
        run more than once, so it keeps no state between runs."""
        if self._transactions is not None:
            result: _T = await self._transactions(fn)
            return result
        async with self._db.begin() as conn:
            return await fn(conn)

    # -- public ---------------------------------------------------------------------

    def wake(self) -> None:
        """New outbox rows committed: dispatch now rather than at the next poll."""
        self._want_dispatch = True
        if self._intake is not None:
            self._intake.set()

    def poke(self) -> None:
        """Deliveries became due (replay, retries, a key's turn): claim now."""
        self._want_claim = True
        if self._intake is not None:
            self._intake.set()

    def endpoint_changed(self, tenant_id: str, endpoint_id: str) -> None:
        if (tenant_id, endpoint_id) in self._lanes:
            self._stale.add((tenant_id, endpoint_id))
        self.poke()

    async def start(self) -> None:
        if self._started:
            return
        self._started = True
        self._transport = FastTransport(
            max_connections_per_origin=self._s.max_in_flight, idle_timeout=4.0,
            max_response_bytes=RESPONSE_KEEP, connect_guard=self._guard.resolve,
            timeout=self._s.timeout)
        self._intake = asyncio.Event()
        self._record_wake = asyncio.Event()
        self._flush_lock = asyncio.Lock()
        if self._release_on_start:
            await self._release_all()
        self._intake.set()
        self._tasks = [
            asyncio.create_task(self._intake_loop(), name="imhub-intake"),
            asyncio.create_task(self._record_loop(), name="imhub-record"),
            asyncio.create_task(self._metrics_loop(), name="imhub-delivery-metrics"),
        ]

    async def close(self, grace: float = 2.0) -> None:
        """Stop taking work, let attempts in flight finish (up to `grace` seconds), record
        them, and hand the leases of jobs not started back."""
        if not self._started or self._closing:
            return
        self._closing = True
        if self._claim_timer is not None:
            self._claim_timer.cancel()
        for task in self._tasks:
            if task.get_name() != "imhub-record":
                task.cancel()
        unsent = [job for lane in self._lanes.values() for job in lane.queue]
        for lane in self._lanes.values():
            lane.queue.clear()
        if self._workers:
            _, pending = await asyncio.wait(list(self._workers), timeout=grace)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        assert self._record_wake is not None
        self._record_wake.set()
        with contextlib.suppress(Exception):
            await self._flush_outcomes()
            await self._release(unsent)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._transport is not None:
            await self._transport.aclose()

    # -- dispatch -------------------------------------------------------------------

    async def _intake_loop(self) -> None:
        """Claim due deliveries and dispatch new events, one after the other (so the
        two never race for this node's room), when woken or every pollSeconds."""
        assert self._intake is not None
        last_refresh = time.monotonic()
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._s.poll_seconds):
                    await self._intake.wait()
            if not self._intake.is_set():
                # The fallback poll: other processes' events, due retries, expired leases.
                self._want_claim = self._want_dispatch = True
            self._intake.clear()
            try:
                await self._take_in()
                if self._stale or time.monotonic() - last_refresh >= self._s.poll_seconds:
                    last_refresh = time.monotonic()
                    await self._refresh_lanes()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("taking in deliveries failed; retrying")
                await asyncio.sleep(min(1.0, self._s.poll_seconds))

    async def _take_in(self) -> None:
        # Claims first: retries and backlog are older than what the outbox holds.
        while self._want_claim or self._want_dispatch:
            room = min(self._s.batch_size, self._cap - self._held)
            # Busy lanes take work in sizeable batches: each transaction costs about
            # the same whether it carries ten deliveries or five hundred.
            if room <= 0 or (room < self._s.batch_size // 2 and self._held > room):
                self._throttled = True  # the recorder wakes us once there is room
                return
            if self._want_claim:
                self._want_claim = await self._claim(room) >= room
            else:
                self._want_dispatch = await self._dispatch_once(room) >= room

    async def _dispatch_once(self, limit: int) -> int:
        """Fan out up to `limit` events: no more than this node has room for; the rest
        stays in the outbox for another node, or for when lanes here have drained."""
        policies = Policies(self._configs)
        for _ in range(10):
            async with self._reads.connect() as conn:
                tenants = await undispatched_tenants(conn, limit)
            await policies.load(tenants)  # with the connection back: it may need it
            now = now_ms()
            lease_until = now + self._lease_ms
            try:
                out = await self._in_transaction(functools.partial(
                    dispatch_batch, policies=policies, limit=limit, now=now,
                    lease_owner=self.node, lease_until=lease_until, take=self._taker()))
                break
            except PolicyNotLoaded:
                continue  # a tenant's first event slipped in between: load it, go again
        else:
            raise RuntimeError("the outbox kept changing under the dispatcher")
        for f in out.leased:
            ev = f.event
            self._enqueue(f.endpoint, _Job(
                ev.tenant_id, ev.event_id, f.endpoint.endpoint_id, ev.callback_command,
                ev.operation_id, ev.body, 0, 0, False, lease_until, f.schedule))
        if out.deliveries > len(out.leased):
            self.poke()
        return out.events

    def _lane_cap(self, lane: _Lane | None) -> int:
        """Jobs one endpoint may hold here: what it gets through in a few seconds. A
        slow or hanging endpoint leaves the rest of its work in the database (for when
        it has caught up, or for another node) instead of filling this node's room."""
        rate = lane.rate if lane is not None else 0.0
        return min(self._cap, max(_LANE_MIN_HELD, int(rate * _LANE_SECONDS)))

    def _taker(self) -> Callable[[EndpointInfo], bool]:
        """Room for fresh deliveries, counted per endpoint and in all."""
        room: dict[tuple[str, str], int] = {}  # per endpoint, for this batch
        total = self._held

        def take(info: EndpointInfo) -> bool:
            nonlocal total
            key = (info.tenant_id, info.endpoint_id)
            left = room.get(key)
            if left is None:
                lane = self._lanes.get(key)
                left = self._lane_cap(lane) - (lane.held if lane is not None else 0)
            if total >= self._cap or left <= 0:
                return False
            room[key] = left - 1
            total += 1
            return True

        return take

    # -- claim ----------------------------------------------------------------------

    def _claim_sql(self, full: int) -> str:
        lock = " FOR UPDATE OF d SKIP LOCKED" if self._dialect == "postgresql" else ""
        skip = ""
        if full:
            # Endpoints whose lanes here are full: leave their work to other nodes.
            rows = ", ".join(f"(:ft{i}, :fe{i})" for i in range(full))
            skip = f"  AND (d.tenant_id, d.endpoint_id) NOT IN (VALUES {rows})"
        return (
            "UPDATE webhook_deliveries"
            " SET lease_owner = :owner, lease_until = :until, next_attempt_at = :until "
            "WHERE (tenant_id, event_id, endpoint_id) IN ("
            " SELECT d.tenant_id, d.event_id, d.endpoint_id FROM webhook_deliveries d"
            " JOIN webhook_endpoints e"
            "  ON e.tenant_id = d.tenant_id AND e.endpoint_id = d.endpoint_id"
            " WHERE d.status = 'pending' AND d.next_attempt_at <= :now"
            "  AND d.lease_until < :now AND e.disabled = 0 AND e.deleted = 0"
            "  AND (d.okey IS NULL OR NOT EXISTS ("
            "   SELECT 1 FROM webhook_deliveries p WHERE p.status = 'pending'"
            "    AND p.tenant_id = d.tenant_id AND p.endpoint_id = d.endpoint_id"
            "    AND p.okey = d.okey AND p.event_pos < d.event_pos))"
            f"{skip} ORDER BY d.next_attempt_at LIMIT :n{lock}) "
            "RETURNING tenant_id, event_id, endpoint_id, okey, attempts, tries")

    async def _claim(self, limit: int) -> int:
        now = now_ms()
        until = now + self._lease_ms
        full = [key for key, lane in self._lanes.items()
                if lane.held >= self._lane_cap(lane)]
        self._throttled |= bool(full)
        params: dict[str, Any] = {"owner": self.node, "until": until, "now": now, "n": limit}
        for i, (tenant_id, endpoint_id) in enumerate(full):
            params[f"ft{i}"], params[f"fe{i}"] = tenant_id, endpoint_id
        async with self._db.begin() as conn:
            rows = (await conn.execute(text(self._claim_sql(len(full))), params)).all()
            if not rows:
                return 0
            events = {r.event_id: OutboxEvent.of(r) for r in await conn.execute(
                select(_events.c.pos, _events.c.event_id, _events.c.tenant_id,
                       _events.c.callback_command, _events.c.key, _events.c.operation_id,
                       _events.c.payload)
                .where(_events.c.event_id.in_({r.event_id for r in rows})))}
            endpoints = await self._load_endpoints(conn, {(r.tenant_id, r.endpoint_id)
                                                          for r in rows})
        policies = Policies(self._configs)
        await policies.load(r.tenant_id for r in rows)
        for r in rows:
            ev = events.get(r.event_id)
            info = endpoints.get((r.tenant_id, r.endpoint_id))
            if ev is None or info is None:
                continue  # cannot happen short of manual deletes; the lease runs out
            policy = policies.get(r.tenant_id)
            self._enqueue(info, _Job(
                r.tenant_id, r.event_id, r.endpoint_id, ev.callback_command, ev.operation_id,
                ev.body, int(r.attempts), int(r.tries), r.okey is not None, until,
                policy.retry_schedule))
        return len(rows)

    async def _load_endpoints(self, conn: AsyncConnection, keys: set[tuple[str, str]]
                              ) -> dict[tuple[str, str], EndpointInfo]:
        if not keys:
            return {}
        rows = await conn.execute(select(_endpoints).where(
            tuple_(_endpoints.c.tenant_id, _endpoints.c.endpoint_id).in_(sorted(keys))))
        return {(r.tenant_id, r.endpoint_id): EndpointInfo.of(r) for r in rows}

    async def _refresh_lanes(self) -> None:
        """Drop idle lanes (once their rate limit's pacing has passed); pick up endpoint
        changes (URL, secrets, limits, disabling) for the others."""
        now = asyncio.get_running_loop().time()
        for key, lane in list(self._lanes.items()):
            if not lane.held and not lane.workers and lane.next_slot <= now:
                del self._lanes[key]
        keys = set(self._lanes) | self._stale
        self._stale.clear()
        if not keys:
            return
        async with self._reads.connect() as conn:
            fresh = await self._load_endpoints(conn, keys)
        for key, lane in list(self._lanes.items()):
            info = fresh.get(key)
            if info is None:
                lane.update(replace(lane.info, disabled=True))
            else:
                lane.update(info)

    def _schedule_claim(self, at_ms: int) -> None:
        """Claim when a retry this node scheduled falls due, not at the next poll: a poll
        every pollSeconds would send it up to that much late, past its jitter."""
        loop = asyncio.get_running_loop()
        heapq.heappush(self._claim_dues, loop.time() + max(0.0, (at_ms - now_ms()) / 1000))
        self._arm_claim(loop)

    def _arm_claim(self, loop: asyncio.AbstractEventLoop) -> None:
        if not self._claim_dues or self._closing:
            return
        # Claims at most every _CLAIM_GAP: each is a transaction, and a thousand retries
        # spread over a second need not be a thousand of them.
        when = max(self._claim_dues[0], loop.time() + _CLAIM_GAP)
        if self._claim_timer is not None:
            if self._claim_due <= when:
                return
            self._claim_timer.cancel()
        self._claim_due = when
        self._claim_timer = loop.call_at(when, self._claim_fired, loop)

    def _claim_fired(self, loop: asyncio.AbstractEventLoop) -> None:
        self._claim_timer = None
        now = loop.time()
        while self._claim_dues and self._claim_dues[0] <= now:
            heapq.heappop(self._claim_dues)
        self.poke()
        self._arm_claim(loop)

    # -- send -----------------------------------------------------------------------

    def _enqueue(self, info: EndpointInfo, job: _Job) -> None:
        key = (info.tenant_id, info.endpoint_id)
        lane = self._lanes.get(key)
        if lane is None:
            lane = self._lanes[key] = _Lane(info)
        else:
            lane.update(info)
        lane.queue.append(job)
        lane.held += 1
        self._held += 1
        self._staff(lane)

    def _staff(self, lane: _Lane) -> None:
        """Start a worker for the lane if its concurrency and the node's allow one."""
        limit = lane.info.max_concurrency or self._s.endpoint_concurrency
        if lane.workers < limit and lane.workers < len(lane.queue):
            if self._senders >= self._s.max_in_flight:
                self._short = True
                return
            lane.workers += 1
            self._senders += 1
            task = asyncio.create_task(self._lane_worker(lane))
            self._workers.add(task)
            task.add_done_callback(self._workers.discard)

    async def _lane_worker(self, lane: _Lane) -> None:
        try:
            while lane.queue and not self._closing:
                job = lane.queue.popleft()
                if lane.info.disabled or job.lease_until - now_ms() < self._min_lease_left:
                    # Disabled: its pending rows were failed with it. Lease too short:
                    # leave the row to whoever claims it next, maybe us.
                    self._held -= 1
                    lane.held -= 1
                    continue
                if lane.info.rate_limit:
                    await self._pace(lane)
                token = await self._claim_place(lane)
                if token is None or job.lease_until - now_ms() < self._min_lease_left:
                    # Closing, or it waited too long for a place: leave it, as above.
                    if token:
                        await self._free_place(lane, token)
                    self._held -= 1
                    lane.held -= 1
                    continue
                try:
                    await self._attempt(lane, job)
                finally:
                    if token:
                        await self._free_place(lane, token)
        finally:
            lane.workers -= 1
            self._senders -= 1
            if self._short and not self._closing:
                # maxInFlight kept some lane short of workers: one is free now.
                self._short = False
                for other in self._lanes.values():
                    if len(other.queue) > other.workers:
                        self._staff(other)

    async def _pace(self, lane: _Lane) -> None:
        """Wait for this lane's next slot under its endpoint's rateLimit: shared by every
        node through Redis when there is one, else this process's own."""
        interval = 1.0 / lane.info.rate_limit
        if self._shared is not None:
            try:
                wait = await self._shared.reserve_slot(lane.info.endpoint_id, interval)
            except (RedisError, OSError) as exc:
                self._alone(lane, exc)
            else:
                lane.alone = False
                if wait > 0:
                    await asyncio.sleep(wait)
                return
        loop = asyncio.get_running_loop()
        now = loop.time()
        slot = max(now, lane.next_slot)
        lane.next_slot = slot + interval
        if slot > now:
            await asyncio.sleep(slot - now)

    async def _claim_place(self, lane: _Lane) -> str | None:
        """Under an endpoint's maxConcurrency, with Redis: a place among the attempts in
        flight on all nodes, waited for while they are all taken; its token. "" when
        there is nothing to claim (no maxConcurrency, no Redis, or Redis failing: the
        lane's own workers, at most maxConcurrency, are the limit then); None when the
        engine closed while it waited."""
        if self._shared is None or not lane.info.max_concurrency:
            return ""
        token = secrets.token_hex(8)
        hold = self._s.timeout + _LEASE_MARGIN_MS / 1000  # a crashed node's claim lapses
        while not self._closing:
            try:
                if await self._shared.acquire_slot(lane.info.endpoint_id,
                                                   lane.info.max_concurrency, hold, token):
                    lane.alone = False
                    return token
            except (RedisError, OSError) as exc:
                self._alone(lane, exc)
                return ""
            await asyncio.sleep(self._rng.uniform(*_FULL_WAIT))
        return None

    async def _free_place(self, lane: _Lane, token: str) -> None:
        assert self._shared is not None
        with contextlib.suppress(RedisError, OSError):  # the claim lapses by itself
            await self._shared.release_slot(lane.info.endpoint_id, token)

    @staticmethod
    def _alone(lane: _Lane, exc: BaseException) -> None:
        if not lane.alone:
            log.warning("endpoint %s: Redis cannot keep its rateLimit and maxConcurrency "
                        "across nodes (%r); this node keeps them alone meanwhile",
                        lane.info.endpoint_id, exc)
        lane.alone = True

    async def _attempt(self, lane: _Lane, job: _Job) -> None:
        assert self._transport is not None
        info = lane.info
        wall = time.time()
        stamp = int(wall)
        headers = signed_headers(info.secrets(int(wall * 1000)), job.event_id, stamp,
                                 job.body, job.operation_id)
        code, error, response, retry_after = 0, "", "", None
        start = time.perf_counter()
        try:
            r = await self._transport.post(lane.url_for(job.command), job.body, headers)
            code = r.status
            response = r.body[:RESPONSE_KEEP].decode("utf-8", "replace")
            if not 200 <= code < 300:
                error = f"HTTP {code}"
                if 300 <= code < 400:
                    error += " (redirects are not followed)"
                elif code in (429, 503):
                    retry_after = retry_after_seconds(r.headers, time.time())
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            error = _describe(exc, self._s.timeout)
        latency = time.perf_counter() - start
        self._settle(lane, job, code, error, response, retry_after, latency)

    def _settle(self, lane: _Lane, job: _Job, code: int, error: str, response: str,
                retry_after: float | None, latency: float) -> None:
        at = now_ms()
        tries = job.tries + 1
        gone = code == 410
        next_at = at
        if 200 <= code < 300:
            status, outcome = DELIVERED, "delivered"
        elif gone:
            status, outcome = FAILED, "gone"
            error = "HTTP 410: the endpoint is gone; disabled"
        else:
            delay = next_delay(job.schedule, tries, retry_after, self._rng)
            if delay is None:
                status, outcome = FAILED, "failed"
            else:
                status, outcome = PENDING, "retry"
                next_at = at + int(delay * 1000)  # claimed then, once recorded (_record)
        self._counts[outcome] += 1  # to the counter once per recorded batch
        delivery_seconds.observe(latency)
        lane.finished(time.monotonic())
        if gone:
            lane.update(replace(lane.info, disabled=True))
        self._outcomes.append(_Outcome(job, status, code, error, response, latency, next_at,
                                       at, gone))
        assert self._record_wake is not None
        self._record_wake.set()

    # -- record ---------------------------------------------------------------------

    async def _record_loop(self) -> None:
        assert self._record_wake is not None
        while True:
            await self._record_wake.wait()
            # While attempts are in flight, let more results gather: fewer, larger
            # commits. Nothing waits on the record but the history and the metrics.
            if self._held > len(self._outcomes) and not self._closing:
                await asyncio.sleep(_RECORD_LINGER)
            self._record_wake.clear()
            try:
                await self._flush_outcomes()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("recording delivery attempts failed; retrying")
                await asyncio.sleep(0.5)
                self._record_wake.set()

    async def _flush_outcomes(self) -> None:
        assert self._flush_lock is not None
        async with self._flush_lock:
            while self._outcomes:
                batch = self._outcomes[:_RECORD_BATCH]
                await self._record(batch)
                # Only now: a failed write keeps the batch for the next try.
                del self._outcomes[:len(batch)]
                self._held -= len(batch)
                self.recorded += len(batch)
                for outcome, n in self._counts.items():
                    if n:
                        _OUTCOMES[outcome].inc(n)
                        self._counts[outcome] = 0
                for o in batch:
                    lane = self._lanes.get((o.job.tenant_id, o.job.endpoint_id))
                    if lane is not None:
                        lane.held -= 1
                if self._throttled:
                    # Room again for work left in the outbox or unclaimed.
                    self._throttled = False
                    assert self._intake is not None
                    self._intake.set()
                elif any(o.job.ordered and o.status != PENDING for o in batch):
                    self.poke()  # the next event of those keys is free to go

    async def _record(self, batch: list[_Outcome]) -> None:
        attempts: list[tuple[Any, ...]] = []
        updates: list[tuple[Any, ...]] = []
        counters: dict[tuple[str, str], list[Any]] = {}
        gone: set[tuple[str, str]] = set()
        for o in batch:
            j = o.job
            attempt = j.attempts + 1
            attempts.append((j.tenant_id, j.event_id, j.endpoint_id, attempt, o.code,
                             round(o.latency * 1000, 3), o.error, o.response, self.node, o.at))
            updates.append((o.status, attempt, j.tries + 1, o.next_attempt_at, o.code,
                            o.error, o.at, j.tenant_id, j.event_id, j.endpoint_id, self.node,
                            PENDING))
            key = (j.tenant_id, j.endpoint_id)
            c = counters.setdefault(key, [0, 0, 0, "", 0])
            if o.status == DELIVERED:
                c[0] += 1
            else:
                c[1] += 1
                c[3] = o.error
            c[2], c[4] = o.code, o.at
            if o.gone:
                gone.add(key)
        updates.sort(key=lambda u: (u[7], u[8], u[9]))  # one lock order for every node
        await self._in_transaction(functools.partial(
            _write_outcomes, attempts=attempts, updates=updates, counters=counters,
            gone=gone))
        for o in batch:  # recorded: each retry can be claimed when it falls due
            if o.status == PENDING:
                self._schedule_claim(o.next_attempt_at)

    # -- leases ---------------------------------------------------------------------

    async def _release_all(self) -> None:
        async with self._db.begin() as conn:
            await conn.execute(
                update(_deliveries)
                .where(_deliveries.c.status == PENDING, _deliveries.c.lease_until > 0)
                .values(lease_owner="", lease_until=0, next_attempt_at=now_ms()))

    async def _release(self, jobs: list[_Job]) -> None:
        if not jobs:
            return
        async with self._db.begin() as conn:
            await conn.execute(_RELEASE, [
                {"k_t": j.tenant_id, "k_e": j.event_id, "k_p": j.endpoint_id,
                 "k_o": self.node, "v_now": now_ms()} for j in jobs])

    # -- metrics --------------------------------------------------------------------

    async def _metrics_loop(self) -> None:
        while True:
            try:
                await self.update_gauges()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("reading the delivery queue for metrics failed", exc_info=True)
            await asyncio.sleep(_METRICS_EVERY)

    async def update_gauges(self) -> None:
        """queue_depth and oldest_pending_seconds per endpoint ("tenantID/endpointID")."""
        async with self._reads.connect() as conn:
            rows = (await conn.execute(
                select(_deliveries.c.tenant_id, _deliveries.c.endpoint_id, func.count(),
                       func.min(_deliveries.c.create_time))
                .where(IS_PENDING)
                .group_by(_deliveries.c.tenant_id, _deliveries.c.endpoint_id))).all()
        now = now_ms()
        seen: set[str] = set()
        for tenant_id, endpoint_id, count, oldest in rows:
            label = f"{tenant_id}/{endpoint_id}"
            seen.add(label)
            queue_depth.labels(label).set(count)
            oldest_pending_seconds.labels(label).set(max(0.0, (now - int(oldest)) / 1000))
        for label in self._gauges - seen:
            queue_depth.labels(label).set(0)
            oldest_pending_seconds.labels(label).set(0)
        self._gauges = seen


_UPDATE_COUNTERS = (
    update(_endpoints)
    .where(_endpoints.c.tenant_id == bindparam("k_t"),
           _endpoints.c.endpoint_id == bindparam("k_p"))
    .values(success_count=_endpoints.c.success_count + bindparam("v_ok"),
            failure_count=_endpoints.c.failure_count + bindparam("v_fail"),
            last_status=bindparam("v_code"),
            # The last error stays until a newer one: a success does not erase it.
            last_error=func.coalesce(func.nullif(bindparam("v_error"), ""),
                                     _endpoints.c.last_error),
            last_attempt_time=bindparam("v_time"))
)

_RELEASE = (
    update(_deliveries)
    .where(_deliveries.c.tenant_id == bindparam("k_t"),
           _deliveries.c.event_id == bindparam("k_e"),
           _deliveries.c.endpoint_id == bindparam("k_p"),
           _deliveries.c.lease_owner == bindparam("k_o"),
           _deliveries.c.status == PENDING)
    .values(lease_owner="", lease_until=0, next_attempt_at=bindparam("v_now"))
)


async def disable_endpoint(conn: AsyncConnection, tenant_id: str, endpoint_id: str,
                           reason: str) -> None:
    """Disable an endpoint and fail its pending deliveries (replayable once re-enabled)."""
    now = now_ms()
    await conn.execute(
        update(_endpoints)
        .where(_endpoints.c.tenant_id == tenant_id, _endpoints.c.endpoint_id == endpoint_id)
        .values(disabled=1, disabled_reason=reason, update_time=now))
    await conn.execute(
        update(_deliveries)
        .where(_deliveries.c.tenant_id == tenant_id,
               _deliveries.c.endpoint_id == endpoint_id, _deliveries.c.status == PENDING)
        .values(status=FAILED, last_error=f"endpoint disabled: {reason}", update_time=now))


async def _write_outcomes(conn: AsyncConnection, *, attempts: list[tuple[Any, ...]],
                          updates: list[tuple[Any, ...]],
                          counters: dict[tuple[str, str], list[Any]],
                          gone: set[tuple[str, str]]) -> None:
    """Record a batch of attempts: their rows, their deliveries, endpoint counters."""
    await conn.exec_driver_sql(driver_sql(conn, _INSERT_ATTEMPT), attempts)
    await conn.exec_driver_sql(driver_sql(conn, _UPDATE_DELIVERY), updates)
    await conn.execute(_UPDATE_COUNTERS, [
        {"k_t": t, "k_p": p, "v_ok": c[0], "v_fail": c[1], "v_code": c[2],
         "v_error": c[3], "v_time": c[4]}
        for (t, p), c in sorted(counters.items())])
    for t, p in sorted(gone):
        await disable_endpoint(conn, t, p, "410 Gone from the endpoint")
