"""Users and their tokens: register, update, look up; log in and force out."""

from __future__ import annotations

from typing import Any

from pydantic import Field
from sqlalchemy.exc import IntegrityError

from ..api.routing import Router
from ..bus import hook
from ..bus.bus import Drop
from ..clock import now_ms
from ..context import Ctx
from ..core import Hub
from ..db.models import User
from ..errors import AlreadyExists, BadArgument, NotFound
from ..tx import Tx
from ._lookup import public_user, require_users, users_by_id
from ._schema import ID, URL, Name, Req, Text, revalidate

router = Router()

BEFORE_REGISTER = hook("beforeUserRegister")
AFTER_REGISTER = hook("afterUserRegister")
BEFORE_UPDATE = hook("beforeUpdateUserInfo")
AFTER_UPDATE = hook("afterUpdateUserInfo")

# OpenIM's platform IDs: 1 iOS, 2 Android, 3 Windows, 4 macOS, 5 Web, 6 mini-program web,
# 7 Linux, 8 Android pad, 9 iPad, 10 admin, 11-15 kept for newer clients.
PlatformID = Field(ge=1, le=15)


class TokenReq(Req):
    userID: ID
    platformID: int = PlatformID


@router.post("/auth/get_user_token", TokenReq, admin_only=True)
async def get_user_token(hub: Hub, ctx: Ctx, req: TokenReq) -> dict[str, Any]:
    """Issue a user token; the user's previous token on that platform is kicked (1502)."""
    async def write(tx: Tx) -> tuple[str, int]:
        await require_users(tx.session, ctx.tenant_id, [req.userID])
        token, ttl = await hub.tokens.issue(tx.session, ctx.tenant_id, req.userID,
                                            req.platformID)
        jti = hub.tokens.jti_of(token)
        tx.on_commit(lambda: hub.tokens.remember(ctx.tenant_id, req.userID, req.platformID, jti))
        tx.on_commit(lambda: hub.signals.token_replaced(ctx.tenant_id, req.userID,
                                                        req.platformID))
        return token, ttl

    token, ttl = await hub.write(ctx, write)
    return {"token": token, "expireTimeSeconds": ttl}


@router.post("/auth/force_logout", TokenReq, admin_only=True)
async def force_logout(hub: Hub, ctx: Ctx, req: TokenReq) -> None:
    """Revoke the user's token on that platform and close its connections."""
    async def write(tx: Tx) -> None:
        await require_users(tx.session, ctx.tenant_id, [req.userID])
        await hub.tokens.revoke(tx.session, ctx.tenant_id, req.userID, req.platformID)
        tx.on_commit(lambda: hub.tokens.remember(ctx.tenant_id, req.userID, req.platformID,
                                                 None))
        tx.on_commit(lambda: hub.signals.token_replaced(ctx.tenant_id, req.userID,
                                                        req.platformID))

    await hub.write(ctx, write)


class UserInfo(Req):
    userID: ID
    nickname: Name = ""
    faceURL: URL = ""
    ex: Text = ""


class RegisterReq(Req):
    users: list[UserInfo] = Field(min_length=1, max_length=1000)


@router.post("/user/user_register", RegisterReq, admin_only=True)
async def user_register(hub: Hub, ctx: Ctx, req: RegisterReq) -> None:
    """Register users; all or none (an existing userID answers 1003 and writes nothing)."""
    ids = [u.userID for u in req.users]
    if len(set(ids)) != len(ids):
        raise BadArgument("users: duplicate userID")
    async with hub.read() as s:
        if existing := await users_by_id(s, ctx.tenant_id, ids):
            raise AlreadyExists(f"user {next(iter(existing))} already registered")
    payload = {"users": [u.model_dump() for u in req.users]}
    out = await hub.bus.before(BEFORE_REGISTER, ctx.tenant_id, ctx.operation_id, payload)
    assert not isinstance(out, Drop)
    if out is not payload:
        req = revalidate(RegisterReq, out)
        if sorted(u.userID for u in req.users) != sorted(ids):
            raise BadArgument("a hook may change user fields, not which users register")
    now = now_ms()
    users: list[UserInfo] = req.users

    async def write(tx: Tx) -> None:
        for u in users:
            tx.session.add(User(tenant_id=ctx.tenant_id, user_id=u.userID,
                                nickname=u.nickname, face_url=u.faceURL, ex=u.ex,
                                create_time=now))
        await tx.session.flush()
        for u in users:
            tx.after(AFTER_REGISTER, {"users": [u.model_dump()]}, key=u.userID)

    try:
        await hub.write(ctx, write)
    except IntegrityError:
        raise AlreadyExists("a user was registered concurrently") from None


class UpdateInfo(Req):
    userID: ID
    nickname: Name | None = None
    faceURL: URL | None = None
    ex: Text | None = None


class UpdateUserReq(Req):
    userInfo: UpdateInfo


@router.post("/user/update_user_info", UpdateUserReq)
async def update_user_info(hub: Hub, ctx: Ctx, req: UpdateUserReq) -> None:
    """Change a user's nickname, faceURL or ex (fields left out stay as they are)."""
    info = req.userInfo
    ctx.actor.check_self(info.userID)
    async with hub.read() as s:
        await require_users(s, ctx.tenant_id, [info.userID])
    payload = info.model_dump(exclude_none=True)
    out = await hub.bus.before(BEFORE_UPDATE, ctx.tenant_id, ctx.operation_id, payload)
    assert not isinstance(out, Drop)
    if out is not payload:
        info = revalidate(UpdateInfo, {**out, "userID": info.userID})
    final: UpdateInfo = info

    async def write(tx: Tx) -> None:
        user = await tx.session.get(User, (ctx.tenant_id, final.userID))
        if user is None:
            raise NotFound(f"user {final.userID} not found")
        if final.nickname is not None:
            user.nickname = final.nickname
        if final.faceURL is not None:
            user.face_url = final.faceURL
        if final.ex is not None:
            user.ex = final.ex
        tx.after(AFTER_UPDATE, {"userID": user.user_id, "nickname": user.nickname,
                                "faceURL": user.face_url, "ex": user.ex})
        await hub.notifier.user_info_updated(tx, user)

    await hub.write(ctx, write)


class UserIDsReq(Req):
    userIDs: list[ID] = Field(min_length=1, max_length=1000)


@router.post("/user/get_users_info", UserIDsReq)
async def get_users_info(hub: Hub, ctx: Ctx, req: UserIDsReq) -> dict[str, Any]:
    """The users of this tenant among userIDs; unknown IDs are left out."""
    async with hub.read() as s:
        found = await users_by_id(s, ctx.tenant_id, req.userIDs)
    return {"usersInfo": [public_user(found[u]) for u in req.userIDs if u in found]}
