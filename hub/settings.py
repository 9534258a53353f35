"""Typed settings: config/hub.yml, overridden by IMHUB_* environment variables.

A bad file or key is a ConfigError naming the key, never a traceback.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from .errors import ConfigError

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./data/imhub.db"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# The storage imhub runs on (CONTRACT 1): SQLite embedded, PostgreSQL for several nodes.
_DRIVERS = ("sqlite+aiosqlite", "postgresql+asyncpg")


class DatabaseSettings(_Section):
    url: str = DEFAULT_DATABASE_URL
    # PostgreSQL only: the schema to use (search_path); tests give each run its own.
    schema_name: str | None = Field(default=None, alias="schema")
    echo: bool = False
    pool_size: int = Field(default=10, ge=1)

    @field_validator("url")
    @classmethod
    def _supported(cls, url: str) -> str:
        # Refused here, as one line naming the key, rather than as the driver's import
        # error or SQLAlchemy's parse error when the engine is first built.
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        try:
            driver = make_url(url).drivername
        except ArgumentError:
            driver = ""
        if driver not in _DRIVERS:
            raise ValueError(f"{url!r} is not a database URL imhub can use (IMHUB_DATABASE_URL "
                             f"sets it too): sqlite+aiosqlite:///PATH or "
                             f"postgresql+asyncpg://USER@HOST/DB")
        return url


class ServerSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(default=10002, ge=0, le=65535)
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024)


class AuthSettings(_Section):
    token_ttl_seconds: int = Field(default=7 * 24 * 3600, ge=60)


class CommitSettings(_Section):
    """Group commit (hub/committer.py)."""

    max_batch: int = Field(default=256, ge=1, le=10_000)
    # Writer tasks on PostgreSQL; SQLite always has one.
    pg_writers: int = Field(default=3, ge=1, le=64)


class GatewaySettings(_Section):
    """The WebSocket gateway (hub/gateway/) and presence across nodes (hub/cluster.py)."""

    # Seconds without a byte from the client (a request, a ping or a pong) before the
    # server closes the connection.
    idle_timeout_seconds: float = Field(default=30.0, gt=0, le=86_400)
    # uvicorn's WebSocket implementation under `imhub serve`.
    ws: Literal["websockets-sansio", "wsproto", "websockets"] = "websockets-sansio"
    # permessage-deflate keeps two zlib streams per connection (tens of KB each), more
    # than everything else a connection holds; JSON frames are small, so it is off.
    per_message_deflate: bool = False
    # With Redis: a node that has not renewed its heartbeat for this long is dead, and
    # its connections no longer count as online anywhere.
    node_ttl_seconds: float = Field(default=15.0, ge=1, le=3600)


class PluginSpec(_Section):
    module: str
    priority: int = 100
    timeout: float = Field(default=2.0, gt=0)
    failed_continue: bool = Field(default=True, alias="failedContinue")
    config: dict[str, Any] = Field(default_factory=dict)


class DeliverySettings(_Section):
    """After-event delivery workers (hub/webhooks/delivery.py)."""

    # Run delivery workers in `imhub serve` (false: only `imhub worker` processes deliver).
    enabled: bool = True
    # Seconds an attempt may take, connect to last byte.
    timeout: float = Field(default=10.0, gt=0, le=300)
    # Requests in flight at once on this node, and per endpoint without maxConcurrency.
    max_in_flight: int = Field(default=512, ge=1, le=100_000, alias="maxInFlight")
    endpoint_concurrency: int = Field(default=64, ge=1, le=10_000,
                                      alias="endpointConcurrency")
    # How long a claimed delivery belongs to its worker; a dead worker's come back after it.
    lease_seconds: float = Field(default=60.0, ge=1, alias="leaseSeconds")
    # Fallback polling for due retries and other nodes' work, in seconds.
    poll_seconds: float = Field(default=1.0, gt=0, le=60, alias="pollSeconds")
    batch_size: int = Field(default=500, ge=1, le=10_000, alias="batchSize")

    @field_validator("lease_seconds")
    @classmethod
    def _lease_outlasts_attempts(cls, value: float, info: ValidationInfo) -> float:
        # An attempt starts only with its timeout and a margin left on the lease.
        timeout = info.data.get("timeout")
        if timeout is not None and value < 2 * timeout:
            raise ValueError(f"must be at least twice the timeout ({2 * timeout:g})")
        return value


class WebhookSettings(_Section):
    allow_networks: list[str] = Field(default_factory=list, alias="allowNetworks")
    config_dir: str | None = None
    delivery: DeliverySettings = DeliverySettings()

    @field_validator("allow_networks")
    @classmethod
    def _networks(cls, networks: list[str]) -> list[str]:
        import ipaddress

        for cidr in networks:
            try:
                ipaddress.ip_network(cidr, strict=False)
            except ValueError:
                raise ValueError(f"{cidr!r} is not a network (10.1.2.0/24, ::1/128)") from None
        return networks


class Settings(_Section):
    database: DatabaseSettings = DatabaseSettings()
    redis_url: str | None = None
    # Prefix of every Redis key and channel (tests use their own, then delete their keys).
    redis_prefix: str = Field(default="imhub:", min_length=1, max_length=64)
    server: ServerSettings = ServerSettings()
    auth: AuthSettings = AuthSettings()
    commit: CommitSettings = CommitSettings()
    gateway: GatewaySettings = GatewaySettings()
    plugins: list[PluginSpec] = Field(default_factory=list)
    webhooks: WebhookSettings = WebhookSettings()
    # A tenant setting in OpenIM terms; default off, as in OpenIM's config.
    friend_required_for_chat: bool = False

    @field_validator("redis_url")
    @classmethod
    def _redis(cls, url: str | None) -> str | None:
        if url is not None and not url.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError(f"{url!r} is not a Redis URL (IMHUB_REDIS_URL sets it too): "
                             f"redis://HOST:PORT/DB, rediss://... or unix://PATH")
        return url


def _format_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    key = ".".join(str(p) for p in err["loc"])
    msg = str(err["msg"]).removeprefix("Value error, ")  # pydantic's, for a validator's own
    return f"config key '{key}': {msg}"


def load_settings(path: str | os.PathLike[str] | None = None, **overrides: Any) -> Settings:
    """Read the YAML file (if any), then IMHUB_DATABASE_URL / IMHUB_REDIS_URL, then overrides."""
    data: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file '{p}' not found")
        try:
            loaded = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as exc:
            where = getattr(exc, "problem_mark", None)
            line = f" at line {where.line + 1}" if where is not None else ""
            raise ConfigError(f"config file '{p}' is not valid YAML{line}: "
                              f"{getattr(exc, 'problem', None) or exc}") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file '{p}' must hold a mapping at the top")
        data = loaded
    if url := os.environ.get("IMHUB_DATABASE_URL"):
        data.setdefault("database", {})
        data["database"] = {**(data["database"] or {}), "url": url}
    if redis_url := os.environ.get("IMHUB_REDIS_URL"):
        data["redis_url"] = redis_url
    for key, value in overrides.items():
        data[key] = value
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_error(exc)) from None
