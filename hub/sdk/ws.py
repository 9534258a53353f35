"""Ws: WsConn and WsRespAsyn joined.

`send_req_wait_resp` sends a request and waits for its own reply. `read_data` is the
reader: it dispatches every frame by kind: a reply goes to its waiter, a push (2001) to
the sync channel, a kick (2002) ends the session.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable
from typing import Any

from .channel import PushedMsgs, PushMsgAndMaxSeqCh
from .errors import ConnectionLost, RequestTimeout, ServerError
from .models import messages_from_wire
from .protocol import ReqIdentifier, decode_frame, encode_request
from .ws_conn import WsConn
from .ws_resp_asyn import WsRespAsyn

log = logging.getLogger("imhub.sdk.ws")


class Ws:
    def __init__(self, conn: WsConn, resp: WsRespAsyn, push_ch: PushMsgAndMaxSeqCh, *,
                 request_timeout: float = 10.0,
                 on_kicked: Callable[[], None] | None = None) -> None:
        self.conn = conn
        self.resp = resp
        self.push_ch = push_ch
        self.request_timeout = request_timeout
        self._on_kicked = on_kicked
        self.kicked = False
        # True while a reader runs: a request sent without one would wait for a reply
        # nobody reads, and no fail_all would ever end its wait.
        self.reading = False

    async def send_req_wait_resp(self, req_identifier: int, data: dict[str, Any], *,
                                 timeout: float | None = None,  # noqa: ASYNC109
                                 operation_id: str = "") -> Any:
        """Send one request and return its reply's `data`.

        Raises ServerError (errCode != 0), RequestTimeout, or ConnectionLost (the request
        may have reached the server: only idempotent requests may simply be re-sent).
        """
        if not self.reading:
            raise ConnectionLost("not connected")
        msg_incr, waiter = self.resp.get_ch()
        try:
            await self.conn.send(encode_request(req_identifier, msg_incr,
                                                operation_id or secrets.token_hex(8), data))
            async with asyncio.timeout(timeout or self.request_timeout):
                frame = await waiter
        except TimeoutError:
            raise RequestTimeout(f"no reply to {req_identifier} ({msg_incr})") from None
        finally:
            self.resp.forget(msg_incr)
            if waiter.done() and not waiter.cancelled():
                # Failed by the reader (fail_all) while the send itself raised: the send's
                # error is the one raised; this one is seen, not logged as never retrieved.
                waiter.exception()
        if frame.err_code:
            raise ServerError.of(frame.err_code, frame.err_msg)
        return frame.data

    async def read_data(self) -> None:
        """Read and dispatch frames until the connection closes; then fail every request
        still waiting, since their replies can no longer come."""
        self.reading = True
        try:
            while True:
                raw = await self.conn.recv()
                try:
                    self._dispatch(raw)
                except Exception:
                    # One bad frame must not take the connection down with it; a push
                    # lost this way is found again by the heartbeat.
                    log.exception("dropped a frame that could not be handled")
        except ConnectionLost as exc:
            self.reading = False
            self.resp.fail_all(exc)
        except BaseException:
            self.reading = False
            self.resp.fail_all(ConnectionLost("reader stopped"))
            raise

    def _dispatch(self, raw: str | bytes) -> None:
        frame = decode_frame(raw)
        if frame.req_identifier == ReqIdentifier.PUSH:
            data = frame.data if isinstance(frame.data, dict) else {}
            self.push_ch.put_nowait(PushedMsgs(messages_from_wire(data.get("msgs"))))
        elif frame.req_identifier == ReqIdentifier.KICK_ONLINE_MSG:
            self.kicked = True
            if self._on_kicked is not None:
                self._on_kicked()
        elif not self.resp.notify_resp(frame):
            log.debug("no waiter for %s %s", frame.req_identifier, frame.msg_incr)
