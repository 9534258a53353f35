"""Who is acting, for which tenant, under which operationID."""

from __future__ import annotations

from dataclasses import dataclass

from .client_json import NUL_REFUSED
from .errors import BadArgument, NoPermission

# Stored with every event an action writes (the events table's column).
MAX_OPERATION_ID = 128


def check_operation_id(op_id: str) -> str:
    """`op_id`, or BadArgument when it cannot be stored: too long, or holding NUL (which
    PostgreSQL's text cannot hold; see hub/client_json.py)."""
    if len(op_id) > MAX_OPERATION_ID:
        raise BadArgument(f"operationID: at most {MAX_OPERATION_ID} characters")
    if "\x00" in op_id:
        raise BadArgument(f"operationID: {NUL_REFUSED}")
    return op_id


@dataclass(frozen=True, slots=True)
class Actor:
    tenant_id: str
    user_id: str | None = None  # None: the tenant admin
    platform_id: int = 0

    @property
    def is_admin(self) -> bool:
        return self.user_id is None

    def check_self(self, user_id: str) -> None:
        """A user token acts as its own user only; the admin acts as anyone of its tenant."""
        if self.user_id is not None and self.user_id != user_id:
            raise NoPermission(f"a user token acts as {self.user_id} only")

    def op_user(self, fallback: str = "") -> str:
        """The operating user for events and notifications (admin acts as `fallback`)."""
        return self.user_id if self.user_id is not None else fallback


class Ctx:
    """An action's actor and operationID (never changed once made).

    A plain class rather than a frozen dataclass: one is made per request, and a frozen
    dataclass's `__init__` sets each field through `object.__setattr__`."""

    __slots__ = ("actor", "operation_id", "tenant_id")

    def __init__(self, actor: Actor, operation_id: str) -> None:
        self.actor = actor
        self.operation_id = operation_id
        self.tenant_id = actor.tenant_id

    def __repr__(self) -> str:
        return f"Ctx({self.actor!r}, {self.operation_id!r})"
