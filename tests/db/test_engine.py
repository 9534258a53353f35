"""The SQLite engine beside another process's writer (`imhub events replay` while the
server runs): the writer's transactions hold the write lock from BEGIN."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from hub.db.engine import create_engine, create_read_engine


def _other_process_write(path: Path) -> str:
    # A second connection stands for a second process; a short timeout so that the test
    # learns quickly whether the write lock is free.
    other = sqlite3.connect(path, timeout=0.2, isolation_level=None)
    try:
        other.execute("INSERT INTO t (v) VALUES ('other')")
        return "written"
    except sqlite3.OperationalError as exc:
        return str(exc)
    finally:
        other.close()


@pytest.fixture
async def writer(tmp_path: Path) -> AsyncIterator[tuple[AsyncEngine, Path]]:
    """The node's write engine on a new file with one table, `t (v TEXT)`."""
    path = tmp_path / "w.db"
    engine = create_engine(f"sqlite+aiosqlite:///{path}")
    async with engine.begin() as conn:
        await conn.execute(text("CREATE TABLE t (v TEXT)"))
    yield engine, path
    await engine.dispose()


async def test_a_read_then_write_transaction_is_not_overtaken(
        writer: tuple[AsyncEngine, Path]) -> None:
    engine, path = writer
    async with engine.begin() as conn:
        assert (await conn.execute(text("SELECT count(*) FROM t"))).scalar() == 0
        # With a deferred BEGIN the other writer got in here, and the write below
        # failed at once with "database is locked" (SQLITE_BUSY_SNAPSHOT).
        assert _other_process_write(path) == "database is locked"
        await conn.execute(text("INSERT INTO t (v) VALUES ('mine')"))
    assert _other_process_write(path) == "written"
    async with engine.connect() as conn:
        rows = (await conn.execute(text("SELECT v FROM t ORDER BY rowid"))).scalars()
        assert list(rows) == ["mine", "other"]


async def test_readers_take_no_write_lock(writer: tuple[AsyncEngine, Path]) -> None:
    _, path = writer
    reader = create_read_engine(f"sqlite+aiosqlite:///{path}")
    assert reader is not None
    try:
        async with reader.begin() as conn:
            assert (await conn.execute(text("SELECT count(*) FROM t"))).scalar() == 0
            assert _other_process_write(path) == "written"
            # One snapshot for the reader's whole transaction.
            assert (await conn.execute(text("SELECT count(*) FROM t"))).scalar() == 0
    finally:
        await reader.dispose()
