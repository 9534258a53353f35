"""The SDK's configuration: OpenIM 2.0's InitSDK config, typed."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit


@dataclass(frozen=True, kw_only=True, slots=True)
class Config:
    """What `init_sdk` needs. `ws_addr` may be left empty: it is derived from `api_addr`
    (http -> ws, https -> wss, path `/ws`), as the server serves both on one port."""

    platform_id: int
    api_addr: str
    ws_addr: str = ""
    data_dir: str | Path = "."
    log_level: int | str = logging.WARNING
    # Seconds between GetNewestSeq polls. The server closes a connection after 30 s of
    # silence; WebSocket pings cover that too, so this interval is only about sync latency.
    heartbeat_interval: float = 25.0
    # WebSocket pings: how a dead peer is noticed (no pong within the same time).
    ping_interval: float = 10.0
    request_timeout: float = 10.0
    # How long send_message keeps waiting and re-sending (across reconnects).
    send_timeout: float = 60.0
    connect_timeout: float = 10.0
    # Seqs per pulled range; a pull request carries up to 5 ranges.
    pull_chunk: int = 100
    # Reconnect backoff: jittered exponential between these bounds, in seconds.
    reconnect_min: float = 0.2
    reconnect_max: float = 30.0

    def __post_init__(self) -> None:
        if not self.ws_addr:
            object.__setattr__(self, "ws_addr", ws_addr_for(self.api_addr))
        elif urlsplit(self.ws_addr).path in ("", "/"):
            object.__setattr__(self, "ws_addr", self.ws_addr.rstrip("/") + "/ws")
        if min(self.heartbeat_interval, self.ping_interval, self.request_timeout,
               self.send_timeout, self.connect_timeout) <= 0:
            raise ValueError("intervals and timeouts must be positive")
        if self.pull_chunk < 1:
            raise ValueError("pull_chunk must be at least 1")
        if not 0 < self.reconnect_min <= self.reconnect_max:
            raise ValueError("need 0 < reconnect_min <= reconnect_max")

    @classmethod
    def from_openim(cls, data: Mapping[str, Any], **overrides: Any) -> Config:
        """Build from an OpenIM-style dict: {platform or platformID, api_addr, ws_addr,
        data_dir, log_level}. OpenIM's numeric log levels (6 = debug ... 1 = fatal) map to
        logging's."""
        level = data.get("log_level", logging.WARNING)
        if isinstance(level, int) and level <= 6:
            level = {6: logging.DEBUG, 5: logging.DEBUG, 4: logging.INFO,
                     3: logging.WARNING, 2: logging.ERROR}.get(level, logging.CRITICAL)
        fields: dict[str, Any] = {
            "platform_id": int(data.get("platformID", data.get("platform", 0))),
            "api_addr": str(data["api_addr"]),
            "ws_addr": str(data.get("ws_addr", "")),
            "data_dir": data.get("data_dir", "."),
            "log_level": level,
        }
        return cls(**{**fields, **overrides})


def ws_addr_for(api_addr: str) -> str:
    """The gateway address of a server whose HTTP API is at `api_addr`."""
    parts = urlsplit(api_addr)
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme)
    if scheme is None or not parts.netloc:
        raise ValueError(f"api_addr must be an http(s) URL, not {api_addr!r}")
    return urlunsplit((scheme, parts.netloc, parts.path.rstrip("/") + "/ws", "", ""))
