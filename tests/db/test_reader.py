"""Hot reads on PostgreSQL (hub/db/fast.py's Reader) on kept connections: no pool
checkout per read, at most `concurrency` connections, and a connection the server ended
is replaced without failing the read."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import literal_column, select, text
from sqlalchemy.ext.asyncio import create_async_engine

from hub.core import Hub
from hub.db.fast import Statement
from tests.conftest import PG_URL, counting, pg_schema, settings_for


@pytest.fixture
async def pg_hub() -> AsyncIterator[Hub]:
    async with pg_schema() as db:
        hub = Hub(settings_for(db, webhooks={"delivery": {"enabled": False}}))
        await hub.start()
        try:
            yield hub
        finally:
            await hub.close()


def _marked() -> tuple[Statement, str]:
    """A statement whose text names it, so that pg_stat_activity shows who ran it last."""
    mark = "reader_" + secrets.token_hex(4)
    return Statement(select(literal_column(f"'{mark}'"))), mark


async def test_reads_keep_their_connections(pg_hub: Hub) -> None:
    stmt, mark = _marked()
    with counting(pg_hub.engine, "checkout") as checkouts:
        for _ in range(50):
            assert await pg_hub.reads.rows(stmt, {}) == [(mark,)]
        assert checkouts[0] == 1
        got = await asyncio.gather(*(pg_hub.reads.rows(stmt, {}) for _ in range(40)))
        assert all(rows == [(mark,)] for rows in got)
        assert checkouts[0] <= pg_hub.settings.database.pool_size // 2


async def test_a_kept_connection_the_server_ended_is_replaced(pg_hub: Hub) -> None:
    stmt, mark = _marked()
    assert await pg_hub.reads.rows(stmt, {}) == [(mark,)]
    admin = create_async_engine(PG_URL)
    try:
        async with admin.connect() as conn:
            ended = (await conn.execute(text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE pid <> pg_backend_pid() AND query LIKE :q"),
                {"q": f"%{mark}%"})).scalars().all()
        assert ended == [True]
    finally:
        await admin.dispose()
    # The kept connection is dead: the read goes again on a new one.
    assert await pg_hub.reads.rows(stmt, {}) == [(mark,)]
    assert await pg_hub.reads.rows(stmt, {}) == [(mark,)]
