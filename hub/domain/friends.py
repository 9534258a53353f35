"""Friends, friend applications and the blacklist, with OpenIM's rules.

- A request replaces an earlier one between the same two users (re-apply after a refusal).
- Agreeing makes both users friends (one row each way); deleting removes the owner's row
  only, as OpenIM does: the other side still lists the owner until they delete too.
- A user on the target's blacklist cannot apply (1301); being friends is not needed for
  a blacklist entry, and blocking does not delete a friendship.
"""

from __future__ import annotations

from typing import Any, Literal

from sqlalchemy import bindparam, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError

from ..api.routing import Router
from ..bus import hook
from ..bus.bus import Drop
from ..clock import now_ms
from ..context import Ctx
from ..core import Hub
from ..db.fast import Statement, dialect_name
from ..db.models import Black, Friend, FriendRequest, User
from ..errors import AlreadyExists, BadArgument, Blocked, NotFound, NotFriends
from ..tx import Tx
from ._lookup import (
    both_exist,
    pair_of,
    public_user,
    require_users,
    user_exists,
    users_by_id,
)
from ._schema import ID, Name, Pagination, Req, Text, page, revalidate
from .notify import NT

router = Router()

BEFORE_ADD_FRIEND = hook("beforeAddFriend")
AFTER_ADD_FRIEND = hook("afterAddFriend")
BEFORE_AGREE = hook("beforeAddFriendAgree")
AFTER_AGREE = hook("afterAddFriendAgree")
AFTER_REFUSE = hook("afterAddFriendRefuse")
AFTER_DELETE = hook("afterDeleteFriend")
BEFORE_REMARK = hook("beforeSetFriendRemark")
AFTER_REMARK = hook("afterSetFriendRemark")
BEFORE_BLACK = hook("beforeAddBlack")
AFTER_BLACK = hook("afterAddBlack")
AFTER_UNBLACK = hook("afterRemoveBlack")


# a exists, b exists, the handle_result of a's request to b (None: none)
_REQUEST = Statement(select(
    user_exists("a"), user_exists("b"),
    select(FriendRequest.handle_result).where(
        FriendRequest.tenant_id == bindparam("t"), FriendRequest.from_user_id == bindparam("a"),
        FriendRequest.to_user_id == bindparam("b")).scalar_subquery()))


# The writes of a request and its answer, compiled once (hub/db/fast.py); the other
# relation routes still write through the ORM.
def _request_upsert(insert_: Any) -> Statement:
    stmt = insert_(FriendRequest).values(
        tenant_id=bindparam("t"), from_user_id=bindparam("a"), to_user_id=bindparam("b"),
        req_msg=bindparam("msg"), ex=bindparam("ex"), handle_result=0, handle_msg="",
        create_time=bindparam("now"), handle_time=0)
    # A request replaces an earlier one between the same two users.
    return Statement(stmt.on_conflict_do_update(
        index_elements=[FriendRequest.tenant_id, FriendRequest.from_user_id,
                        FriendRequest.to_user_id],
        set_={"req_msg": stmt.excluded.req_msg, "ex": stmt.excluded.ex, "handle_result": 0,
              "handle_msg": "", "create_time": stmt.excluded.create_time, "handle_time": 0}))


def _friends_insert(insert_: Any) -> Statement:
    return Statement(insert_(Friend).values(
        tenant_id=bindparam("t"), owner_user_id=bindparam("o"), friend_user_id=bindparam("f"),
        remark="", add_source=1, operator_user_id=bindparam("op"), ex="",
        create_time=bindparam("now")).on_conflict_do_nothing())


_REQUEST_UPSERT = {"postgresql": _request_upsert(pg_insert),
                   "sqlite": _request_upsert(sqlite_insert)}
_FRIENDS_INSERT = {"postgresql": _friends_insert(pg_insert),
                   "sqlite": _friends_insert(sqlite_insert)}


def _pending(a: str, b: str) -> Any:
    return ((FriendRequest.tenant_id == bindparam("t"))
            & (FriendRequest.from_user_id == bindparam(a))
            & (FriendRequest.to_user_id == bindparam(b)) & (FriendRequest.handle_result == 0))


# Answers a's pending request to b; no row back: it was not pending (any more).
_ANSWER = Statement(update(FriendRequest).where(_pending("a", "b")).values(
    handle_result=bindparam("r"), handle_msg=bindparam("msg"), handle_time=bindparam("now"))
    .returning(FriendRequest.handle_result))
# Agreeing to a's request also settles b's pending request to a.
_SETTLE_REVERSE = Statement(update(FriendRequest).where(_pending("b", "a")).values(
    handle_result=1, handle_time=bindparam("now")))


