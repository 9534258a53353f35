"""WsConn, the connection manager: opens the long connection to the gateway, sends over
it, reads from it, closes it. One WsConn serves a whole login; each `connect` replaces
the socket, so the parts above it never hold a stale one."""

from __future__ import annotations

import json
import logging
import secrets
from urllib.parse import urlencode

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from .errors import TOKEN_INVALID, ConnectionLost, ServerError

log = logging.getLogger("imhub.sdk.conn")

# Pull answers carry up to 100 messages per range and several ranges; the server's own
# limit is on what it receives, so the client takes big frames.
_MAX_FRAME = 64 * 1024 * 1024


class WsConn:
    def __init__(self, ws_addr: str, *, open_timeout: float = 10.0,
                 ping_interval: float | None = 20.0) -> None:
        self._addr = ws_addr
        self._open_timeout = open_timeout
        self._ping_interval = ping_interval
        self._ws: ClientConnection | None = None

    @property
    def connected(self) -> bool:
        return self._ws is not None

    async def connect(self, user_id: str, token: str, platform_id: int,
                      operation_id: str = "") -> None:
        """Open a new connection (closing any previous one).

        Raises ServerError (TokenError for 401) when the gateway refuses the upgrade,
        ConnectionLost when the server cannot be reached.
        """
        await self.close()
        query = urlencode({"sendID": user_id, "token": token, "platformID": platform_id,
                           "operationID": operation_id or secrets.token_hex(8)})
        try:
            self._ws = await connect(
                f"{self._addr}?{query}", open_timeout=self._open_timeout,
                ping_interval=self._ping_interval, ping_timeout=self._ping_interval,
                close_timeout=2, max_size=_MAX_FRAME, max_queue=None)
        except InvalidStatus as exc:
            raise _refusal(exc.response.status_code, exc.response.body) from None
        except (OSError, TimeoutError, InvalidHandshake) as exc:
            raise ConnectionLost(f"cannot connect to {self._addr}: {exc!r}") from exc

    async def send(self, text: str) -> None:
        ws = self._ws
        if ws is None:
            raise ConnectionLost("not connected")
        try:
            await ws.send(text)
        except ConnectionClosed as exc:
            raise ConnectionLost(str(exc)) from None

    async def recv(self) -> str | bytes:
        """The next frame; ConnectionLost once the connection is closed."""
        ws = self._ws
        if ws is None:
            raise ConnectionLost("not connected")
        try:
            return await ws.recv()
        except ConnectionClosed as exc:
            raise ConnectionLost(str(exc)) from None

    async def close(self) -> None:
        ws, self._ws = self._ws, None
        if ws is not None:
            await ws.close()

    def abort(self) -> None:
        """Drop the connection at once, without the closing handshake (a dead peer)."""
        ws = self._ws
        if ws is not None:
            ws.transport.abort()


def _refusal(status: int, body: bytes | bytearray | None) -> ServerError:
    code, msg = (TOKEN_INVALID if status == 401 else status), f"HTTP {status}"
    try:
        env = json.loads(body or b"")
        if isinstance(env, dict) and env.get("errCode"):
            code, msg = int(env["errCode"]), str(env.get("errMsg") or msg)
    except ValueError:
        pass
    return ServerError.of(code, msg)
