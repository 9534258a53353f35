"""Plugins the server tests load from config, as `tests.bus._plugins:Name`."""

from __future__ import annotations

import asyncio

from pydantic import Field

from hub.bus import AfterEvent, BeforeCall, Verdict
from hub.plugin import Plugin, PluginConfig


class DenyConfig(PluginConfig):
    errCode: int
    errMsg: str


class DenyAddFriend(Plugin):
    Config = DenyConfig
    hooks = frozenset({"beforeAddFriend"})

    async def before(self, call: BeforeCall) -> Verdict:
        assert isinstance(self.config, DenyConfig)
        return Verdict.deny(self.config.errCode, self.config.errMsg)


class HangConfig(PluginConfig):
    seconds: float = Field(default=30, gt=0)


class HangAddFriend(Plugin):
    Config = HangConfig
    hooks = frozenset({"beforeAddFriend"})

    async def before(self, call: BeforeCall) -> Verdict:
        assert isinstance(self.config, HangConfig)
        await asyncio.sleep(self.config.seconds)
        return Verdict.allow()


class RecordAfter(Plugin):
    """Keeps every after-event it is handed, for tests to look at."""

    def __init__(self, config: PluginConfig) -> None:
        super().__init__(config)
        self.events: list[AfterEvent] = []

    async def after(self, event: AfterEvent) -> None:
        self.events.append(event)
