"""The handler interface shared by in-process plugins and webhooks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .catalogue import Hook
from .verdict import Verdict


@dataclass(slots=True)
class BeforeCall:
    """One before-hook invocation: what the handler sees."""

    hook: Hook
    tenant_id: str
    operation_id: str
    payload: dict[str, Any]


@dataclass(slots=True)
class AfterEvent:
    """A committed after-event, as stored in the outbox."""

    hook: Hook
    event_id: str
    tenant_id: str
    operation_id: str
    occurred_at: int
    key: str
    payload: dict[str, Any]

    def body(self) -> dict[str, Any]:
        """The wire body: envelope fields first, then the event's own fields."""
        return {
            "callbackCommand": self.hook.callback_command,
            "eventID": self.event_id,
            "tenantID": self.tenant_id,
            "operationID": self.operation_id,
            "occurredAt": self.occurred_at,
            **self.payload,
        }


class Handler:
    """Base class of everything the bus calls.

    `before` answers a verdict; `after` observes a committed event. A handler that
    raises, hangs past `timeout` or returns something else has failed, and
    `failed_continue` decides whether the action goes on.
    """

    name: str = "handler"
    priority: int = 100
    timeout: float = 2.0
    failed_continue: bool = True
    # True only for a handler known to end at once when cancelled (the bus's own webhook
    # handler): its before() then runs in the caller's task under asyncio.timeout. Any
    # other runs in a task of its own, so that one swallowing its cancellation cannot
    # hold a request past its timeout.
    prompt_cancel: bool = False

    def wants(self, hook: Hook, tenant_id: str) -> bool:
        """Whether this handler takes `hook` for `tenant_id`; asked once per call."""
        return True

    async def prepare(self, tenant_id: str) -> None:
        """Called before `wants` on each before chain, only if overridden: a handler whose
        settings differ per tenant (webhooks) loads them here, so the sync methods below
        can answer from memory."""

    def prepared(self, tenant_id: str) -> bool:
        """Whether the sync methods can answer for `tenant_id` without `prepare` first (a
        handler that overrides `prepare` says; a refresh that is due may start here)."""
        return True

    def priority_for(self, tenant_id: str) -> int:
        """Per-tenant priority; the bus re-sorts per call only if a handler overrides this."""
        return self.priority

    def timeout_for(self, hook: Hook, tenant_id: str) -> float:
        return self.timeout

    def failed_continue_for(self, hook: Hook, tenant_id: str) -> bool:
        return self.failed_continue

    async def before(self, call: BeforeCall) -> Verdict:
        return Verdict.allow()

    async def after(self, event: AfterEvent) -> None:
        return None

    async def start(self) -> None:
        """Called once when the server starts."""

    async def close(self) -> None:
        """Called once when the server stops."""
