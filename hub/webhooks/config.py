"""Per-tenant webhook configuration: OpenIM's webhooks.yml keys, validated, stored, cached.

The keys mirror OpenIM's file so an operator can copy theirs::

    url: http://backend.example/callback
    beforeSendSingleMsg: {enable: true, timeout: 2, failedContinue: true, deniedTypes: [113]}
    afterSendSingleMsg: {enable: true, attentionIds: []}
    retrySchedule: [0, 5, 300, 1800, 7200, 18000, 36000, 36000]
    priority: 1000

Validation is strict (a number is not a string) and every error names its key. Keys that
OpenIM's file has but imhub does not implement are accepted and ignored, so a copied
file loads; any other key is refused, since a typo that silently disables a veto is
worse than an error.

A tenant's config is stored in `webhook_configs`. When a tenant has none, a file from the
config directory seeds it on first use: `<tenantID>.yml`, else `<tenant name>.yml`, else
`default.yml`. The config `url` is also the tenant's implicit delivery endpoint "config"
(hub/webhooks/endpoints.py), kept in step here; its secret signs the before-hook calls
too, so one URL has one key.

Configs are cached in the process. A write through this process replaces its entry at
once; entries are re-read in the background every `CACHE_REFRESH` seconds, which is how
a write on another node or a rotation of the endpoint's secret shows here.
"""

from __future__ import annotations

import asyncio
import difflib
import logging
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import orjson
import yaml
from pydantic import BaseModel, ConfigDict, Field, PlainValidator, PrivateAttr, ValidationError
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ..bus.catalogue import HOOKS
from ..clock import now_ms
from ..db.delivery import CONFIG_ENDPOINT_ID, WebhookEndpoint
from ..db.models import Tenant
from ..db.webhook_config import WebhookConfigRow
from ..errors import ConfigError
from ..settings import WebhookSettings
from .netguard import BlockedAddress, NetGuard

__all__ = [
    "CACHE_REFRESH",
    "DEFAULT_PRIORITY",
    "DEFAULT_RETRY_SCHEDULE",
    "OPENIM_ONLY_KEYS",
    "AfterHookConfig",
    "BeforeHookConfig",
    "InvalidConfig",
    "TenantWebhooks",
    "WebhookConfig",
    "WebhookConfigs",
    "parse_config",
]

log = logging.getLogger("imhub.webhooks")

DEFAULT_RETRY_SCHEDULE: tuple[int, ...] = (0, 5, 300, 1800, 7200, 18000, 36000, 36000)
# After the in-process plugins (whose default priority is 100), so a plugin's masking is
# what the backend sees, unless a tenant puts its webhook first.
DEFAULT_PRIORITY = 1000
# A before hook holds the client's request: a minute is the most any backend gets.
MAX_TIMEOUT = 60.0
# Seconds before a cached config is re-read (in the background): how long a change made
# on another node, or a rotation of the config url's secret, takes to show here.
CACHE_REFRESH = 5.0
TYPING = 113

# In OpenIM's webhooks.yml (v3.x) but not in imhub's catalogue: accepted, then ignored.
OPENIM_ONLY_KEYS: frozenset[str] = frozenset({
    "beforeUpdateUserInfoEx", "afterUpdateUserInfoEx", "beforeMsgModify", "afterMsgSaveDB",
    "beforeGroupOnlinePush", "beforeSetGroupInfoEx", "afterSetGroupInfoEx",
    "beforeImportFriends", "afterImportFriends",
    "beforeCreateSingleChatConversations", "afterCreateSingleChatConversations",
    "beforeCreateGroupChatConversations", "afterCreateGroupChatConversations",
})
_TOP_KEYS = ("url", "retrySchedule", "priority")
_TYPE_SPEC = re.compile(r"\s*(\d{1,9})\s*(?:-\s*(\d{1,9})\s*)?")
# Payload fields an after event's attentionIds are matched against.
_ATTENTION_FIELDS = ("sendID", "recvID", "groupID", "userID", "fromUserID", "toUserID",
                     "ownerUserID", "friendUserID", "blackUserID")


class InvalidConfig(ValueError):
    """A config value is wrong; `key` is its dotted path (`beforeAddFriend.timeout`)."""

    def __init__(self, key: str, msg: str) -> None:
        self.key = key
        self.msg = msg
        super().__init__(f"{key}: {msg}")


