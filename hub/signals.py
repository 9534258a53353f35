"""In-process signals between parts that must not import each other.

The domain writes; the gateway (and, with Redis, the other nodes) listens. A
listener is a plain callable; one that raises is logged and the others still run.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger("imhub.signals")

TokenReplaced = Callable[[str, str, int], None]
# tenant_id, {userID: [message dict in wire form]}, sender's (userID, platformID, connID) or None.
# Users with the same messages share one list (one encoded frame): listeners only read.
MessagesStored = Callable[[str, dict[str, list[dict[str, Any]]], tuple[str, int, str] | None], None]


class Signals:
    def __init__(self) -> None:
        self.on_token_replaced: list[TokenReplaced] = []
        self.on_messages_stored: list[MessagesStored] = []

    def token_replaced(self, tenant_id: str, user_id: str, platform_id: int) -> None:
        for fn in self.on_token_replaced:
            try:
                fn(tenant_id, user_id, platform_id)
            except Exception:
                log.exception("token_replaced listener")

    def messages_stored(self, tenant_id: str, by_user: dict[str, list[dict[str, Any]]],
                        origin: tuple[str, int, str] | None = None) -> None:
        for fn in self.on_messages_stored:
            try:
                fn(tenant_id, by_user, origin)
            except Exception:
                log.exception("messages_stored listener")
