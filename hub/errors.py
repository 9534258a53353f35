"""The exception tree.

HubError
├── ApiError                  an answer to a client: errCode + errMsg, HTTP status
│   ├── BadArgument   1001    ├── TokenInvalid  1501
│   ├── NoPermission  1002    ├── TokenKicked   1502
│   ├── AlreadyExists 1003    ├── NotGroupMember 1201
│   ├── NotFound      1004    ├── Muted          1202
│   ├── Blocked       1301    ├── GroupDismissed 1203
│   ├── NotFriends    1302    ├── RateLimited    1005
│   ├── HookDenied    (the handler's own errCode, 5000 when it gave 0)
│   └── HookFailed    5001    a handler failed and its policy denies
└── ConfigError               bad configuration: names the key; exit status 2
"""

from __future__ import annotations


class HubError(Exception):
    """Root of every error imhub raises on purpose."""


class ConfigError(HubError):
    """A setting, flag or plugin configuration is wrong; the message names the key."""


class ApiError(HubError):
    code: int = 500
    status: int = 400
    default_msg: str = "internal error"

    def __init__(self, msg: str | None = None, *, detail: str = "") -> None:
        self.msg = msg or self.default_msg
        self.detail = detail
        super().__init__(self.msg)


class BadArgument(ApiError):
    code, status, default_msg = 1001, 400, "bad arguments"


class NoPermission(ApiError):
    code, status, default_msg = 1002, 403, "no permission"


class AlreadyExists(ApiError):
    code, status, default_msg = 1003, 409, "already exists"


class NotFound(ApiError):
    code, status, default_msg = 1004, 404, "not found"


class RateLimited(ApiError):
    code, status, default_msg = 1005, 429, "too many requests"


class NotGroupMember(ApiError):
    code, status, default_msg = 1201, 403, "not a group member"


class Muted(ApiError):
    code, status, default_msg = 1202, 403, "muted"


class GroupDismissed(ApiError):
    code, status, default_msg = 1203, 403, "group dismissed"


class Blocked(ApiError):
    code, status, default_msg = 1301, 403, "blocked by the peer"


class NotFriends(ApiError):
    code, status, default_msg = 1302, 403, "not friends"


class TokenInvalid(ApiError):
    code, status, default_msg = 1501, 401, "token invalid or expired"


class TokenKicked(ApiError):
    code, status, default_msg = 1502, 401, "token kicked"


class HookDenied(ApiError):
    """A before hook said no. Its errCode and errMsg reach the client as they are."""

    status = 403

    def __init__(self, code: int, msg: str, *, hook: str = "", handler: str = "") -> None:
        super().__init__(msg or "denied by hook", detail=f"{hook} denied by {handler}")
        self.code = code or 5000


class HookFailed(ApiError):
    """A before hook timed out, errored or answered garbage, and failedContinue is false."""

    code, status, default_msg = 5001, 503, "callback failed"
