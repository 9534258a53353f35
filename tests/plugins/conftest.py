from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from tests.conftest import Database, Server, TenantHandle, settings_for

StartWith = Callable[..., Awaitable[TenantHandle]]


@pytest.fixture
def start_with(sqlite_database: Database, make_server: Callable[..., Awaitable[Server]],
               make_tenant: Callable[..., Awaitable[TenantHandle]]) -> StartWith:
    """`await start_with({"module": ..., "config": ...}, ...)`: a server with these plugins
    in its config, and a tenant on it. SQLite only: plugins do not touch the database."""

    async def start(*plugins: dict[str, Any]) -> TenantHandle:
        srv = await make_server(settings_for(sqlite_database, plugins=list(plugins)))
        return await make_tenant(srv)

    return start
