"""`imhub serve` with SendMsg (1003) cut down to a floor, for bench/chat_throughput.py.

    python bench/_floor.py relay|store serve --config ... --port ...

Everything else is the real server: uvicorn, the gateway's frame reading and writing, a
task per request, the reply and push frames. Only the send handler is replaced:

- `relay`: no validation, no checks, no storage. The message gets the next seq from a
  dict and is acked and pushed to the recipient's connections at once.
- `store`: the same, acked after a minimal group commit: the sends waiting when a
  commit starts are one transaction of two executemany (a message row and an outbox
  row of its JSON) on a SQLite file of their own with synchronous=FULL, COMMIT in a
  thread.

The distance from these to imhub's own send is what validation, the send's checks and
hooks, the committer's bookkeeping and the real schema cost (docs/performance.md).
Single chat only; no clientMsgID deduplication.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import sqlite3
import sys
import time
from typing import Any

import orjson

from hub.cli import run
from hub.gateway import frames
from hub.gateway import requests as gateway_requests
from hub.gateway.frames import ReqID

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS m (id TEXT PRIMARY KEY, conv TEXT, seq INT, send TEXT, "
    "recv TEXT, ct INT, content TEXT, ts INT, UNIQUE (conv, seq))",
    "CREATE TABLE IF NOT EXISTS o (id INTEGER PRIMARY KEY, ev TEXT, body TEXT)",
)


class _Store:
    """The minimal group commit: whoever waits when a commit starts goes in it."""

    def __init__(self, path: str) -> None:
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        for pragma in ("PRAGMA journal_mode=WAL", "PRAGMA synchronous=FULL", *_SCHEMA):
            self._db.execute(pragma)
        self._pending: list[tuple[asyncio.Future[None], tuple[Any, ...], tuple[str, str]]] = []
        self._busy = False
        self._task: asyncio.Task[None] | None = None

    async def put(self, row: tuple[Any, ...], event: tuple[str, str]) -> None:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        self._pending.append((done, row, event))
        if not self._busy:
            self._busy = True
            self._task = loop.create_task(self._flush())
        await done

    def _write(self, rows: list[tuple[Any, ...]], events: list[tuple[str, str]]) -> None:
        self._db.execute("BEGIN")
        self._db.executemany("INSERT INTO m VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
        self._db.executemany("INSERT INTO o (ev, body) VALUES (?, ?)", events)
        self._db.execute("COMMIT")

    async def _flush(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                await loop.run_in_executor(None, self._write, [b[1] for b in batch],
                                           [b[2] for b in batch])
                for done, _, _ in batch:
                    done.set_result(None)
        finally:
            self._busy = False


def install(mode: str) -> None:
    if mode not in ("relay", "store"):
        raise SystemExit(f"floor: unknown mode {mode!r} (relay or store)")
    seqs: dict[str, int] = {}
    ids = itertools.count()
    store: list[_Store] = []

    async def send(hub: Any, ctx: Any, conn: Any, data: dict[str, Any]) -> Any:
        sender, recv = conn.user_id, data["recvID"]
        conv = "si_" + "_".join(sorted((sender, recv)))
        seq = seqs[conv] = seqs.get(conv, 0) + 1
        msg = {"serverMsgID": f"m{next(ids)}", "clientMsgID": data["clientMsgID"],
               "sendID": sender, "recvID": recv, "sessionType": 1,
               "contentType": data["contentType"], "content": data["content"], "seq": seq,
               "sendTime": time.time_ns() // 1_000_000, "conversationID": conv}
        if mode == "store":
            if not store:
                url = os.environ["IMHUB_DATABASE_URL"]
                store.append(_Store(url.split(":///", 1)[1] + ".floor"))
            await store[0].put(
                (msg["serverMsgID"], conv, seq, sender, recv, msg["contentType"],
                 msg["content"], msg["sendTime"]),
                ("afterSendSingleMsg", orjson.dumps(msg).decode()))
        conns = hub.presence.local.of_user(conn.tenant_id, recv)
        if conns:
            frame = frames.push([msg])
            for c in conns.values():
                c.write(frame)
        return {k: msg[k] for k in ("serverMsgID", "clientMsgID", "sendTime", "seq")}

    gateway_requests._HANDLERS[ReqID.SEND_MSG] = send


if __name__ == "__main__":
    install(sys.argv.pop(1))
    run()