def _from_to(a: str, b: str) -> dict[str, str]:
    return {"fromUserID": a, "toUserID": b}


class AddFriendReq(Req):
    fromUserID: ID
    toUserID: ID
    reqMsg: Text = ""
    ex: Text = ""


@router.post("/friend/add_friend", AddFriendReq)
async def add_friend(hub: Hub, ctx: Ctx, req: AddFriendReq) -> None:
    """Ask toUserID to be friends (beforeAddFriend may veto)."""
    ctx.actor.check_self(req.fromUserID)
    if req.fromUserID == req.toUserID:
        raise BadArgument("cannot add yourself as a friend")
    t = ctx.tenant_id
    pair = await pair_of(hub.reads, t, req.fromUserID, req.toUserID)
    if pair.blocked:
        raise Blocked(f"{req.toUserID} has blocked {req.fromUserID}")
    if pair.friend:
        raise AlreadyExists(f"{req.toUserID} is already a friend")
    payload = req.model_dump()
    out = await hub.bus.before(BEFORE_ADD_FRIEND, t, ctx.operation_id, payload)
    assert not isinstance(out, Drop)
    final: AddFriendReq = req if out is payload else revalidate(AddFriendReq, out)

    async def write(tx: Tx) -> None:
        await _REQUEST_UPSERT[dialect_name(tx.db)].many(tx.db, [{
            "t": t, "a": final.fromUserID, "b": final.toUserID, "msg": final.reqMsg,
            "ex": final.ex, "now": now_ms()}])
        tx.after(AFTER_ADD_FRIEND, final.model_dump())
        await hub.notifier.send(tx, [final.fromUserID, final.toUserID], NT.FRIEND_APPLICATION,
                                {"fromToUserID": _from_to(final.fromUserID, final.toUserID),
                                 "reqMsg": final.reqMsg}, send_id=final.fromUserID)

    await hub.write(ctx, write, orm=False)


class FriendResponseReq(Req):
    fromUserID: ID
    toUserID: ID
    handleResult: Literal[1, -1]
    handleMsg: Text = ""


@router.post("/friend/add_friend_response", FriendResponseReq)
async def add_friend_response(hub: Hub, ctx: Ctx, req: FriendResponseReq) -> None:
    """toUserID agrees to (1) or refuses (-1) fromUserID's pending request."""
    ctx.actor.check_self(req.toUserID)
    t = ctx.tenant_id
    [(from_ok, to_ok, handle_result)] = await hub.reads.rows(_REQUEST, {
        "t": t, "a": req.fromUserID, "b": req.toUserID})
    both_exist(req.fromUserID, from_ok, req.toUserID, to_ok)
    if handle_result != 0:  # None: no request at all
        raise NotFound(f"no pending friend request from {req.fromUserID}")
    final = req
    if req.handleResult == 1:
        payload = req.model_dump()
        out = await hub.bus.before(BEFORE_AGREE, t, ctx.operation_id, payload)
        assert not isinstance(out, Drop)

    async def write(tx: Tx) -> None:
        now = now_ms()
        keys = {"t": t, "a": final.fromUserID, "b": final.toUserID, "now": now}
        if not await _ANSWER.rows(tx.db, {**keys, "r": final.handleResult,
                                          "msg": final.handleMsg}):
            raise NotFound(f"no pending friend request from {final.fromUserID}")
        pair = _from_to(final.fromUserID, final.toUserID)
        users = [final.fromUserID, final.toUserID]
        if final.handleResult == -1:
            tx.after(AFTER_REFUSE, final.model_dump())
            await hub.notifier.send(tx, users, NT.FRIEND_APPLICATION_REJECTED,
                                    {"fromToUserID": pair, "handleMsg": final.handleMsg},
                                    send_id=final.toUserID)
            return
        await _SETTLE_REVERSE.many(tx.db, [keys])
        # A row that is there already (one side never deleted the other) stays as it is.
        await _FRIENDS_INSERT[dialect_name(tx.db)].many(tx.db, [
            {"t": t, "o": owner, "f": other, "op": final.toUserID, "now": now}
            for owner, other in ((final.fromUserID, final.toUserID),
                                 (final.toUserID, final.fromUserID))])
        tx.after(AFTER_AGREE, final.model_dump())
        await hub.notifier.send(tx, users, NT.FRIEND_APPLICATION_APPROVED,
                                {"fromToUserID": pair, "handleMsg": final.handleMsg},
                                send_id=final.toUserID)
        await hub.notifier.send(tx, users, NT.FRIEND_ADDED,
                                {"fromToUserID": pair, "opUserID": final.toUserID},
                                send_id=final.toUserID)

    await hub.write(ctx, write, orm=False)


