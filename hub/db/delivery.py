"""Tables of after-event delivery: webhook endpoints, one delivery per (event, endpoint),
and one row per HTTP attempt.

Times are unix milliseconds. A delivery is `pending` (to be attempted at
`next_attempt_at`), `delivered` or `failed` (retries spent, endpoint gone, or replay
needed). A worker that takes a pending delivery writes its `lease_owner` and
`lease_until`; no other worker touches it before the lease ends, so a dead worker's
deliveries come back by themselves.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Float, Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base

_ID = String(64)
_EVENT_ID = String(40)

PENDING = "pending"
DELIVERED = "delivered"
FAILED = "failed"
STATUSES = (PENDING, DELIVERED, FAILED)
# Spelled out in SQL, not bound: a partial index is only used for a literal condition.
IS_PENDING = text("webhook_deliveries.status = 'pending'")
IS_FAILED = text("webhook_deliveries.status = 'failed'")

# The endpoint that the tenant's webhook config `url` stands for (one per tenant).
CONFIG_ENDPOINT_ID = "config"


class WebhookEndpoint(Base):
    __tablename__ = "webhook_endpoints"
    tenant_id: Mapped[str] = mapped_column(_ID, primary_key=True)
    endpoint_id: Mapped[str] = mapped_column(_ID, primary_key=True)
    url: Mapped[str] = mapped_column(String(1024))
    # JSON array of callbackCommands; "" admits every after event.
    events: Mapped[str] = mapped_column(Text, default="")
    ordering: Mapped[str] = mapped_column(String(8), default="none")
    # Requests per second; 0 is unlimited.
    rate_limit: Mapped[int] = mapped_column(Integer, default=0)
    # Requests in flight at once; 0 takes the node's default.
    max_concurrency: Mapped[int] = mapped_column(Integer, default=0)
    secret: Mapped[str] = mapped_column(String(128))
    # The secret before the last rotation; it still signs until previous_secret_until.
    previous_secret: Mapped[str] = mapped_column(String(128), default="")
    previous_secret_until: Mapped[int] = mapped_column(BigInteger, default=0)
    # 1: kept in sync with the tenant's webhook config `url`, not managed by the routes.
    implicit: Mapped[int] = mapped_column(Integer, default=0)
    disabled: Mapped[int] = mapped_column(Integer, default=0)
    disabled_reason: Mapped[str] = mapped_column(Text, default="")
    # Deleted endpoints stay, so their deliveries and attempts can still be listed.
    deleted: Mapped[int] = mapped_column(Integer, default=0)
    create_time: Mapped[int] = mapped_column(BigInteger)
    update_time: Mapped[int] = mapped_column(BigInteger)
    # Attempt counters, for the success rate /webhook/endpoint/list shows.
    success_count: Mapped[int] = mapped_column(BigInteger, default=0)
    failure_count: Mapped[int] = mapped_column(BigInteger, default=0)
    last_status: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str] = mapped_column(Text, default="")
    last_attempt_time: Mapped[int] = mapped_column(BigInteger, default=0)


class WebhookDelivery(Base):
    __tablename__ = "webhook_deliveries"
    tenant_id: Mapped[str] = mapped_column(_ID, primary_key=True)
    event_id: Mapped[str] = mapped_column(_EVENT_ID, primary_key=True)
    endpoint_id: Mapped[str] = mapped_column(_ID, primary_key=True)
    # The event's outbox position: commit order, for key-ordered endpoints.
    event_pos: Mapped[int] = mapped_column(BigInteger)
    # The event's ordering key when the endpoint orders by key; NULL otherwise.
    okey: Mapped[str | None] = mapped_column(String(160), nullable=True)
    status: Mapped[str] = mapped_column(String(10), default=PENDING)
    # Attempts ever made (numbers the attempts rows) and attempts since the last
    # (re)queue (indexes the retry schedule).
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    tries: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[int] = mapped_column(BigInteger)
    lease_owner: Mapped[str] = mapped_column(String(64), default="")
    lease_until: Mapped[int] = mapped_column(BigInteger, default=0)
    last_status: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str] = mapped_column(Text, default="")
    create_time: Mapped[int] = mapped_column(BigInteger)
    update_time: Mapped[int] = mapped_column(BigInteger)
    __table_args__ = (
        # Partial: the claim query only ever looks at pending rows, and delivered rows
        # pile up, so the index stays as small as the queue.
        Index("ix_webhook_deliveries_due", "next_attempt_at",
              postgresql_where=text("status = 'pending'"),
              sqlite_where=text("status = 'pending'")),
        # The queue of each key of key-ordered endpoints. Only rows with a key: an index
        # on (tenant, endpoint) over every pending row tempts planners away from the
        # primary key when a row is updated.
        Index("ix_webhook_deliveries_key", "tenant_id", "endpoint_id", "okey", "event_pos",
              postgresql_where=text("status = 'pending' AND okey IS NOT NULL"),
              sqlite_where=text("status = 'pending' AND okey IS NOT NULL")),
        # Failed rows are few and replayed by endpoint; an index over every row's
        # status would be rewritten at each attempt.
        Index("ix_webhook_deliveries_failed", "tenant_id", "endpoint_id", "event_pos",
              postgresql_where=text("status = 'failed'"),
              sqlite_where=text("status = 'failed'")),
    )


class WebhookAttempt(Base):
    __tablename__ = "webhook_attempts"
    tenant_id: Mapped[str] = mapped_column(_ID, primary_key=True)
    event_id: Mapped[str] = mapped_column(_EVENT_ID, primary_key=True)
    endpoint_id: Mapped[str] = mapped_column(_ID, primary_key=True)
    attempt: Mapped[int] = mapped_column(Integer, primary_key=True)
    # 0: no HTTP response (refused, timed out, garbage, blocked address).
    status_code: Mapped[int] = mapped_column(Integer, default=0)
    latency_ms: Mapped[float] = mapped_column(Float, default=0.0)
    error: Mapped[str] = mapped_column(Text, default="")
    # The first 4 KB of the response body, decoded as UTF-8 with replacements.
    response: Mapped[str] = mapped_column(Text, default="")
    worker: Mapped[str] = mapped_column(String(64), default="")
    create_time: Mapped[int] = mapped_column(BigInteger)
