"""What an app hears from the SDK.

Subclass `Listener` and override what you need; each method may be a plain function or
a coroutine. Messages arrive in seq order per conversation, each once, after they are in
the local store. A listener that raises is logged and the others still run; a slow one
holds up the syncer, so hand heavy work to a task of your own.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable
from enum import StrEnum
from typing import Any

from .models import Message
from .msg_sync import SyncProgress

log = logging.getLogger("imhub.sdk.listener")


class ConnState(StrEnum):
    CONNECTING = "connecting"
    CONNECTED = "connected"
    # Lost; the SDK reconnects with backoff and resyncs.
    DISCONNECTED = "disconnected"
    # Final states: the SDK does not reconnect.
    KICKED = "kicked"
    TOKEN_INVALID = "token_invalid"
    CLOSED = "closed"


class Listener:
    def on_new_message(self, msg: Message) -> Awaitable[None] | None:
        """A chat message (sessionType 1 or 3) from someone else, or sent by this user on
        another device. Messages sent through this SDK come back from send_message."""

    def on_new_notification(self, msg: Message) -> Awaitable[None] | None:
        """A notification (sessionType 4) in this user's `n_USERID` conversation."""

    def on_kicked(self) -> Awaitable[None] | None:
        """The same user logged in on this platform elsewhere (or was logged out by the
        admin). The session is over; log in again with a new token."""

    def on_connection_state(self, state: ConnState, error: BaseException | None
                            ) -> Awaitable[None] | None:
        """The connection changed state; `error` says why when it was lost or refused."""

    def on_sync_progress(self, progress: SyncProgress) -> Awaitable[None] | None:
        """A full sync (login, reconnect, `sync()`) moved on."""


class Dispatcher:
    """Calls every registered listener in turn, isolating their failures."""

    def __init__(self) -> None:
        self.listeners: list[Listener] = []

    async def emit(self, name: str, *args: Any) -> None:
        for listener in list(self.listeners):
            fn: Callable[..., Awaitable[None] | None] = getattr(listener, name)
            try:
                out = fn(*args)
                if inspect.isawaitable(out):
                    await out
            except Exception:
                log.exception("listener %s.%s failed", type(listener).__name__, name)
