"""A real webhook receiver for tests: a small Starlette app served by uvicorn on its own
loopback port, recording every request and answering as the test tells it to."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.conftest import free_port


@dataclass
class Hit:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float
    status: int = 0  # what the receiver answered

    @property
    def json(self) -> dict[str, Any]:
        data: dict[str, Any] = orjson.loads(self.body)
        return data

    @property
    def webhook_id(self) -> str:
        return self.headers.get("webhook-id", "")


Answer = Callable[[Hit], Response | Awaitable[Response] | None]


@dataclass
class Receiver:
    port: int
    hits: list[Hit] = field(default_factory=list)
    # Returns the response for a hit; None means 200 "ok".
    answer: Answer | None = None
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def ok(self) -> list[Hit]:
        """Hits answered with a 2xx."""
        return [h for h in self.hits if 200 <= h.status < 300]

    def delivered_ids(self) -> set[str]:
        return {h.webhook_id for h in self.ok()}

    async def handle(self, request: Request) -> Response:
        hit = Hit(request.url.path, {k.lower(): v for k, v in request.headers.items()},
                  await request.body(), time.monotonic())
        response: Response | None = None
        if self.answer is not None:
            out = self.answer(hit)
            response = await out if inspect.isawaitable(out) else out
        if response is None:
            response = Response("ok", media_type="text/plain")
        hit.status = response.status_code
        self.hits.append(hit)
        self._changed.set()
        return response

    async def wait_for(self, pred: Callable[[Receiver], bool], timeout: float = 10.0,  # noqa: ASYNC109
                       what: str = "condition") -> None:
        """Wait until `pred(self)` holds, re-checking on every request."""
        async def loop() -> None:
            while not pred(self):
                self._changed.clear()
                # Woken by a request, or re-checked every 50 ms for conditions on time.
                try:
                    async with asyncio.timeout(0.05):
                        await self._changed.wait()
                except TimeoutError:
                    pass

        try:
            async with asyncio.timeout(timeout):
                await loop()
        except TimeoutError:
            raise AssertionError(f"receiver: timed out waiting for {what}; "
                                 f"{len(self.hits)} hits") from None


@asynccontextmanager
async def serve_receiver(port: int | None = None) -> AsyncIterator[Receiver]:
    receiver = Receiver(port or free_port())
    app = Starlette(routes=[Route("/{path:path}", receiver.handle, methods=["POST"])])
    async with serve_app(app, receiver.port):
        yield receiver


@asynccontextmanager
async def serve_app(app: Any, port: int) -> AsyncIterator[None]:
    """Serve an ASGI app with uvicorn on a loopback port for the duration of the block."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="off"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    try:
        yield
    finally:
        server.should_exit = True
        await task
