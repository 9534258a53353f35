"""The SDK's exceptions.

SDKError
├── ServerError       the server answered errCode != 0 (HTTP or WebSocket): err_code, err_msg
│   └── TokenError    1501 token invalid or expired, 1502 kicked (logged in elsewhere)
├── ConnectionLost    the connection closed (or was never open) before the answer came
├── RequestTimeout    no answer in time on a live connection
└── NotLoggedIn       a call that needs a session, made before login or after logout
"""

from __future__ import annotations

TOKEN_INVALID = 1501
TOKEN_KICKED = 1502


class SDKError(Exception):
    """Root of every error the SDK raises on purpose."""


class ServerError(SDKError):
    """The server refused a request; `err_code` is the contract's errCode."""

    def __init__(self, err_code: int, err_msg: str = "", err_dlt: str = "") -> None:
        self.err_code = err_code
        self.err_msg = err_msg
        self.err_dlt = err_dlt
        super().__init__(f"errCode {err_code}: {err_msg}" if err_msg else f"errCode {err_code}")

    @staticmethod
    def of(err_code: int, err_msg: str = "", err_dlt: str = "") -> ServerError:
        """The most specific class for an errCode."""
        if err_code in (TOKEN_INVALID, TOKEN_KICKED):
            return TokenError(err_code, err_msg, err_dlt)
        return ServerError(err_code, err_msg, err_dlt)


class TokenError(ServerError):
    """The token is not (or no longer) accepted; retrying with it cannot help."""

    @property
    def kicked(self) -> bool:
        return self.err_code == TOKEN_KICKED


class ConnectionLost(SDKError):
    """The WebSocket is closed; a request in flight may or may not have reached the server."""


class RequestTimeout(SDKError, TimeoutError):
    """No response arrived in time."""


class NotLoggedIn(SDKError):
    """The call needs a logged-in session."""
