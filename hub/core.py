"""The Hub: one object holding what a node runs with (settings, storage, bus, tokens)."""

from __future__ import annotations

import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TypeVar

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from .auth import Tokens
from .bus import Bus
from .context import Ctx
from .db.engine import create_engine, migrate
from .domain.notify import Notifier
from .plugin import load_plugins
from .settings import Settings
from .signals import Signals
from .tx import Tx

log = logging.getLogger("imhub")

T = TypeVar("T")


class Hub:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        db = settings.database
        self.engine = create_engine(db.url, schema=db.schema_name, pool_size=db.pool_size,
                                    echo=db.echo)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        # Plugins are built here, before anything starts, so a bad plugin config stops
        # start-up with a ConfigError naming the plugin and key.
        self.bus = Bus(load_plugins(settings.plugins))
        self.signals = Signals()
        self.notifier = Notifier(self)
        self.tokens = Tokens(self.sessions, ttl_seconds=settings.auth.token_ttl_seconds,
                             cache_live_tokens=settings.redis_url is None)
        self._started = False

    async def start(self) -> None:
        """Migrate the schema, then start handlers."""
        await migrate(self.engine)
        await self.bus.start()
        self._started = True

    async def close(self) -> None:
        await self.bus.close()
        await self.engine.dispose()

    async def write(self, ctx: Ctx, fn: Callable[[Tx], Awaitable[T]]) -> T:
        """Run `fn` in one transaction with its after-events; after the commit, hand the
        events to the bus and run the post-commit work `fn` registered.

        Actions go through here, never through a session of their own, so that the
        transaction strategy (one per action, or a group commit) lives in one place.
        """
        async with self.sessions() as session, session.begin():
            tx = Tx(session, ctx)
            result = await fn(tx)
        await self._committed(tx)
        return result

    async def _committed(self, tx: Tx) -> None:
        if tx.events:
            self.bus.after(tx.events)
        for post in tx.post_commit:
            out = post()
            if inspect.isawaitable(out):
                await out

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        async with self.sessions() as session:
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
        return checks