class FriendPairReq(Req):
    ownerUserID: ID
    friendUserID: ID


@router.post("/friend/delete_friend", FriendPairReq)
async def delete_friend(hub: Hub, ctx: Ctx, req: FriendPairReq) -> None:
    """Remove friendUserID from ownerUserID's friend list."""
    ctx.actor.check_self(req.ownerUserID)
    t = ctx.tenant_id

    async def write(tx: Tx) -> None:
        await require_users(tx.session, t, [req.ownerUserID, req.friendUserID])
        row = await tx.session.get(Friend, (t, req.ownerUserID, req.friendUserID))
        if row is None:
            raise NotFriends(f"{req.friendUserID} is not a friend of {req.ownerUserID}")
        await tx.session.delete(row)
        tx.after(AFTER_DELETE, req.model_dump())
        await hub.notifier.send(tx, [req.ownerUserID], NT.FRIEND_DELETED,
                                {"fromToUserID": _from_to(req.ownerUserID, req.friendUserID)},
                                send_id=req.ownerUserID)

    await hub.write(ctx, write)


class RemarkReq(Req):
    ownerUserID: ID
    friendUserID: ID
    remark: Name = ""


@router.post("/friend/set_friend_remark", RemarkReq)
async def set_friend_remark(hub: Hub, ctx: Ctx, req: RemarkReq) -> None:
    """Set the remark ownerUserID shows for friendUserID."""
    ctx.actor.check_self(req.ownerUserID)
    t = ctx.tenant_id
    if not (await pair_of(hub.reads, t, req.ownerUserID, req.friendUserID)).friend:
        raise NotFriends(f"{req.friendUserID} is not a friend of {req.ownerUserID}")
    payload = req.model_dump()
    out = await hub.bus.before(BEFORE_REMARK, t, ctx.operation_id, payload)
    assert not isinstance(out, Drop)
    final: RemarkReq = req if out is payload else revalidate(RemarkReq, out)

    async def write(tx: Tx) -> None:
        row = await tx.session.get(Friend, (t, final.ownerUserID, final.friendUserID))
        if row is None:
            raise NotFriends(f"{final.friendUserID} is not a friend of {final.ownerUserID}")
        row.remark = final.remark
        tx.after(AFTER_REMARK, final.model_dump())
        await hub.notifier.send(tx, [final.ownerUserID], NT.FRIEND_REMARK_SET,
                                {"fromToUserID": _from_to(final.ownerUserID,
                                                          final.friendUserID)},
                                send_id=final.ownerUserID)

    await hub.write(ctx, write)


class ListReq(Req):
    userID: ID
    pagination: Pagination = Pagination()


@router.post("/friend/get_friend_list", ListReq)
async def get_friend_list(hub: Hub, ctx: Ctx, req: ListReq) -> dict[str, Any]:
    """userID's friends, oldest first, with each friend's user info."""
    ctx.actor.check_self(req.userID)
    t = ctx.tenant_id
    async with hub.read() as s:
        await require_users(s, t, [req.userID])
        rows, total = await page(s, select(Friend).where(
            Friend.tenant_id == t, Friend.owner_user_id == req.userID
        ).order_by(Friend.create_time, Friend.friend_user_id), req.pagination)
        users = await users_by_id(s, t, [r.friend_user_id for r in rows])
    return {"total": total, "friendsInfo": [{
        "ownerUserID": r.owner_user_id, "remark": r.remark, "createTime": r.create_time,
        "addSource": r.add_source, "operatorUserID": r.operator_user_id, "ex": r.ex,
        "friendUser": public_user(users[r.friend_user_id]) if r.friend_user_id in users
        else {"userID": r.friend_user_id},
    } for r in rows]}


def _request_wire(r: FriendRequest, users: dict[str, User]) -> dict[str, Any]:
    f, to = users.get(r.from_user_id), users.get(r.to_user_id)
    return {
        "fromUserID": r.from_user_id, "fromNickname": f.nickname if f else "",
        "fromFaceURL": f.face_url if f else "",
        "toUserID": r.to_user_id, "toNickname": to.nickname if to else "",
        "toFaceURL": to.face_url if to else "",
        "handleResult": r.handle_result, "reqMsg": r.req_msg, "createTime": r.create_time,
        "handlerUserID": r.to_user_id if r.handle_result else "", "handleMsg": r.handle_msg,
        "handleTime": r.handle_time, "ex": r.ex,
    }


