"""Tenants: the unit of isolation. Each has an admin token and a user-token secret."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from .auth import hash_admin_token, new_admin_token
from .clock import now_ms
from .db.models import Tenant
from .errors import AlreadyExists, BadArgument


@dataclass(frozen=True, slots=True)
class NewTenant:
    tenant_id: str
    name: str
    admin_token: str


async def create_tenant(session: AsyncSession, name: str) -> NewTenant:
    """Create a tenant; the admin token is shown once, only its hash is kept."""
    name = name.strip()
    if not name or len(name) > 128:
        raise BadArgument("tenant name must be 1 to 128 characters")
    if (await session.execute(select(Tenant).where(Tenant.name == name))).first():
        raise AlreadyExists(f"tenant '{name}' already exists")
    tenant_id = "t" + secrets.token_hex(6)
    token = new_admin_token()
    session.add(Tenant(tenant_id=tenant_id, name=name, admin_token_hash=hash_admin_token(token),
                       token_secret=secrets.token_hex(32), create_time=now_ms()))
    try:
        await session.flush()
    except IntegrityError:
        raise AlreadyExists(f"tenant '{name}' already exists") from None
    return NewTenant(tenant_id, name, token)


async def list_tenants(session: AsyncSession) -> list[Tenant]:
    return list((await session.execute(select(Tenant).order_by(Tenant.create_time))).scalars())
