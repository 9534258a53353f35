"""This node's live connections, by tenant and user, one per platform."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from types import MappingProxyType

from ..metrics import online_connections
from .connection import Connection

UserKey = tuple[str, str]  # (tenant_id, user_id)

_NONE: Mapping[int, Connection] = MappingProxyType({})


class Registry:
    def __init__(self) -> None:
        self._users: dict[UserKey, dict[int, Connection]] = {}
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[Connection]:
        for platforms in list(self._users.values()):
            yield from list(platforms.values())

    def add(self, conn: Connection) -> Connection | None:
        """Register `conn`; return the connection it displaces (same user and platform)."""
        platforms = self._users.setdefault((conn.tenant_id, conn.user_id), {})
        older = platforms.get(conn.platform_id)
        platforms[conn.platform_id] = conn
        if older is None:
            self._count += 1
            online_connections.inc()
        return older

    def remove(self, conn: Connection) -> bool:
        """Unregister `conn` if it is still the one registered for its platform."""
        key = (conn.tenant_id, conn.user_id)
        platforms = self._users.get(key)
        if platforms is None or platforms.get(conn.platform_id) is not conn:
            return False
        del platforms[conn.platform_id]
        if not platforms:
            del self._users[key]
        self._count -= 1
        online_connections.dec()
        return True

    def of_user(self, tenant_id: str, user_id: str) -> Mapping[int, Connection]:
        """The user's connections here, by platformID."""
        return self._users.get((tenant_id, user_id)) or _NONE

    def get(self, tenant_id: str, user_id: str, platform_id: int) -> Connection | None:
        return self.of_user(tenant_id, user_id).get(platform_id)

    def users(self) -> list[UserKey]:
        return list(self._users)