def _parse_type_spec(spec: object) -> tuple[int, int]:
    # OpenIM takes a content type (101) or an inclusive range ("200-500").
    if isinstance(spec, int) and not isinstance(spec, bool):
        if spec < 0:
            raise ValueError(f"content type {spec} is negative")
        return spec, spec
    if isinstance(spec, str) and (m := _TYPE_SPEC.fullmatch(spec)):
        lo = int(m.group(1))
        hi = int(m.group(2)) if m.group(2) is not None else lo
        if hi < lo:
            raise ValueError(f"range {spec!r} ends before it starts")
        return lo, hi
    raise ValueError(f"{spec!r} is not a content type (101) or a range (\"200-500\")")


def _type_spec(value: object) -> int | str:
    _parse_type_spec(value)
    assert isinstance(value, int | str)
    return value


TypeSpec = Annotated[int | str, PlainValidator(_type_spec)]
# Seconds; a week at most, so a typo cannot park an event for years.
Delay = Annotated[float, Field(ge=0, le=7 * 24 * 3600)]


class _HookConfig(BaseModel):
    """Keys shared by OpenIM's BeforeConfig and AfterConfig."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    enable: bool = False
    timeout: float = Field(default=5, gt=0, le=MAX_TIMEOUT)
    allowedTypes: list[TypeSpec] = Field(default_factory=list)
    deniedTypes: list[TypeSpec] = Field(default_factory=list)
    _allowed: tuple[tuple[int, int], ...] = PrivateAttr(default=())
    _denied: tuple[tuple[int, int], ...] = PrivateAttr(default=())

    def model_post_init(self, _context: Any) -> None:
        self._allowed = tuple(_parse_type_spec(s) for s in self.allowedTypes)
        self._denied = tuple(_parse_type_spec(s) for s in self.deniedTypes)

    def takes_type(self, content_type: object) -> bool:
        """Whether a message of `content_type` is hooked: never typing, then the filters."""
        if content_type == TYPING:
            return False
        if not isinstance(content_type, int):
            return True
        if self._allowed and not any(lo <= content_type <= hi for lo, hi in self._allowed):
            return False
        return not any(lo <= content_type <= hi for lo, hi in self._denied)

    def wire(self) -> dict[str, Any]:
        out = self.model_dump()
        if float(self.timeout).is_integer():
            out["timeout"] = int(self.timeout)
        return out


class BeforeHookConfig(_HookConfig):
    failedContinue: bool = True


class AfterHookConfig(_HookConfig):
    attentionIds: list[str] = Field(default_factory=list)


class _AnyHookConfig(BeforeHookConfig, AfterHookConfig):
    """For the OpenIM-only keys: checked for typos, then ignored."""


HookConfig = BeforeHookConfig | AfterHookConfig


class _Top(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)

    url: str = Field(default="", max_length=1024)
    retrySchedule: list[Delay] = Field(
        default_factory=lambda: [float(d) for d in DEFAULT_RETRY_SCHEDULE],
        min_length=1, max_length=50)
    priority: int = DEFAULT_PRIORITY


@dataclass(frozen=True, slots=True)
class WebhookConfig:
    """One tenant's validated webhook configuration."""

    url: str
    retry_schedule: tuple[float, ...]
    priority: int
    hooks: Mapping[str, HookConfig]
    ignored: tuple[str, ...] = ()

    def before(self, hook_name: str) -> BeforeHookConfig | None:
        """The settings of an enabled before hook that can be called (a URL is set)."""
        hc = self.hooks.get(hook_name)
        if isinstance(hc, BeforeHookConfig) and hc.enable and self.url:
            return hc
        return None

    def after(self, hook_name: str) -> AfterHookConfig | None:
        """The settings of an enabled after hook."""
        hc = self.hooks.get(hook_name)
        return hc if isinstance(hc, AfterHookConfig) and hc.enable else None

    def wants_after(self, hook_name: str, payload: Mapping[str, Any]) -> bool:
        """Whether an after event passes its hook's enable, attentionIds and type filters."""
        hc = self.after(hook_name)
        if hc is None:
            return False
        if HOOKS[hook_name].messages and not hc.takes_type(payload.get("contentType")):
            return False
        if hc.attentionIds:
            wanted = set(hc.attentionIds)
            return any(payload.get(f) in wanted for f in _ATTENTION_FIELDS)
        return True

    def wire(self) -> dict[str, Any]:
        """The config as get_config shows it (and as it is stored): defaults filled in."""
        out: dict[str, Any] = {
            "url": self.url,
            "priority": self.priority,
            "retrySchedule": [int(d) if float(d).is_integer() else d
                              for d in self.retry_schedule],
        }
        for name, hc in self.hooks.items():
            out[name] = hc.wire()
        return out


