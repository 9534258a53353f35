"""Typed settings: config/hub.yml, overridden by IMHUB_* environment variables.

A bad file or key is a ConfigError naming the key, never a traceback.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .errors import ConfigError

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./data/imhub.db"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DatabaseSettings(_Section):
    url: str = DEFAULT_DATABASE_URL
    # PostgreSQL only: the schema to use (search_path); tests give each run its own.
    schema_name: str | None = Field(default=None, alias="schema")
    echo: bool = False
    pool_size: int = Field(default=10, ge=1)


class ServerSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(default=10002, ge=0, le=65535)
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024)


class AuthSettings(_Section):
    token_ttl_seconds: int = Field(default=7 * 24 * 3600, ge=60)


class CommitSettings(_Section):
    """Group commit (hub/committer.py)."""

    max_batch: int = Field(default=64, ge=1, le=10_000)
    # Writer tasks on PostgreSQL; SQLite always has one.
    pg_writers: int = Field(default=3, ge=1, le=64)


class PluginSpec(_Section):
    module: str
    priority: int = 100
    timeout: float = Field(default=2.0, gt=0)
    failed_continue: bool = Field(default=True, alias="failedContinue")
    config: dict[str, Any] = Field(default_factory=dict)


class WebhookSettings(_Section):
    allow_networks: list[str] = Field(default_factory=list, alias="allowNetworks")
    config_dir: str | None = None


class Settings(_Section):
    database: DatabaseSettings = DatabaseSettings()
    redis_url: str | None = None
    server: ServerSettings = ServerSettings()
    auth: AuthSettings = AuthSettings()
    commit: CommitSettings = CommitSettings()
    plugins: list[PluginSpec] = Field(default_factory=list)
    webhooks: WebhookSettings = WebhookSettings()
    # A tenant setting in OpenIM terms; default off, as in OpenIM's config.
    friend_required_for_chat: bool = False


def _format_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    key = ".".join(str(p) for p in err["loc"])
    return f"config key '{key}': {err['msg']}"


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
