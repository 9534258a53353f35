"""Webhook endpoints: where a tenant's after events are delivered.

Routes (admin only, tenant-scoped: another tenant's endpointID answers 1004, exactly
like an unknown one): /webhook/endpoint/add, /update, /delete, /list, /rotate_secret.

The tenant's webhook config `url` (the OpenIM base URL) is an endpoint too, with the
fixed ID "config", kept in sync by the config's owner through `sync_config_endpoint`;
the routes show it and rotate its secret, but its URL follows the config.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import orjson
from pydantic import Field, StringConstraints
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from ..api.routing import Router
from ..bus.catalogue import BY_COMMAND, HOOKS
from ..clock import new_id, now_ms
from ..context import Ctx
from ..core import Hub
from ..db.delivery import (
    CONFIG_ENDPOINT_ID,
    FAILED,
    IS_PENDING,
    PENDING,
    WebhookDelivery,
    WebhookEndpoint,
)
from ..domain._schema import ID, Pagination, Req
from ..errors import BadArgument, NotFound
from ..tx import Tx
from .netguard import BlockedAddress, NetGuard
from .signing import generate_secret

router = Router()

URL = Annotated[str, StringConstraints(min_length=1, max_length=1024, strip_whitespace=True)]
Ordering = Literal["none", "key"]
_MAX_GRACE_SECONDS = 30 * 24 * 3600
_DEFAULT_GRACE_SECONDS = 24 * 3600


@dataclass(frozen=True, slots=True)
class EndpointInfo:
    """What delivery needs of an endpoint, detached from the session."""

    tenant_id: str
    endpoint_id: str
    url: str
    events: frozenset[str] | None  # callbackCommands; None admits every after event
    ordering: str
    rate_limit: int
    max_concurrency: int
    secret: str
    previous_secret: str
    previous_secret_until: int
    disabled: bool

    @classmethod
    def of(cls, row: Any) -> EndpointInfo:
        """From an ORM row or a Core row of webhook_endpoints."""
        return cls(
            tenant_id=row.tenant_id, endpoint_id=row.endpoint_id, url=row.url,
            events=_decode_events(row.events), ordering=row.ordering,
            rate_limit=row.rate_limit, max_concurrency=row.max_concurrency,
            secret=row.secret, previous_secret=row.previous_secret,
            previous_secret_until=row.previous_secret_until,
            disabled=bool(row.disabled or row.deleted),
        )

    def admits(self, callback_command: str) -> bool:
        return self.events is None or callback_command in self.events

    def secrets(self, at_ms: int) -> list[str]:
        """The secrets that sign now: the current one, and the previous during its grace."""
        if self.previous_secret and self.previous_secret_until > at_ms:
            return [self.secret, self.previous_secret]
        return [self.secret]


def _decode_events(raw: str) -> frozenset[str] | None:
    if not raw:
        return None
    return frozenset(orjson.loads(raw))


def _encode_events(commands: list[str] | None) -> str:
    return orjson.dumps(commands).decode() if commands else ""


def normalize_events(names: Iterable[str]) -> list[str]:
    """callbackCommands of after hooks, given as callbackCommands or hook names."""
    out: list[str] = []
    for name in names:
        hook = BY_COMMAND.get(name) or HOOKS.get(name)
        if hook is None or hook.is_before:
            raise BadArgument(f"events: {name!r} is not an after event")
        if hook.callback_command not in out:
            out.append(hook.callback_command)
    return out


def guard_for(hub: Hub) -> NetGuard:
    return NetGuard(allow_networks=hub.settings.webhooks.allow_networks)


async def check_url(hub: Hub, url: str) -> None:
    """The SSRF guard at registration: syntax, then every address the host resolves to."""
    try:
        await guard_for(hub).check_url_resolving(url)
    except (ValueError, BlockedAddress) as exc:
        raise BadArgument(f"url: {exc}") from None


def _changed(hub: Hub, tenant_id: str, endpoint_id: str) -> None:
    # This node's workers pick the change up at once; other nodes on their next refresh.
    engine = getattr(hub, "delivery", None)
    if engine is not None:
        engine.endpoint_changed(tenant_id, endpoint_id)


async def _get(session: AsyncSession, tenant_id: str, endpoint_id: str) -> WebhookEndpoint:
    row = await session.get(WebhookEndpoint, (tenant_id, endpoint_id))
    if row is None or row.deleted:
        raise NotFound(f"endpoint {endpoint_id} not found")
    return row


async def _fail_pending(session: AsyncSession, tenant_id: str, endpoint_id: str,
                        reason: str) -> None:
    """Pending deliveries of an endpoint that stops taking events become `failed`, so
    they are listed and can be replayed, instead of waiting on nothing."""
    now = now_ms()
    await session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.tenant_id == tenant_id,
               WebhookDelivery.endpoint_id == endpoint_id,
               WebhookDelivery.status == PENDING)
        .values(status=FAILED, last_error=reason, next_attempt_at=now, update_time=now)
        .execution_options(synchronize_session=False))


def new_endpoint(tenant_id: str, url: str, *, endpoint_id: str | None = None,
                 events: list[str] | None = None, ordering: str = "none",
                 rate_limit: int = 0, max_concurrency: int = 0,
                 implicit: bool = False) -> WebhookEndpoint:
    now = now_ms()
    return WebhookEndpoint(
        tenant_id=tenant_id, endpoint_id=endpoint_id or new_id("ep"), url=url,
        events=_encode_events(events), ordering=ordering, rate_limit=rate_limit,
        max_concurrency=max_concurrency, secret=generate_secret(), previous_secret="",
        previous_secret_until=0, implicit=int(implicit), disabled=0, disabled_reason="",
        deleted=0, create_time=now, update_time=now, success_count=0, failure_count=0,
        last_status=0, last_error="", last_attempt_time=0)


async def sync_config_endpoint(session: AsyncSession, tenant_id: str, url: str | None) -> None:
    """Keep the tenant's implicit "config" endpoint equal to its webhook config `url`.

    Call it in the transaction that stores the config. A URL creates or updates (and
    re-enables) the endpoint; None or "" disables it, and its pending deliveries become
    `failed` (replayable once a URL is back). The URL is not vetted here: the config's
    owner validates it, and the connect-time guard vets every connection anyway.
    """
    row = await session.get(WebhookEndpoint, (tenant_id, CONFIG_ENDPOINT_ID))
    now = now_ms()
    if url:
        if row is None:
            session.add(new_endpoint(tenant_id, url, endpoint_id=CONFIG_ENDPOINT_ID,
                                     implicit=True))
            return
        if row.url != url or row.disabled or row.deleted:
            row.url, row.disabled, row.disabled_reason, row.deleted = url, 0, "", 0
            row.update_time = now
        return
    if row is not None and not row.disabled:
        row.disabled, row.disabled_reason, row.update_time = 1, "config url removed", now
        await _fail_pending(session, tenant_id, CONFIG_ENDPOINT_ID, "config url removed")


def endpoint_view(row: WebhookEndpoint, pending: int = 0) -> dict[str, Any]:
    attempts = row.success_count + row.failure_count
    return {
        "endpointID": row.endpoint_id,
        "url": row.url,
        "events": sorted(_decode_events(row.events) or ()) or None,
        "ordering": row.ordering,
        "rateLimit": row.rate_limit or None,
        "maxConcurrency": row.max_concurrency or None,
        "implicit": bool(row.implicit),
        "disabled": bool(row.disabled),
        "disabledReason": row.disabled_reason,
        "createTime": row.create_time,
        "updateTime": row.update_time,
        "attempts": attempts,
        "successes": row.success_count,
        "failures": row.failure_count,
        "successRate": round(row.success_count / attempts, 4) if attempts else None,
        "lastStatus": row.last_status,
        "lastError": row.last_error,
        "lastAttemptTime": row.last_attempt_time,
        "pending": pending,
    }


class AddReq(Req):
    url: URL
    events: list[str] | None = Field(default=None, max_length=200)
    ordering: Ordering = "none"
    rateLimit: int | None = Field(default=None, ge=0, le=100_000)
    maxConcurrency: int | None = Field(default=None, ge=1, le=10_000)


class UpdateReq(Req):
    endpointID: ID
    url: URL | None = None
    events: list[str] | None = Field(default=None, max_length=200)
    ordering: Ordering | None = None
    rateLimit: int | None = Field(default=None, ge=0, le=100_000)
    maxConcurrency: int | None = Field(default=None, ge=0, le=10_000)
    # false re-enables an endpoint disabled by a 410 (or by an earlier update).
    disabled: bool | None = None


class EndpointReq(Req):
    endpointID: ID


class ListReq(Req):
    pagination: Pagination = Field(default_factory=Pagination)


class RotateReq(Req):
    endpointID: ID
    graceSeconds: int | None = Field(default=None, ge=0, le=_MAX_GRACE_SECONDS)


@router.post("/webhook/endpoint/add", AddReq, admin_only=True)
async def add_endpoint(hub: Hub, ctx: Ctx, req: AddReq) -> dict[str, Any]:
    """Register an endpoint for after events -> {endpointID, secret}."""
    await check_url(hub, req.url)
    events = normalize_events(req.events) if req.events else None
    row = new_endpoint(ctx.tenant_id, req.url, events=events, ordering=req.ordering,
                       rate_limit=req.rateLimit or 0, max_concurrency=req.maxConcurrency or 0)

    async def write(tx: Tx) -> None:
        # A fresh object per run: the committer may run this more than once.
        tx.session.add(WebhookEndpoint(**{c.key: getattr(row, c.key)
                                          for c in WebhookEndpoint.__table__.columns}))

    await hub.write(ctx, write)
    return {"endpointID": row.endpoint_id, "secret": row.secret,
            "endpoint": endpoint_view(row)}


@router.post("/webhook/endpoint/update", UpdateReq, admin_only=True)
async def update_endpoint(hub: Hub, ctx: Ctx, req: UpdateReq) -> dict[str, Any]:
    """Change an endpoint's url, events, ordering, rateLimit, maxConcurrency or disabled."""
    if req.url is not None:
        if req.endpointID == CONFIG_ENDPOINT_ID:
            raise BadArgument("the config endpoint's url is the webhook config's url")
        await check_url(hub, req.url)
    events = normalize_events(req.events) if req.events is not None else None

    async def write(tx: Tx) -> dict[str, Any]:
        row = await _get(tx.session, ctx.tenant_id, req.endpointID)
        if req.url is not None:
            row.url = req.url
        if req.events is not None:
            row.events = _encode_events(events)
        if req.ordering is not None:
            row.ordering = req.ordering
        if req.rateLimit is not None:
            row.rate_limit = req.rateLimit
        if req.maxConcurrency is not None:
            row.max_concurrency = req.maxConcurrency
        if req.disabled is not None and bool(row.disabled) != req.disabled:
            if req.disabled:
                row.disabled, row.disabled_reason = 1, "disabled by the admin"
                await _fail_pending(tx.session, ctx.tenant_id, row.endpoint_id,
                                    "endpoint disabled")
            else:
                row.disabled, row.disabled_reason = 0, ""
        row.update_time = now_ms()
        return endpoint_view(row)

    view = await hub.write(ctx, write)
    _changed(hub, ctx.tenant_id, req.endpointID)
    return view


