"""Heartbeat: polls GetNewestSeq (1001) and feeds the server's max seqs to the syncer.

This is how a message whose push never arrived is still found. It runs per connection
and beats at once when a connection opens, so every reconnect starts with a full resync.
A beat that gets no answer in time is skipped, not taken for a dead connection: a busy
server answers requests in turn, while WebSocket pings (answered below the application)
are what tell a dead peer.
"""

from __future__ import annotations

import asyncio
import logging

from .channel import PushMsgAndMaxSeqCh, ServerMaxSeqs
from .errors import ConnectionLost, RequestTimeout, ServerError
from .models import NewestSeqs
from .protocol import ReqIdentifier
from .ws import Ws

log = logging.getLogger("imhub.sdk.heartbeat")


class Heartbeat:
    def __init__(self, ws: Ws, ch: PushMsgAndMaxSeqCh, interval: float) -> None:
        self.ws = ws
        self.ch = ch
        self.interval = interval
        self.beats = 0

    async def run(self) -> None:
        report = True
        while True:
            await self.beat(report=report)
            report = False
            await asyncio.sleep(self.interval)

    async def beat(self, *, report: bool = False,
                   done: asyncio.Future[None] | None = None) -> None:
        """One GetNewestSeq; its answer goes to the syncer (which resolves `done`)."""
        try:
            data = await self.ws.send_req_wait_resp(ReqIdentifier.GET_NEWEST_SEQ, {})
        except (ConnectionLost, RequestTimeout, ServerError) as exc:
            log.info("heartbeat: %r", exc)
            _fail(done, exc)
            return
        self.beats += 1
        seqs = NewestSeqs.from_wire(data or {})
        self.ch.put_nowait(ServerMaxSeqs(seqs.max_seqs, seqs.min_seqs, report=report,
                                         done=done))


def _fail(done: asyncio.Future[None] | None, exc: BaseException) -> None:
    if done is not None and not done.done():
        done.set_exception(exc)
