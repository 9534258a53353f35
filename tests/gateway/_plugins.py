"""Plugins the gateway tests load from config, as `tests.gateway._plugins:Name`."""

from __future__ import annotations

import asyncio

from pydantic import Field

from hub.bus import BeforeCall, Verdict
from hub.plugin import Plugin, PluginConfig


class SlowConfig(PluginConfig):
    seconds: float = Field(default=1, gt=0)


class SlowSend(Plugin):
    """Takes its time over every single-chat message, then allows it."""

    Config = SlowConfig
    hooks = frozenset({"beforeSendSingleMsg"})

    async def before(self, call: BeforeCall) -> Verdict:
        assert isinstance(self.config, SlowConfig)
        await asyncio.sleep(self.config.seconds)
        return Verdict.allow()
