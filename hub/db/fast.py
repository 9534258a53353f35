"""The statements every message runs, compiled once and run on the driver connection.

SQLAlchemy's `execute` spends about 0.2 ms per call on a small machine (cache key,
execution context, result objects) where SQLite answers the statement itself in 15 us;
a message runs a handful of statements, so that overhead decided chat throughput. A
`Statement` compiles its Core statement once per dialect and runs the SQL text on the
DBAPI driver connection underneath an `AsyncConnection` or an `AsyncSession`, inside
whatever transaction SQLAlchemy has open on it (or none: one statement is then its own
transaction).

Only plain column types belong here (strings and integers): no type processing is done
on the way in or out. Rows are tuples in the statement's column order.

Asking a session for its driver connection costs more than a statement, so the group
committer resolves a `Driver` once per batch and hands it to the writes (`Tx.db`);
a Statement runs on a Driver, an AsyncConnection or an AsyncSession alike.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from operator import attrgetter, itemgetter
from typing import Any, NoReturn

from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession
from sqlalchemy.sql import Executable

from .sqlite import Connection as SQLiteConnection

Params = Mapping[str, Any]


class Driver:
    """A DBAPI driver connection, resolved once, with what running SQL on it needs."""

    __slots__ = ("adapter", "dialect", "driver", "sqlite")

    def __init__(self, dialect: Dialect, driver: Any, adapter: Any) -> None:
        self.dialect = dialect
        self.driver = driver  # hub/db/sqlite.py's Connection, or asyncpg's
        self.adapter = adapter  # SQLAlchemy's DBAPI adapter (for its error translation)
        self.sqlite: sqlite3.Connection | None = (
            driver.sqlite if isinstance(driver, SQLiteConnection) else None)


On = AsyncConnection | AsyncSession | Driver


# A parameter set: a mapping by bind name, or an object (`Statement(attributes=True)`).
_Compiled = tuple[str, Callable[[Any], Sequence[Any]]]


class Statement:
    """`attributes=True`: a parameter set is an object whose attributes are named after
    the binds (a dataclass row, say) rather than a mapping, so no dict is built per row."""

    def __init__(self, stmt: Executable, *, attributes: bool = False) -> None:
        self._stmt = stmt
        self._attributes = attributes
        self._compiled: dict[str, _Compiled] = {}

    def _sql(self, dialect: Dialect) -> _Compiled:
        """The SQL text for `dialect`, and what turns a parameter dict into its
        positional arguments."""
        found = self._compiled.get(dialect.name)
        if found is None:
            compiled = self._stmt.compile(dialect=dialect)  # type: ignore[attr-defined]
            # positiontup: the bind names in the order of the positional parameters.
            # Defaults: the values written into the statement (`min_seq=0`); a bind
            # without one must come with the call (a KeyError otherwise, never a NULL).
            names = tuple(compiled.positiontup or ())
            defaults = {k: v for k, v in compiled.params.items() if v is not None}
            if self._attributes:
                assert names and not defaults, "attributes for every bind, no defaults"
                get = attrgetter(*names)
                found = (compiled.string, get if len(names) > 1 else lambda p: (get(p),))
            else:
                found = (compiled.string, _args_of(names, defaults))
            self._compiled[dialect.name] = found
        return found

    async def rows(self, on: On, params: Params) -> list[Sequence[Any]]:
        """Run with `params` (by bind name); return every row."""
        return await self._rows(on if isinstance(on, Driver) else await driver_of(on), params)

    async def _rows(self, on: Driver, params: Params) -> list[Sequence[Any]]:
        sql, args_of = self._sql(on.dialect)
        args = args_of(params)
        try:
            if on.sqlite is not None:
                return on.sqlite.execute(sql, args).fetchall()
            return list(await on.driver.fetch(sql, *args))  # asyncpg
        except Exception as exc:
            _reraise(on, sql, args, exc)

    async def many(self, on: On, params: Sequence[Any]) -> None:
        """Run once per parameter set (a mapping, or an object for a statement taking
        attributes), returning nothing (executemany)."""
        d = on if isinstance(on, Driver) else await driver_of(on)
        sql, args_of = self._sql(d.dialect)
        args = list(map(args_of, params))
        try:
            if d.sqlite is not None:
                d.sqlite.executemany(sql, args)
            else:
                await d.driver.executemany(sql, args)  # asyncpg
        except Exception as exc:
            _reraise(d, sql, args, exc)


def _args_of(names: tuple[str, ...], defaults: dict[str, Any]
             ) -> Callable[[Params], Sequence[Any]]:
    # A bind name may repeat (a subquery per check): each is looked up. Without defaults,
    # itemgetter does it in C, three times faster than a comprehension for a message row.
    if defaults:
        return lambda p: [p[n] if n in p else defaults[n] for n in names]
    if len(names) > 1:
        return itemgetter(*names)
    if names:
        name = names[0]
        return lambda p: (p[name],)
    return lambda p: ()


class Reader:
    """Reads of one statement each, for the hot paths.

    On SQLite one read-only connection, kept, serves them all: a statement runs inline
    and whole (hub/db/sqlite.py), so none interleaves with another, and borrowing a
    pooled connection per read would cost more than the read. On PostgreSQL up to
    `concurrency` connections are kept (the hub gives half the pool, leaving the rest to
    the group commit and the other reads), each serving one read at a time: borrowing one
    from the pool per read cost a checkout, a greenlet switch and the pool's reset (a
    ROLLBACK round trip) on return, about a third of a send's CPU; and without the bound
    a burst of sends would take the pool's overflow, whose connections are opened for one
    read and closed after it. A kept connection that a read finds closed (the server
    restarted) is let go, and that read tries once more on a new one.
    """

    def __init__(self, engine: AsyncEngine, *, concurrency: int = 4) -> None:
        self._engine = engine
        self._kept: AsyncConnection | None = None
        self._driver: Driver | None = None
        self._slots = asyncio.Semaphore(concurrency)
        # PostgreSQL: kept connections not serving a read now.
        self._idle: list[tuple[AsyncConnection, Driver]] = []

    async def rows(self, stmt: Statement, params: Params) -> list[Sequence[Any]]:
        if self._driver is not None:
            return await stmt._rows(self._driver, params)
        if self._engine.dialect.name != "sqlite":
            async with self._slots:
                return await self._pg_rows(stmt, params)
        conn = await self._engine.connect()
        if self._kept is None:
            self._kept, self._driver = conn, await driver_of(conn)
        else:
            await conn.close()  # another caller kept one meanwhile
        assert self._driver is not None
        return await stmt._rows(self._driver, params)

    async def _pg_rows(self, stmt: Statement, params: Params) -> list[Sequence[Any]]:
        retried = False
        while True:
            if self._idle:
                conn, driver = self._idle.pop()
            else:
                conn = await self._engine.connect()
                driver = await driver_of(conn)
            try:
                rows = await stmt._rows(driver, params)
            except BaseException:
                closed = driver.driver.is_closed()
                # A read cut short (cancelled, failed) may leave the connection mid-way:
                # it goes back to the pool, which resets or discards it.
                await _let_go(conn, invalidate=closed)
                if closed and not retried:
                    retried = True
                    continue
                raise
            self._idle.append((conn, driver))
            return rows

    async def close(self) -> None:
        if self._kept is not None:
            await self._kept.close()
        self._kept = self._driver = None
        idle, self._idle = self._idle, []
        for conn, _ in idle:
            await conn.close()


async def _let_go(conn: AsyncConnection, *, invalidate: bool) -> None:
    try:
        if invalidate:
            await conn.invalidate()
        await conn.close()
    except Exception:  # the connection is gone already: nothing to give back
        pass


@asynccontextmanager
async def savepoint(session: AsyncSession) -> AsyncIterator[None]:
    """A SAVEPOINT that SQLAlchemy does not know of, for SQLite writes that use no ORM:
    the session's own `begin_nested()` costs ten times the SQL (its bookkeeping keeps ORM
    objects consistent after a rollback, which such a write does not need). Not nestable.
    """
    db = (await driver_of(session)).sqlite
    assert db is not None
    db.execute("SAVEPOINT imhub_write")
    try:
        yield
    except BaseException:
        db.execute("ROLLBACK TO SAVEPOINT imhub_write")
        db.execute("RELEASE SAVEPOINT imhub_write")
        raise
    db.execute("RELEASE SAVEPOINT imhub_write")


_CACHE_KEY = "imhub.fast.driver"


def dialect_name(on: On) -> str:
    if isinstance(on, AsyncSession):
        return on.get_bind().dialect.name
    return on.dialect.name


async def driver_of(on: AsyncConnection | AsyncSession) -> Driver:
    """The driver connection under `on`, for statements run back to back on it."""
    if isinstance(on, AsyncConnection):
        raw = await on.get_raw_connection()
        return Driver(on.dialect, raw.driver_connection, raw.dbapi_connection)
    # Asking the session for its connection costs more than the statement, so it is asked
    # once per (nested) transaction: that first ask is also what makes the session emit a
    # pending SAVEPOINT, which must precede the statement.
    cached = on.info.get(_CACHE_KEY)
    if cached is not None and cached[0] is _innermost(on):
        return cached[1]  # type: ignore[no-any-return]
    found = await driver_of(await on.connection())
    on.info[_CACHE_KEY] = (_innermost(on), found)
    return found


def _innermost(session: AsyncSession) -> Any:
    sync = session.sync_session
    return sync.get_nested_transaction() or sync.get_transaction()


def _reraise(on: Driver, sql: str, args: Any, exc: Exception) -> NoReturn:
    """Raise what SQLAlchemy would have: its IntegrityError, DBAPIError, ... wrapping the
    driver's error as its DBAPI adapter translates it (asyncpg's carry the sqlstate)."""
    translated: BaseException = exc
    dialect = on.dialect
    handle = getattr(on.adapter, "_handle_exception", None)
    if handle is not None and not isinstance(exc, sqlite3.Error):
        try:
            handle(exc)
        except Exception as out:
            translated = out
    dbapi_error = dialect.loaded_dbapi.Error
    if isinstance(translated, dbapi_error):
        raise DBAPIError.instance(sql, args, translated, dbapi_error) from exc
    raise exc
