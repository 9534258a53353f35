"""A plugin that allows everything and observes every after-event: the bus's own cost."""

from __future__ import annotations

from hub.bus import AfterEvent, BeforeCall, Verdict
from hub.plugin import Plugin


class AllowAll(Plugin):
    async def before(self, call: BeforeCall) -> Verdict:
        return Verdict.allow()

    async def after(self, event: AfterEvent) -> None:
        return None
