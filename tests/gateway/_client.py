"""A test client for the gateway: a real `websockets` connection that matches replies to
requests by msgIncr and collects what the server sends on its own (2001, 2002)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from typing import Any

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

_incr = itertools.count(1)


class Client:
    def __init__(self, ws: ClientConnection, user_id: str, platform_id: int) -> None:
        self.ws = ws
        self.user_id = user_id
        self.platform_id = platform_id
        self.server_frames: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.unmatched: asyncio.Queue[dict[str, Any]] = asyncio.Queue()  # replies no one awaited
        self._waiting: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self.closed = asyncio.Event()
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def open(cls, ws_url: str, user_id: str, token: str, platform_id: int = 1, *,
                   ping_interval: float | None = None, operation_id: str = "op-connect"
                   ) -> Client:
        url = (f"{ws_url}?sendID={user_id}&token={token}&platformID={platform_id}"
               f"&operationID={operation_id}")
        ws = await connect(url, proxy=None, ping_interval=ping_interval, max_size=None,
                           open_timeout=10, close_timeout=2)
        return cls(ws, user_id, platform_id)

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                frame = orjson.loads(raw)
                waiter = self._waiting.pop(frame.get("msgIncr", ""), None)
                if waiter is not None and not waiter.done():
                    waiter.set_result(frame)
                elif frame.get("reqIdentifier") in (2001, 2002):
                    await self.server_frames.put(frame)
                else:
                    await self.unmatched.put(frame)
        except ConnectionClosed:
            pass
        finally:
            self.closed.set()

    def expect(self, msg_incr: str) -> asyncio.Future[dict[str, Any]]:
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[msg_incr] = fut
        return fut

    async def send_raw(self, frame: str | bytes) -> None:
        await self.ws.send(frame)

    async def request(self, req_identifier: int, data: dict[str, Any] | None = None, *,
                      operation_id: str = "op-test", within: float = 10) -> dict[str, Any]:
        """Send a request and wait for the reply with its msgIncr."""
        incr = f"{self.user_id}-{next(_incr)}"
        fut = self.expect(incr)
        frame: dict[str, Any] = {"reqIdentifier": req_identifier, "msgIncr": incr,
                                 "operationID": operation_id}
        if data is not None:
            frame["data"] = data
        await self.ws.send(orjson.dumps(frame).decode())
        async with asyncio.timeout(within):
            return await fut

    async def send_text(self, recv_id: str, text: str, **extra: Any) -> dict[str, Any]:
        """1003 SendMsg of a text message to recv_id; returns the reply."""
        return await self.request(1003, {
            "sendID": self.user_id, "recvID": recv_id, "sessionType": 1, "contentType": 101,
            "content": orjson.dumps({"content": text}).decode(), **extra})

    async def next_push(self, within: float = 5) -> dict[str, Any]:
        async with asyncio.timeout(within):
            return await self.server_frames.get()

    async def next_unmatched(self, within: float = 5) -> dict[str, Any]:
        async with asyncio.timeout(within):
            return await self.unmatched.get()

    async def pushed_messages(self, n: int, within: float = 5) -> list[dict[str, Any]]:
        """The next n messages pushed (2001), whatever their conversations."""
        out: list[dict[str, Any]] = []
        while len(out) < n:
            frame = await self.next_push(within)
            assert frame["reqIdentifier"] == 2001, frame
            for msgs in frame["data"]["msgs"].values():
                out.extend(msgs)
        return out

    async def wait_closed(self, within: float = 5) -> tuple[int | None, str]:
        async with asyncio.timeout(within):
            await self.closed.wait()
        rcvd = self.ws.close_code, self.ws.close_reason
        return rcvd[0], rcvd[1] or ""

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.ws.close()
        self._reader.cancel()
        with contextlib.suppress(BaseException):
            await self._reader


async def refused(ws_url: str, query: str) -> tuple[int, dict[str, Any]]:
    """Connect with `query` expecting a refusal; (HTTP status, JSON body)."""
    try:
        ws = await connect(f"{ws_url}?{query}", proxy=None, open_timeout=10)
    except InvalidStatus as exc:
        return exc.response.status_code, orjson.loads(exc.response.body or b"null")
    await ws.close()
    raise AssertionError("the upgrade was accepted")