def _loc(key: str, loc: Iterable[int | str]) -> str:
    out = key
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def _entry_error(key: str, exc: ValidationError, model: type[_HookConfig]) -> InvalidConfig:
    err = exc.errors()[0]
    loc = [p for p in err["loc"] if not (isinstance(p, str) and p in ("int", "str"))]
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        allowed = ", ".join(model.model_fields)
        msg = f"unknown key; {key} takes {allowed}"
    return InvalidConfig(_loc(key, loc), msg)


def _parse_hook(key: str, value: object, model: type[_HookConfig]) -> _HookConfig:
    if not isinstance(value, dict):
        raise InvalidConfig(key, "must be a mapping, e.g. {enable: true, timeout: 5}")
    # OpenIM's own file leaves some values empty (`failedContinue:`): empty means default.
    data = {k: v for k, v in value.items() if v is not None}
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise _entry_error(key, exc, model) from None


def _unknown(key: str) -> InvalidConfig:
    if key == "callback":
        return InvalidConfig(key, "OpenIM 3.0-3.5 nested the hooks under 'callback:'; "
                                  "move url and the hooks to the top level")
    known = [*_TOP_KEYS, *HOOKS, *OPENIM_ONLY_KEYS]
    close = difflib.get_close_matches(key, known, n=1)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    return InvalidConfig(key, f"unknown key{hint}")


def parse_config(data: object, guard: NetGuard | None = None) -> WebhookConfig:
    """Validate a config object (from JSON or YAML); raise InvalidConfig naming the key.

    `guard` checks the URL's syntax and IP literals; resolving its host is the caller's
    business (set_config does it, seeding from files does not).
    """
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise InvalidConfig("config", "must be an object (a mapping of keys to values)")
    hooks: dict[str, HookConfig] = {}
    ignored: list[str] = []
    for key, value in data.items():
        if not isinstance(key, str):
            raise InvalidConfig(str(key), "keys must be strings")
        if key in _TOP_KEYS:
            continue
        if key in HOOKS:
            if value is None:
                continue
            model = BeforeHookConfig if HOOKS[key].is_before else AfterHookConfig
            hc = _parse_hook(key, value, model)
            assert isinstance(hc, BeforeHookConfig | AfterHookConfig)
            hooks[key] = hc
        elif key in OPENIM_ONLY_KEYS:
            if value is not None:
                _parse_hook(key, value, _AnyHookConfig)
            ignored.append(key)
        else:
            raise _unknown(key)
    top_data = {k: data[k] for k in _TOP_KEYS if data.get(k) is not None}
    try:
        top = _Top.model_validate(top_data)
    except ValidationError as exc:
        err = exc.errors()[0]
        first, *rest = err["loc"]
        raise InvalidConfig(_loc(str(first), rest),
                            err["msg"].removeprefix("Value error, ")) from None
    url = top.url.strip()
    if url:
        if guard is not None:
            try:
                guard.check_url(url)
            except (ValueError, BlockedAddress) as exc:
                raise InvalidConfig("url", str(exc)) from None
    else:
        enabled = [k for k, hc in hooks.items() if isinstance(hc, BeforeHookConfig)
                   and hc.enable]
        if enabled:
            raise InvalidConfig("url", f"required when a before hook is enabled ({enabled[0]})")
    return WebhookConfig(url, tuple(top.retrySchedule), top.priority, hooks, tuple(ignored))


@dataclass(frozen=True, slots=True)
class TenantWebhooks:
    """What a node knows of one tenant: its config (None: no webhooks) and the secrets
    that sign calls to its `url`."""

    config: WebhookConfig | None
    updated_at: int
    # The config url's secrets are those of its implicit endpoint ("config"), so before
    # hooks and after events to one URL verify with one key, and rotate together.
    secret: str | None = None
    previous_secret: str = ""
    previous_secret_until: int = 0
    loaded_at: float = 0.0

    def signing_secrets(self, at_ms: int) -> list[str]:
        """The secrets that sign now: the current one, and the previous during its grace."""
        if self.secret is None:
            return []
        if self.previous_secret and self.previous_secret_until > at_ms:
            return [self.secret, self.previous_secret]
        return [self.secret]

    def wire(self) -> dict[str, Any]:
        return {"config": self.config.wire() if self.config else None,
                "secret": self.secret, "updatedAt": self.updated_at}