@router.post("/webhook/endpoint/delete", EndpointReq, admin_only=True)
async def delete_endpoint(hub: Hub, ctx: Ctx, req: EndpointReq) -> None:
    """Delete an endpoint; its pending deliveries become failed, its history stays."""
    if req.endpointID == CONFIG_ENDPOINT_ID:
        raise BadArgument("remove the url from the webhook config to drop this endpoint")

    async def write(tx: Tx) -> None:
        row = await _get(tx.session, ctx.tenant_id, req.endpointID)
        row.deleted, row.disabled, row.disabled_reason = 1, 1, "deleted"
        row.update_time = now_ms()
        await _fail_pending(tx.session, ctx.tenant_id, row.endpoint_id, "endpoint deleted")

    await hub.write(ctx, write)
    _changed(hub, ctx.tenant_id, req.endpointID)


@router.post("/webhook/endpoint/list", ListReq, admin_only=True)
async def list_endpoints(hub: Hub, ctx: Ctx, req: ListReq) -> dict[str, Any]:
    """The tenant's endpoints with their success rate, last error and pending count."""
    t = ctx.tenant_id
    async with hub.read() as s:
        query = (select(WebhookEndpoint)
                 .where(WebhookEndpoint.tenant_id == t, WebhookEndpoint.deleted == 0)
                 .order_by(WebhookEndpoint.create_time, WebhookEndpoint.endpoint_id))
        total = (await s.execute(select(func.count()).select_from(
            query.order_by(None).subquery()))).scalar_one()
        p = req.pagination
        rows = list((await s.execute(
            query.limit(p.showNumber).offset((p.pageNumber - 1) * p.showNumber))).scalars())
        pending: dict[str, int] = {}
        if rows:
            pending = {eid: n for eid, n in (await s.execute(
                select(WebhookDelivery.endpoint_id, func.count())
                .where(WebhookDelivery.tenant_id == t,
                       WebhookDelivery.endpoint_id.in_([r.endpoint_id for r in rows]),
                       IS_PENDING)
                .group_by(WebhookDelivery.endpoint_id))).all()}
    return {"total": int(total),
            "endpoints": [endpoint_view(r, pending.get(r.endpoint_id, 0)) for r in rows]}


@router.post("/webhook/endpoint/rotate_secret", RotateReq, admin_only=True)
async def rotate_secret(hub: Hub, ctx: Ctx, req: RotateReq) -> dict[str, Any]:
    """A new signing secret -> {secret}; the old one also signs for graceSeconds
    (default one day, 0 ends it at once)."""
    grace = _DEFAULT_GRACE_SECONDS if req.graceSeconds is None else req.graceSeconds
    secret = generate_secret()
    until = now_ms() + grace * 1000 if grace else 0

    async def write(tx: Tx) -> None:
        row = await _get(tx.session, ctx.tenant_id, req.endpointID)
        row.previous_secret = row.secret if grace else ""
        row.previous_secret_until = until
        row.secret, row.update_time = secret, now_ms()

    await hub.write(ctx, write)
    _changed(hub, ctx.tenant_id, req.endpointID)
    if req.endpointID == CONFIG_ENDPOINT_ID:
        # Before hooks are signed with the config endpoint's secret too.
        hub.webhook_configs.forget(ctx.tenant_id)
    return {"secret": secret, "previousSecretExpiresAt": until}


__all__ = ["EndpointInfo", "check_url", "guard_for", "normalize_events", "router",
           "sync_config_endpoint"]
