"""SQLite without a thread hop per statement.

aiosqlite runs each call (cursor, execute, fetch) in its own thread and hands the result
back through the event loop: two GIL hand-overs per call, about a dozen per stored
message, which on a small, busy machine cost milliseconds each and capped chat at tens
of messages per second. This module gives SQLAlchemy's aiosqlite dialect a connection
with aiosqlite's interface whose statements run at once, in the event loop's thread:
SQLite answers from its page cache in microseconds, less than the hand-over costs.

COMMIT waits for fsync (synchronous=FULL). It runs in the connection's own
single-thread executor, so that the loop goes on serving while a batch becomes durable,
except when the group commit is busy (`hurry`: its batches are large, so writers queue
up behind each COMMIT) and commits are quick (`_CommitPlace`), or when commits take less
than the hand-over to the thread would (a disk that does not really wait for fsync, a
database in memory): then it runs in the loop.
Under load, a COMMIT handed to a thread costs two GIL hand-overs that each wait for the
busy loop to let go of the GIL (a millisecond or more), more than a fast disk's fsync,
and the writes queued behind it wait too; with little going on, the hand-overs are
quick and a COMMIT in the loop would only hold up the other connections by its fsync.
The pool holds one connection and the committer keeps it checked out until COMMIT
returns, so the two threads never use it at once.

A statement blocks the loop while SQLite waits for a lock another process holds
(`imhub tenant create` while the server runs, say): milliseconds in practice, bounded by
busy_timeout.
"""

from __future__ import annotations

import asyncio
import sqlite3
import statistics
import time
from collections import deque
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


class _CommitPlace:
    """Where the next COMMIT runs: in the event loop while commits are quick, in the
    commit thread once they are slow (the module docstring says why).

    Commits move to the thread when the median of the last `window` commits run in the
    loop passes `slow` seconds (a median, so that a checkpoint or a start-up commit does
    not decide). While they run there, every `probe_every`-th runs in the loop again, and
    one quicker than `quick` brings them back. A commit in the thread cannot be timed on
    its own: the GIL hand-overs are part of its time.

    That is for hurried commits. Any other commit runs in the loop only while the median
    of the last three or more run there is under `instant` (~the thread hand-over's own
    cost: then the loop loses less to the COMMIT than to the hand-over); otherwise every
    `probe_every`-th does, to learn when the disk got that quick.
    """

    __slots__ = ("_in_loop", "_instant", "_probe_every", "_quick", "_recent", "_since",
                 "_slow", "_small_ok")

    def __init__(self, *, slow: float = 0.002, quick: float = 0.001, instant: float = 0.0002,
                 window: int = 9, probe_every: int = 32) -> None:
        self._slow, self._quick, self._probe_every = slow, quick, probe_every
        self._instant = instant
        self._recent: deque[float] = deque(maxlen=window)
        self._in_loop = True
        self._small_ok = False
        self._since = 0

    @property
    def in_loop(self) -> bool:
        return self._in_loop

    def inline(self, hurry: bool = True) -> bool:
        """Whether the next commit runs in the loop (a probe counts)."""
        if self._in_loop and (hurry or self._small_ok):
            return True
        self._since += 1
        return self._since % self._probe_every == 0

    def took(self, seconds: float) -> None:
        """The time a commit run in the loop took."""
        if not self._in_loop:
            if seconds < self._quick:  # a probe: the disk is quick again
                self._in_loop = True
                self._recent.clear()
            return
        self._recent.append(seconds)
        median = statistics.median(self._recent)
        self._small_ok = len(self._recent) >= 3 and median < self._instant
        if len(self._recent) == self._recent.maxlen and median > self._slow:
            self._in_loop = False
            self._small_ok = False


class Connection:
    """aiosqlite.Connection's interface: statements inline, COMMIT where it costs least."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        # SQLAlchemy's adapter reads aiosqlite's `_connection` (None once closed).
        self._connection: sqlite3.Connection | None = conn
        self._commits = ThreadPoolExecutor(1, thread_name_prefix="imhub-sqlite-commit")
        self._place = _CommitPlace()
        # Set by the group commit for its next COMMIT when writers queue up behind it.
        self.hurry = False

    def cursor(self) -> Cursor:
        return Cursor(self._conn.cursor())

    async def execute(self, sql: str, parameters: Sequence[Any] = ()) -> Cursor:
        return await self.cursor().execute(sql, parameters)

    async def create_function(self, *args: Any, **kw: Any) -> None:
        self._conn.create_function(*args, **kw)

    async def commit(self) -> None:
        if not self._conn.in_transaction:
            return
        hurry, self.hurry = self.hurry, False
        if self._place.inline(hurry):
            start = time.perf_counter()
            self._conn.commit()
            self._place.took(time.perf_counter() - start)
        else:
            await asyncio.get_running_loop().run_in_executor(self._commits, self._conn.commit)

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