async def _apply_list(hub: Hub, ctx: Ctx, req: ListReq, *, received: bool) -> dict[str, Any]:
    ctx.actor.check_self(req.userID)
    t = ctx.tenant_id
    mine = FriendRequest.to_user_id if received else FriendRequest.from_user_id
    async with hub.read() as s:
        await require_users(s, t, [req.userID])
        rows, total = await page(s, select(FriendRequest).where(
            FriendRequest.tenant_id == t, mine == req.userID
        ).order_by(FriendRequest.create_time.desc()), req.pagination)
        users = await users_by_id(s, t, [u for r in rows for u in (r.from_user_id,
                                                                   r.to_user_id)])
    return {"total": total, "friendRequests": [_request_wire(r, users) for r in rows]}


@router.post("/friend/get_friend_apply_list", ListReq)
async def get_friend_apply_list(hub: Hub, ctx: Ctx, req: ListReq) -> dict[str, Any]:
    """Friend requests userID received, newest first."""
    return await _apply_list(hub, ctx, req, received=True)


@router.post("/friend/get_self_friend_apply_list", ListReq)
async def get_self_friend_apply_list(hub: Hub, ctx: Ctx, req: ListReq) -> dict[str, Any]:
    """Friend requests userID sent, newest first."""
    return await _apply_list(hub, ctx, req, received=False)


class BlackReq(Req):
    ownerUserID: ID
    blackUserID: ID
    ex: Text = ""


@router.post("/friend/add_black", BlackReq)
async def add_black(hub: Hub, ctx: Ctx, req: BlackReq) -> None:
    """Put blackUserID on ownerUserID's blacklist (beforeAddBlack may veto)."""
    ctx.actor.check_self(req.ownerUserID)
    if req.ownerUserID == req.blackUserID:
        raise BadArgument("cannot block yourself")
    t = ctx.tenant_id
    if (await pair_of(hub.reads, t, req.ownerUserID, req.blackUserID)).blocks:
        raise AlreadyExists(f"{req.blackUserID} is already blocked")
    payload = {"ownerUserID": req.ownerUserID, "blackUserID": req.blackUserID}
    out = await hub.bus.before(BEFORE_BLACK, t, ctx.operation_id, payload)
    assert not isinstance(out, Drop)

    async def write(tx: Tx) -> None:
        tx.session.add(Black(tenant_id=t, owner_user_id=req.ownerUserID,
                             block_user_id=req.blackUserID, operator_user_id=req.ownerUserID,
                             ex=req.ex, create_time=now_ms()))
        await tx.session.flush()
        tx.after(AFTER_BLACK, payload)
        await hub.notifier.send(tx, [req.ownerUserID], NT.BLACK_ADDED,
                                {"fromToUserID": _from_to(req.ownerUserID, req.blackUserID)},
                                send_id=req.ownerUserID)

    try:
        await hub.write(ctx, write)
    except IntegrityError:
        raise AlreadyExists(f"{req.blackUserID} is already blocked") from None


class UnblackReq(Req):
    ownerUserID: ID
    blackUserID: ID


@router.post("/friend/remove_black", UnblackReq)
async def remove_black(hub: Hub, ctx: Ctx, req: UnblackReq) -> None:
    """Take blackUserID off ownerUserID's blacklist."""
    ctx.actor.check_self(req.ownerUserID)
    t = ctx.tenant_id

    async def write(tx: Tx) -> None:
        row = await tx.session.get(Black, (t, req.ownerUserID, req.blackUserID))
        if row is None:
            raise NotFound(f"{req.blackUserID} is not on the blacklist")
        await tx.session.delete(row)
        tx.after(AFTER_UNBLACK, req.model_dump())
        await hub.notifier.send(tx, [req.ownerUserID], NT.BLACK_DELETED,
                                {"fromToUserID": _from_to(req.ownerUserID, req.blackUserID)},
                                send_id=req.ownerUserID)

    await hub.write(ctx, write)


@router.post("/friend/get_black_list", ListReq)
async def get_black_list(hub: Hub, ctx: Ctx, req: ListReq) -> dict[str, Any]:
    """userID's blacklist, oldest first."""
    ctx.actor.check_self(req.userID)
    t = ctx.tenant_id
    async with hub.read() as s:
        await require_users(s, t, [req.userID])
        rows, total = await page(s, select(Black).where(
            Black.tenant_id == t, Black.owner_user_id == req.userID
        ).order_by(Black.create_time, Black.block_user_id), req.pagination)
        users = await users_by_id(s, t, [r.block_user_id for r in rows])
    return {"total": total, "blacks": [{
        "ownerUserID": r.owner_user_id, "createTime": r.create_time,
        "operatorUserID": r.operator_user_id, "ex": r.ex,
        "blackUserInfo": public_user(users[r.block_user_id]) if r.block_user_id in users
        else {"userID": r.block_user_id},
    } for r in rows]}
