"""Reads that many actions share: users that must exist, relations that must hold."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, exists, select
from sqlalchemy.ext.asyncio import AsyncSession

from ..db.fast import Reader, Statement
from ..db.models import Black, Friend, User
from ..errors import NotFound

# Checks run on every request of a route are one compiled statement each (hub/db/fast.py):
# through the ORM, each of them cost ~0.25 ms of SQLAlchemy on SQLite.
_p = bindparam


def user_exists(param: str) -> Any:
    """EXISTS of the user named by bind `param` in the tenant of bind `t`."""
    return exists().where(User.tenant_id == _p("t"), User.user_id == _p(param))


def _blacklists(owner: str, other: str) -> Any:
    return exists().where(Black.tenant_id == _p("t"), Black.owner_user_id == _p(owner),
                          Black.block_user_id == _p(other))


# a exists, b exists, b has a on their blacklist, a has b on theirs, a has b as a friend
_PAIR = Statement(select(
    user_exists("a"), user_exists("b"), _blacklists("b", "a"), _blacklists("a", "b"),
    exists().where(Friend.tenant_id == _p("t"), Friend.owner_user_id == _p("a"),
                   Friend.friend_user_id == _p("b"))))


@dataclass(frozen=True, slots=True)
class Pair:
    """How user a stands with user b."""

    blocked: bool  # b has a on their blacklist
    blocks: bool  # a has b on their blacklist
    friend: bool  # a has b as a friend (one-sided: a deletion removes one row)


async def pair_of(reads: Reader, tenant_id: str, a: str, b: str) -> Pair:
    """Both users, or NotFound naming the first missing one; then how a stands with b."""
    [(a_ok, b_ok, blocked, blocks, friend)] = await reads.rows(
        _PAIR, {"t": tenant_id, "a": a, "b": b})
    both_exist(a, a_ok, b, b_ok)
    return Pair(bool(blocked), bool(blocks), bool(friend))


def both_exist(a: str, a_ok: object, b: str, b_ok: object) -> None:
    """NotFound naming the first of a and b that a `user_exists` column found missing."""
    for user, ok in ((a, a_ok), (b, b_ok)):
        if not ok:
            raise NotFound(f"user {user} not found")


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


def public_user(u: User) -> dict[str, object]:
    return {"userID": u.user_id, "nickname": u.nickname, "faceURL": u.face_url, "ex": u.ex,
            "createTime": u.create_time}
