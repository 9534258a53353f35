"""Reads that many actions share: users that must exist, relations that must hold."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from ..db.models import Black, Friend, User
from ..errors import NotFound


async def users_by_id(session: AsyncSession, tenant_id: str, user_ids: Iterable[str]
                      ) -> dict[str, User]:
    ids = list(dict.fromkeys(user_ids))
    if not ids:
        return {}
    rows = (await session.execute(select(User).where(
        User.tenant_id == tenant_id, User.user_id.in_(ids)))).scalars()
    return {u.user_id: u for u in rows}


async def require_users(session: AsyncSession, tenant_id: str, user_ids: Iterable[str]
                        ) -> dict[str, User]:
    """The users, or NotFound naming the first missing one (another tenant's IDs are missing)."""
    ids = list(dict.fromkeys(user_ids))
    found = await users_by_id(session, tenant_id, ids)
    for uid in ids:
        if uid not in found:
            raise NotFound(f"user {uid} not found")
    return found


async def is_blocked(session: AsyncSession, tenant_id: str, owner: str, other: str) -> bool:
    """Whether `owner` has `other` on their blacklist."""
    return await session.get(Black, (tenant_id, owner, other)) is not None


async def is_friend(session: AsyncSession, tenant_id: str, owner: str, other: str) -> bool:
    return await session.get(Friend, (tenant_id, owner, other)) is not None


def public_user(u: User) -> dict[str, object]:
    return {"userID": u.user_id, "nickname": u.nickname, "faceURL": u.face_url, "ex": u.ex,
            "createTime": u.create_time}
