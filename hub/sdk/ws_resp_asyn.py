"""WsRespAsyn, the request/response matcher.

WebSocket replies come back in any order, so every request gets a msgIncr and a waiter
(a future) in a map msgIncr -> waiter; each reply is handed to the waiter of its msgIncr.
"""

from __future__ import annotations

import asyncio
import itertools
import secrets

from .protocol import Frame


class WsRespAsyn:
    def __init__(self) -> None:
        self._waiters: dict[str, asyncio.Future[Frame]] = {}
        # A per-instance prefix keeps msgIncrs unique across SDK instances sharing a user,
        # which makes a stray reply impossible to mistake for ours.
        self._prefix = secrets.token_hex(4)
        self._counter = itertools.count(1)

    def get_ch(self) -> tuple[str, asyncio.Future[Frame]]:
        """A new msgIncr and the waiter its reply will be handed to."""
        msg_incr = f"{self._prefix}-{next(self._counter)}"
        waiter: asyncio.Future[Frame] = asyncio.get_running_loop().create_future()
        self._waiters[msg_incr] = waiter
        return msg_incr, waiter

    def notify_resp(self, frame: Frame) -> bool:
        """Hand a reply to its waiter; False when nobody waits for it (late or foreign)."""
        waiter = self._waiters.pop(frame.msg_incr, None)
        if waiter is None or waiter.done():
            return False
        waiter.set_result(frame)
        return True

    def forget(self, msg_incr: str) -> None:
        """The requester gave up (timeout, cancel): a late reply is dropped."""
        self._waiters.pop(msg_incr, None)

    def fail_all(self, exc: BaseException) -> None:
        """The connection is gone: no reply will come for any request in flight."""
        waiters, self._waiters = self._waiters, {}
        for waiter in waiters.values():
            if not waiter.done():
                waiter.set_exception(exc)

    def __len__(self) -> int:
        return len(self._waiters)
