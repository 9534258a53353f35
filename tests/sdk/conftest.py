"""SDK test helpers: clients against the real server, a listener that records, a push
filter on the server's own push path, and a way to wait for what happens eventually."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from hub.sdk import (
    Config,
    ConnState,
    IMClient,
    Listener,
    Message,
    SyncProgress,
    init_sdk,
)
from tests.conftest import Server

# Short enough that the heartbeat finds a lost push within a test, long enough that a
# test which must not rely on it can tell (those pass heartbeat_interval=60).
FAST = {"heartbeat_interval": 0.2, "request_timeout": 5.0, "reconnect_min": 0.05,
        "reconnect_max": 0.5}


class Recorder(Listener):
    """Records everything the SDK reports, and lets a test wait for a condition."""

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.notifications: list[Message] = []
        self.states: list[ConnState] = []
        self.progress: list[SyncProgress] = []
        self.kicks = 0
        self._changed = asyncio.Event()

    def _bump(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def on_new_message(self, msg: Message) -> None:
        self.messages.append(msg)
        self._bump()

    async def on_new_notification(self, msg: Message) -> None:  # async ones work too
        self.notifications.append(msg)
        self._bump()

    def on_kicked(self) -> None:
        self.kicks += 1
        self._bump()

    def on_connection_state(self, state: ConnState, error: BaseException | None) -> None:
        self.states.append(state)
        self._bump()

    def on_sync_progress(self, progress: SyncProgress) -> None:
        self.progress.append(progress)
        self._bump()

    def seqs(self, conversation_id: str) -> list[int]:
        return [m.seq for m in self.messages if m.conversation_id == conversation_id]

    async def wait_for(self, cond: Callable[[], bool], within: float = 10.0) -> None:
        async with asyncio.timeout(within):
            while not cond():
                await self._changed.wait()


async def eventually(cond: Callable[[], Awaitable[bool]], within: float = 10.0) -> None:
    """Poll an async condition (say, on the local store, which has no event) until it
    holds."""
    async with asyncio.timeout(within):
        while True:
            if await cond():
                return
            await asyncio.sleep(0.02)


ClientFactory = Callable[..., Awaitable[tuple[IMClient, Recorder]]]


@pytest.fixture
async def make_client(tmp_path: Path) -> AsyncIterator[ClientFactory]:
    """`await make_client(server, user, token, **config)`: a logged-in client and its
    recorder; logged out after the test."""
    clients: list[IMClient] = []

    async def make(server: Server, user_id: str, token: str, *, platform_id: int = 1,
                   data_dir: Path | None = None, login: bool = True,
                   **config: Any) -> tuple[IMClient, Recorder]:
        recorder = Recorder()
        cfg = Config(platform_id=platform_id, api_addr=server.base_url,
                     data_dir=data_dir or tmp_path / f"sdk-{user_id}-{len(clients)}",
                     **{**FAST, **config})
        client = init_sdk(cfg, listener=recorder)
        clients.append(client)
        if login:
            await client.login(user_id, token)
        return client, recorder

    yield make
    for client in clients:
        await client.logout()


@contextmanager
def drop_pushes(server: Server, user_id: str,
                drop: Callable[[dict[str, Any]], bool]) -> Iterator[list[dict[str, Any]]]:
    """Make the real server skip pushes to `user_id` of the messages `drop` picks, by
    wrapping its own messages-stored listeners (the gateway's push). Yields the list of
    messages dropped."""
    signals = server.hub.signals
    originals = list(signals.on_messages_stored)
    assert originals, "no push listener on the server: is the gateway mounted?"
    dropped: list[dict[str, Any]] = []

    def wrap(fn: Callable[..., None]) -> Callable[..., None]:
        def filtered(tenant_id: str, by_user: dict[str, list[dict[str, Any]]],
                     origin: Any = None) -> None:
            kept: dict[str, list[dict[str, Any]]] = {}
            for user, msgs in by_user.items():
                for m in msgs:
                    if user == user_id and drop(m):
                        dropped.append(m)
                    else:
                        kept.setdefault(user, []).append(m)
            if kept:
                fn(tenant_id, kept, origin)
        return filtered

    signals.on_messages_stored[:] = [wrap(fn) for fn in originals]
    try:
        yield dropped
    finally:
        signals.on_messages_stored[:] = originals


def text(i: int | str) -> dict[str, str]:
    return {"content": f"m{i}"}