def _read_seed_dir(settings: WebhookSettings, guard: NetGuard) -> dict[str, WebhookConfig]:
    if settings.config_dir is not None:
        directory = Path(settings.config_dir)
        if not directory.is_dir():
            raise ConfigError(f"config key 'webhooks.config_dir': '{directory}' is not a "
                              "directory")
    else:
        directory = Path("config/webhooks")
        if not directory.is_dir():
            return {}
    seeds: dict[str, WebhookConfig] = {}
    for path in sorted(directory.iterdir()):
        if path.suffix not in (".yml", ".yaml") or not path.is_file():
            continue
        try:
            data = yaml.safe_load(path.read_text())
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            raise ConfigError(f"webhook config file '{path}' cannot be read: {exc}") from None
        try:
            seeds[path.stem] = parse_config(data, guard)
        except InvalidConfig as exc:
            raise ConfigError(f"webhook config file '{path}': config key '{exc.key}': "
                              f"{exc.msg}") from None
        if seeds[path.stem].ignored:
            log.warning("webhook config file %s: ignoring OpenIM keys imhub does not "
                        "implement: %s", path, ", ".join(seeds[path.stem].ignored))
    return seeds


class WebhookConfigs:
    """Storage and cache of tenants' webhook configs; one per node (`hub.webhook_configs`).

    An entry older than `refresh_after` seconds is served once more while a background
    task re-reads it, so a request never waits on a refresh; only a tenant's first use
    reads the database in the request path.
    """

    def __init__(self, sessions: async_sessionmaker[AsyncSession], settings: WebhookSettings,
                 *, refresh_after: float = CACHE_REFRESH) -> None:
        self._sessions = sessions
        try:
            self.guard = NetGuard(allow_networks=settings.allow_networks)
        except ValueError as exc:
            raise ConfigError(f"config key 'webhooks.allowNetworks': {exc}") from None
        # Read now, so a bad file stops start-up like any other bad config.
        self._seeds = _read_seed_dir(settings, self.guard)
        self._refresh_after = refresh_after
        self._cache: dict[str, TenantWebhooks] = {}
        self._loading: dict[str, asyncio.Task[TenantWebhooks]] = {}

    def parse(self, data: object) -> WebhookConfig:
        return parse_config(data, self.guard)

    async def check_url(self, url: str) -> None:
        """Resolve the URL's host and refuse it if any address is not allowed."""
        try:
            await self.guard.check_url_resolving(url)
        except (ValueError, BlockedAddress) as exc:
            raise InvalidConfig("url", str(exc)) from None

    def cached(self, tenant_id: str) -> TenantWebhooks | None:
        """The cached entry, even if due for a re-read; None if never loaded."""
        return self._cache.get(tenant_id)

    async def get(self, tenant_id: str) -> TenantWebhooks:
        """The tenant's config; seeded from a file on first use if it has none."""
        entry = self.get_now(tenant_id)
        if entry is None:
            return await asyncio.shield(self._load_once(tenant_id))
        return entry

    def get_now(self, tenant_id: str) -> TenantWebhooks | None:
        """`get` without waiting: None when the tenant's config was never read. A re-read
        that is due starts in the background, as with `get`."""
        entry = self._cache.get(tenant_id)
        if entry is not None and time.monotonic() - entry.loaded_at >= self._refresh_after:
            self._load_once(tenant_id)
        return entry

    def forget(self, tenant_id: str) -> None:
        """Drop the cached entry (e.g. after the config endpoint's secret was rotated)."""
        self._cache.pop(tenant_id, None)

    async def seed(self) -> int:
        """At start-up: seed every tenant named by a file (ID or name) that has no config."""
        named = {k: v for k, v in self._seeds.items() if k != "default"}
        if not named:
            return 0
        async with self._sessions() as s:
            stored = set((await s.execute(select(WebhookConfigRow.tenant_id))).scalars())
            tenants = (await s.execute(select(Tenant.tenant_id, Tenant.name))).all()
        count = 0
        for tenant_id, name in tenants:
            if tenant_id not in stored and (tenant_id in named or name in named):
                await self.get(tenant_id)
                count += 1
        return count

    async def store(self, session: AsyncSession, tenant_id: str,
                    config: WebhookConfig) -> TenantWebhooks:
        """Replace the tenant's config inside the caller's transaction; call `remember`
        with the result once it has committed."""
        now = now_ms()
        text = orjson.dumps(config.wire()).decode()
        row = await session.get(WebhookConfigRow, tenant_id)
        if row is None:
            session.add(WebhookConfigRow(tenant_id=tenant_id, config=text, updated_at=now))
        else:
            row.config, row.updated_at = text, now
        await _sync_endpoint(session, tenant_id, config.url)
        await session.flush()
        endpoint = await session.get(WebhookEndpoint, (tenant_id, CONFIG_ENDPOINT_ID))
        return _entry(config, now, endpoint if config.url else None)

    def remember(self, tenant_id: str, entry: TenantWebhooks) -> None:
        self._cache[tenant_id] = entry

    async def close(self) -> None:
        """Stop loads in flight (background refreshes) before the engine goes away."""
        tasks = list(self._loading.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _load_once(self, tenant_id: str) -> asyncio.Task[TenantWebhooks]:
        task = self._loading.get(tenant_id)
        if task is None:
            # One load per tenant at a time, however many requests arrive together.
            task = asyncio.create_task(self._load(tenant_id))
            self._loading[tenant_id] = task
            task.add_done_callback(lambda t: self._loaded(tenant_id, t))
        return task

    def _loaded(self, tenant_id: str, task: asyncio.Task[TenantWebhooks]) -> None:
        self._loading.pop(tenant_id, None)
        if not task.cancelled() and (exc := task.exception()) is not None:
            # The request that awaited it got the error; a background refresh has none.
            log.warning("loading the webhook config of tenant %s failed: %r", tenant_id, exc)

    async def _load(self, tenant_id: str) -> TenantWebhooks:
        row, endpoint, seed = await self._read(tenant_id)
        if row is None and seed is not None:
            await self._insert_seed(tenant_id, seed)
            row, endpoint, _ = await self._read(tenant_id, seed=False)
        if row is None:
            entry = TenantWebhooks(None, 0, loaded_at=time.monotonic())
        else:
            config = _stored_config(tenant_id, row.config)
            entry = _entry(config, row.updated_at,
                           endpoint if config is not None and config.url else None)
        self._cache[tenant_id] = entry
        return entry

    async def _read(self, tenant_id: str, *, seed: bool = True) -> tuple[
            WebhookConfigRow | None, WebhookEndpoint | None, WebhookConfig | None]:
        """The stored row and the config endpoint; or, without a row, the seed to use."""
        async with self._sessions() as s:
            row = await s.get(WebhookConfigRow, tenant_id)
            if row is None:
                return None, None, await self._seed_for(s, tenant_id) if seed else None
            endpoint = await s.get(WebhookEndpoint, (tenant_id, CONFIG_ENDPOINT_ID))
        return row, endpoint, None

    async def _seed_for(self, s: AsyncSession, tenant_id: str) -> WebhookConfig | None:
        if not self._seeds:
            return None
        if tenant_id in self._seeds:
            return self._seeds[tenant_id]
        name = (await s.execute(select(Tenant.name).where(Tenant.tenant_id == tenant_id))
                ).scalar_one_or_none()
        if name is not None and name in self._seeds:
            return self._seeds[name]
        return self._seeds.get("default")

    async def _insert_seed(self, tenant_id: str, seed: WebhookConfig) -> None:
        try:
            async with self._sessions() as s, s.begin():
                s.add(WebhookConfigRow(tenant_id=tenant_id,
                                       config=orjson.dumps(seed.wire()).decode(),
                                       updated_at=now_ms()))
                await s.flush()
                await _sync_endpoint(s, tenant_id, seed.url)
            log.info("seeded the webhook config of tenant %s from a file", tenant_id)
        except IntegrityError:
            pass  # another node or request seeded or set it first: theirs stands


async def _sync_endpoint(session: AsyncSession, tenant_id: str, url: str) -> None:
    # Imported here: endpoints.py holds routes and so imports hub.core, which imports us.
    from .endpoints import sync_config_endpoint

    await sync_config_endpoint(session, tenant_id, url or None)


def _entry(config: WebhookConfig | None, updated_at: int,
           endpoint: WebhookEndpoint | None) -> TenantWebhooks:
    loaded = time.monotonic()
    if endpoint is None:
        return TenantWebhooks(config, updated_at, loaded_at=loaded)
    return TenantWebhooks(config, updated_at, endpoint.secret, endpoint.previous_secret,
                          endpoint.previous_secret_until, loaded)


def _stored_config(tenant_id: str, text: str) -> WebhookConfig | None:
    try:
        return parse_config(orjson.loads(text))
    except (InvalidConfig, orjson.JSONDecodeError) as exc:
        # Only possible if validation rules tightened since it was stored; calling a
        # backend with a config we cannot read would be worse than not calling it.
        log.error("tenant %s: stored webhook config is invalid (%s); webhooks are off "
                  "until /webhook/set_config replaces it", tenant_id, exc)
        return None
