"""Refuse a user's actions of one kind above a rate: a token bucket per (tenant, hook, user).

A bucket holds up to `burst` tokens and gains `rate` tokens a second; each action takes
one, and an action that finds the bucket empty is denied (1005 by default). The acting user
is the payload's first non-empty field among `_ACTOR_FIELDS`; an action without one (an
admin registering users) is not limited.

Buckets live in this process: with several nodes each node limits on its own.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from typing import Any

from pydantic import Field, field_validator, model_validator

from hub.bus import HOOKS, BeforeCall, Hook, Verdict
from hub.errors import RateLimited
from hub.plugin import Plugin, PluginConfig

_ACTOR_FIELDS = ("sendID", "fromUserID", "ownerUserID", "userID", "inviterUserID", "opUserID")
_BEFORE_HOOKS = frozenset(name for name, h in HOOKS.items() if h.is_before)

_Key = tuple[str, str, str]


class RateLimitConfig(PluginConfig):
    rate: float = Field(gt=0, allow_inf_nan=False)
    burst: int | None = Field(default=None, ge=1)  # None: ceil(rate)
    hooks: list[str] | None = Field(default=None, min_length=1)  # None: every before hook
    errCode: int = Field(default=RateLimited.code, ge=1)
    errMsg: str = RateLimited.default_msg
    # A hard bound on memory; idle buckets go first, and long before this in practice.
    maxBuckets: int = Field(default=100_000, ge=1)

    @field_validator("hooks")
    @classmethod
    def _before_hooks_only(cls, names: list[str] | None) -> list[str] | None:
        for name in names or ():
            if name not in _BEFORE_HOOKS:
                raise ValueError(f"{name!r} is not a before hook")
        return names

    @model_validator(mode="after")
    def _default_burst(self) -> RateLimitConfig:
        if self.burst is None:
            self.burst = max(1, math.ceil(self.rate))
        return self


class _Bucket:
    __slots__ = ("stamp", "tokens")

    def __init__(self, tokens: float, stamp: float) -> None:
        self.tokens = tokens
        self.stamp = stamp


class RateLimit(Plugin):
    Config = RateLimitConfig

    def __init__(self, config: PluginConfig) -> None:
        if not isinstance(config, RateLimitConfig):
            raise TypeError("RateLimit takes a RateLimitConfig")
        super().__init__(config)
        self._rate = config.rate
        self._burst = float(config.burst or 1)
        self._max = config.maxBuckets
        self._hooks = frozenset(config.hooks) if config.hooks is not None else _BEFORE_HOOKS
        self._deny = Verdict.deny(config.errCode, config.errMsg)
        # A bucket untouched for this long is full again, the same as a new one: dropping
        # it loses nothing.
        self._idle = self._burst / self._rate
        # Least recently used first, so idle buckets are found at the front.
        self._buckets: OrderedDict[_Key, _Bucket] = OrderedDict()

    def wants(self, hook: Hook, tenant_id: str) -> bool:
        return hook.name in self._hooks

    def __len__(self) -> int:
        return len(self._buckets)

    async def before(self, call: BeforeCall) -> Verdict:
        user = _actor(call.payload)
        if user is None:
            return Verdict.allow()
        return Verdict.allow() if self.take((call.tenant_id, call.hook.name, user)) \
            else self._deny

    def take(self, key: _Key) -> bool:
        """Take one token from `key`'s bucket; False when it is empty."""
        now = time.monotonic()
        self._evict(now)
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(self._burst, now)
        else:
            self._buckets.move_to_end(key)
            bucket.tokens = min(self._burst, bucket.tokens + (now - bucket.stamp) * self._rate)
            bucket.stamp = now
        if bucket.tokens < 1:
            return False
        bucket.tokens -= 1
        return True

    def _evict(self, now: float) -> None:
        buckets = self._buckets
        while buckets:
            key, oldest = next(iter(buckets.items()))
            if now - oldest.stamp < self._idle and len(buckets) < self._max:
                return
            del buckets[key]


def _actor(payload: dict[str, Any]) -> str | None:
    for field in _ACTOR_FIELDS:
        value = payload.get(field)
        if isinstance(value, str) and value:
            return value
    return None
