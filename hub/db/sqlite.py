"""SQLite without a thread hop per statement.

aiosqlite runs each call (cursor, execute, fetch) in its own thread and hands the result
back through the event loop: two GIL hand-overs per call, about a dozen per stored
message, which on a small, busy machine cost milliseconds each and capped chat at tens
of messages per second. This module gives SQLAlchemy's aiosqlite dialect a connection
with aiosqlite's interface whose statements run at once, in the event loop's thread:
SQLite answers from its page cache in microseconds, less than the hand-over costs.

What can take long moves to a worker thread: COMMIT, which waits for fsync
(synchronous=FULL), runs in the connection's own single-thread executor, so the loop
goes on serving while a batch becomes durable. The pool holds one connection and the
committer keeps it checked out until COMMIT returns, so the two threads never use it at
once.

A statement blocks the loop while SQLite waits for a lock another process holds
(`imhub tenant create` while the server runs, say): milliseconds in practice, bounded by
busy_timeout.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any


class Cursor:
    """aiosqlite.Cursor's interface over a sqlite3 cursor, without the thread."""

    __slots__ = ("_cursor",)

    def __init__(self, cursor: sqlite3.Cursor) -> None:
        self._cursor = cursor

    async def __aenter__(self) -> Cursor:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        self._cursor.close()

    async def execute(self, sql: str, parameters: Sequence[Any] = ()) -> Cursor:
        self._cursor.execute(sql, parameters)
        return self

    async def executemany(self, sql: str, seq: Iterable[Sequence[Any]]) -> Cursor:
        self._cursor.executemany(sql, seq)
        return self

    async def fetchone(self) -> Any:
        return self._cursor.fetchone()

    async def fetchmany(self, size: int | None = None) -> list[Any]:
        return self._cursor.fetchmany(size if size is not None else self._cursor.arraysize)

    async def fetchall(self) -> list[Any]:
        return self._cursor.fetchall()

    async def close(self) -> None:
        self._cursor.close()

    @property
    def description(self) -> Any:
        return self._cursor.description

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount

    @property
    def lastrowid(self) -> int | None:
        return self._cursor.lastrowid

    @property
    def arraysize(self) -> int:
        return self._cursor.arraysize

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        self._cursor.arraysize = value


class Connection:
    """aiosqlite.Connection's interface: statements inline, COMMIT in a worker thread."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        # SQLAlchemy's adapter reads aiosqlite's `_connection` (None once closed).
        self._connection: sqlite3.Connection | None = conn
        self._commits = ThreadPoolExecutor(1, thread_name_prefix="imhub-sqlite-commit")

    def cursor(self) -> Cursor:
        return Cursor(self._conn.cursor())

    async def execute(self, sql: str, parameters: Sequence[Any] = ()) -> Cursor:
        return await self.cursor().execute(sql, parameters)

    async def create_function(self, *args: Any, **kw: Any) -> None:
        self._conn.create_function(*args, **kw)

    async def commit(self) -> None:
        if self._conn.in_transaction:
            await asyncio.get_running_loop().run_in_executor(self._commits, self._conn.commit)

    async def write_and_commit(self, work: Sequence[tuple[str, list[list[Any]]]]) -> None:
        """Run `work` (executemany calls) and COMMIT, together in the commit thread: the
        inserts' SQLite work then runs beside the event loop instead of in it. On an error
        the transaction is rolled back and the error raised."""
        await asyncio.get_running_loop().run_in_executor(self._commits, self._write_commit,
                                                         work)

    def _write_commit(self, work: Sequence[tuple[str, list[list[Any]]]]) -> None:
        try:
            for sql, args in work:
                self._conn.executemany(sql, args)
            self._conn.commit()
        except BaseException:
            if self._conn.in_transaction:
                self._conn.rollback()
            raise

    async def rollback(self) -> None:
        self._conn.rollback()

    async def close(self) -> None:
        self.stop()

    def stop(self) -> None:
        self._connection = None
        self._conn.close()
        self._commits.shutdown(wait=False)

    @property
    def in_transaction(self) -> bool:
        return self._conn.in_transaction

    @property
    def sqlite(self) -> sqlite3.Connection:
        """The sqlite3 connection, for statements run without SQLAlchemy (hub/db/fast.py)."""
        return self._conn


async def connect(path: str) -> Connection:
    # isolation_level=None: the driver never begins on its own; hub/db/engine.py emits
    # BEGIN when SQLAlchemy begins, so savepoints nest inside a real transaction.
    # check_same_thread=False: COMMIT runs in the commit thread.
    return Connection(sqlite3.connect(path, isolation_level=None, check_same_thread=False))
