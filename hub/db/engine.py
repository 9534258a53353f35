"""The async engine, tuned per backend, and Alembic migrations applied in-process."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, event
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry

from . import sqlite as sqlite_inline

_MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def create_engine(url: str, *, schema: str | None = None, pool_size: int = 10,
                  echo: bool = False) -> AsyncEngine:
    """An engine for `url`. SQLite gets WAL and one connection: it has one writer anyway,
    and a single connection turns would-be `database is locked` errors into a queue."""
    if is_sqlite(url):
        path = url.split(":///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        # Statements run inline, COMMIT in a thread: hub/db/sqlite.py says why.
        engine = create_async_engine(url, echo=echo, pool_size=1, max_overflow=0,
                                     pool_timeout=60,
                                     async_creator=lambda: sqlite_inline.connect(path))
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        event.listen(engine.sync_engine, "begin", _sqlite_begin)
        return engine
    connect_args: dict[str, Any] = {}
    if schema:
        connect_args["server_settings"] = {"search_path": schema}
    return create_async_engine(url, echo=echo, pool_size=pool_size, max_overflow=pool_size,
                               pool_pre_ping=False, connect_args=connect_args)


def create_read_engine(url: str, *, pool_size: int = 4, echo: bool = False
                       ) -> AsyncEngine | None:
    """SQLite only: read-only connections for `Hub.read`, so that reads go on while the
    writer's COMMIT waits for fsync (WAL lets readers run beside the one writer).
    PostgreSQL reads share the main pool: None."""
    if not is_sqlite(url):
        return None
    path = url.split(":///", 1)[-1]
    engine = create_async_engine(url, echo=echo, pool_size=pool_size, max_overflow=0,
                                 pool_timeout=60,
                                 async_creator=lambda: sqlite_inline.connect(path))
    event.listen(engine.sync_engine, "connect", _sqlite_read_only)
    event.listen(engine.sync_engine, "begin", _sqlite_begin_read)
    return engine


def _sqlite_read_only(dbapi_conn: DBAPIConnection, record: ConnectionPoolEntry) -> None:
    _sqlite_pragmas(dbapi_conn, record)
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA query_only=ON")  # a write here is an error, never a second writer
    cur.close()


def _sqlite_pragmas(dbapi_conn: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=FULL")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def _sqlite_begin_with(sql: str) -> Callable[[Connection], None]:
    # The connection never begins on its own (hub/db/sqlite.py), so that the group
    # commit's savepoints nest in a real transaction (SQLAlchemy's documented recipe).
    # Straight on the sqlite3 connection: through exec_driver_sql, SQLAlchemy's execute
    # path cost more than the rest of a one-message transaction.
    def begin(conn: Connection) -> None:
        driver = conn.connection.driver_connection
        if isinstance(driver, sqlite_inline.Connection):
            driver.sqlite.execute(sql)
        else:
            conn.exec_driver_sql(sql)

    return begin


# The writer: IMMEDIATE takes the write lock at BEGIN, where busy_timeout waits for
# another process's writer (`imhub events replay` beside a serving node). A deferred
# transaction that reads first and writes later fails at once with "database is locked"
# when another process committed in between (SQLITE_BUSY_SNAPSHOT); no timeout helps it.
# This engine is the process's one writer, so nothing here waits that did not before.
SQLITE_WRITER_BEGIN = "BEGIN IMMEDIATE"  # also the committer's, without SQLAlchemy
_sqlite_begin = _sqlite_begin_with(SQLITE_WRITER_BEGIN)
# Readers: deferred, no write lock, one snapshot per transaction.
_sqlite_begin_read = _sqlite_begin_with("BEGIN")


def alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    return cfg


def _upgrade(sync_conn: Connection) -> None:
    cfg = alembic_config()
    cfg.attributes["connection"] = sync_conn
    command.upgrade(cfg, "heads")


async def migrate(engine: AsyncEngine) -> None:
    """Bring the schema to its heads; on PostgreSQL an advisory lock makes nodes take turns."""
    async with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            await conn.exec_driver_sql("SELECT pg_advisory_xact_lock(726411001)")
        await conn.run_sync(_upgrade)
