"""The Hub: one object holding what a node runs with (settings, storage, bus, tokens)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, TypeVar

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession, async_sessionmaker

from .auth import Tokens
from .bus import Bus
from .checks import SendChecks
from .cluster import Cluster, new_node_id
from .committer import Committer
from .context import Actor, Ctx
from .db.engine import create_engine, create_read_engine, is_sqlite, migrate
from .db.fast import Reader
from .domain.notify import Notifier
from .domain.push import Pusher
from .gateway import Gateway
from .plugin import load_plugins
from .presence import Presence
from .settings import Settings
from .signals import Signals
from .tx import Tx
from .webhooks.before import WebhookHandler
from .webhooks.config import WebhookConfigs

if TYPE_CHECKING:
    from .webhooks.delivery import DeliveryEngine

log = logging.getLogger("imhub")
# The context of the node's own writes (no tenant, no request).
_NODE = Ctx(Actor(""), "imhub-node")

T = TypeVar("T")


class Hub:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        db = settings.database
        # Plugins are built first, before anything is touched, so a bad plugin config stops
        # start-up with a ConfigError naming the plugin and key, and writes nothing.
        self.bus = Bus(load_plugins(settings.plugins))
        self.engine = create_engine(db.url, schema=db.schema_name, pool_size=db.pool_size,
                                    echo=db.echo)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        self.read_engine = create_read_engine(db.url, echo=db.echo)
        self._reads = async_sessionmaker(self.read_engine or self.engine,
                                         expire_on_commit=False)
        # Hot single-statement reads (hub/db/fast.py), cheaper than a session.
        self.reads = Reader(self.read_engine or self.engine,
                            concurrency=max(1, db.pool_size // 2))
        # Tenants' webhooks are one more handler on the bus (hub/webhooks/before.py).
        self.webhook_configs = WebhookConfigs(self.sessions, settings.webhooks)
        self.bus.add(WebhookHandler(self.webhook_configs))
        self.signals = Signals()
        self.notifier = Notifier(self)
        self.pusher = Pusher(self)
        # Imported here: the send queue's domain modules import the Hub.
        from .domain.send_queue import SendQueue

        self.sends = SendQueue(self)
        self.committer = Committer(
            self.sessions, self.bus, sqlite=is_sqlite(db.url),
            max_batch=settings.commit.max_batch,
            writers=1 if is_sqlite(db.url) else settings.commit.pg_writers)
        # One node writes SQLite: the only place where every change passes this process.
        self.checks = SendChecks(enabled=is_sqlite(db.url))
        self.committer.on_checks_changed = self.checks.changed
        self.tokens = Tokens(self.sessions, ttl_seconds=settings.auth.token_ttl_seconds,
                             cache_live_tokens=settings.redis_url is None)
        # Several nodes (hub/cluster.py) when Redis is set; presence and the WebSocket
        # gateway (hub/presence.py, hub/gateway/).
        self.cluster = (Cluster(settings.redis_url, prefix=settings.redis_prefix,
                                node_ttl=settings.gateway.node_ttl_seconds)
                        if settings.redis_url else None)
        # Starts every connection ID of this process (hub/gateway/gateway.py).
        self.node_id = self.cluster.node_id if self.cluster is not None else new_node_id()
        self.presence = Presence(self)
        self.gateway = Gateway(self)
        self._started = False
        # After-event webhook delivery (hub/webhooks/delivery.py), when this node runs it.
        self.delivery: DeliveryEngine | None = None

    async def start(self) -> None:
        """Migrate the schema, then start handlers."""
        await migrate(self.engine)
        await self.bus.start()
        await self.gateway.start()
        if self.settings.webhooks.delivery.enabled:
            await self.start_delivery()
        self._started = True

    async def start_delivery(self) -> None:
        """Run the delivery workers in this process (`imhub serve`, `imhub worker`)."""
        from .webhooks.delivery import DeliveryEngine

        if self.delivery is None:
            self.delivery = DeliveryEngine.for_hub(self)
            await self.delivery.start()
            # Dispatch as soon as a batch with events commits, not at the next poll.
            self.committer.on_events = self.delivery.wake

    async def close(self) -> None:
        await self.gateway.close()  # connections' offline events still write
        if self.delivery is not None:
            self.committer.on_events = None
            await self.delivery.close()
        await self.sends.drain()  # queued sends are stored and answered
        await self.pusher.drain()  # offline pushes still write through the committer
        await self.committer.close()
        await self.bus.close()
        await self.reads.close()
        if self.read_engine is not None:
            await self.read_engine.dispose()
        await self.engine.dispose()

    async def write(self, ctx: Ctx, fn: Callable[[Tx], Awaitable[T]], *, orm: bool = True,
                    changes_checks: bool = True, size: int = 1) -> T:
        """Run `fn` in one transaction with its after-events; after the commit, hand the
        events to the bus and run the post-commit work `fn` registered.

        Actions go through here, never through a session of their own, so that the
        transaction strategy (one per action, or a group commit) lives in one place.
        Concurrent writes share one transaction (hub/committer.py): `fn` must write only
        through `tx` and may run more than once. `orm=False` promises that `fn` leaves
        the ORM alone (on SQLite its batch then runs without an ORM session);
        `changes_checks=False` that it changes no user, relation or group, so what sends
        check stays cached (hub/checks.py); `size` how many actions `fn` writes (a batch
        of sends), which decides where a busy SQLite COMMIT runs.
        """
        result: T = await self.committer.write(ctx, fn, orm=orm, changes_checks=changes_checks,
                                               size=size)
        return result

    async def run_in_transaction(self, fn: Callable[[AsyncConnection], Awaitable[T]]) -> T:
        """Run `fn` on the Core connection of a group-commit transaction, for node
        bookkeeping written against a connection (webhook delivery's dispatch and
        results). Like any write, `fn` may run more than once."""
        async def write(tx: Tx) -> T:
            return await fn(await tx.session.connection())

        return await self.write(_NODE, write, changes_checks=False)

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        async with self._reads() as session:
            yield session


    async def ready(self) -> dict[str, bool]:
        checks: dict[str, bool] = {}
        try:
            async with self.sessions() as s:
                await s.execute(text("SELECT 1"))
            checks["database"] = True
        except Exception:
            log.exception("readiness: database")
            checks["database"] = False
        if self.cluster is not None:
            checks["redis"] = await self.cluster.ping()
        return checks
