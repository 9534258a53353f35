"""Group membership: joining, applications, invitations, kicks, quitting, ownership,
member mutes and member info. The rules are written down in `groups`' docstring.

`/group/join_group` takes an optional `userID` beyond OpenIM's body: the tenant admin token
has no user of its own, so it names who joins; a user token may name only itself.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Literal

from pydantic import Field
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from ..api.routing import Router
from ..bus import hook
from ..bus.bus import Drop
from ..clock import now_ms
from ..context import Ctx
from ..core import Hub
from ..db.models import GroupMember, GroupRequest
from ..errors import AlreadyExists, BadArgument, HookDenied, NoPermission, NotFound
from ..tx import Tx
from ._lookup import public_user, require_users, users_by_id
from ._schema import ID, URL, Name, Req, Text, revalidate
from .groups import (
    ADMIN,
    INVITE_ONLY,
    JOIN_BY_INVITATION,
    JOIN_BY_SEARCH,
    MEMBER,
    OPEN,
    OWNER,
    Gate,
    OptID,
    manager_ids,
    member_ids,
    members_wire,
    notify,
    open_group,
    refuse_blocked,
    refuse_duplicates,
    require_group,
    require_member,
)
from .notify import NT

router = Router()

BEFORE_APPLY = hook("beforeApplyJoinGroup")
BEFORE_MEMBER_JOIN = hook("beforeMemberJoinGroup")
AFTER_JOIN = hook("afterJoinGroup")
AFTER_RESPONSE = hook("afterGroupApplicationResponse")
BEFORE_INVITE = hook("beforeInviteUserToGroup")
AFTER_INVITE = hook("afterInviteUserToGroup")
AFTER_KICK = hook("afterKickGroupMember")
AFTER_QUIT = hook("afterQuitGroup")
AFTER_TRANSFER = hook("afterTransferGroupOwner")
BEFORE_SET_MEMBER = hook("beforeSetGroupMemberInfo")
AFTER_SET_MEMBER = hook("afterSetGroupMemberInfo")
AFTER_MUTE_MEMBER = hook("afterMuteGroupMember")

# OpenIM's mutedSeconds is a uint32.
_MAX_MUTE_SECONDS = 2**32 - 1


def _partial_veto(hook_name: str, user_ids: list[str], out: dict[str, Any]) -> list[str]:
    """The users a hook's refusedUserIDs left in; a deny (5000) when it refused them all."""
    refused = {u for u in out.get("refusedUserIDs") or () if isinstance(u, str)}
    allowed = [u for u in user_ids if u not in refused]
    if not allowed:
        raise HookDenied(5000, f"{hook_name} refused every user", hook=hook_name,
                         handler="refusedUserIDs")
    return allowed


async def _admit(hub: Hub, ctx: Ctx, group_id: str, user_ids: list[str], join_source: int,
                 inviter: str, op: str) -> list[str]:
    """beforeMemberJoinGroup, run for every way members enter: who may enter."""
    payload = {"groupID": group_id, "userIDs": list(user_ids), "joinSource": join_source,
               "inviterUserID": inviter, "opUserID": op}
    out = await hub.bus.before(BEFORE_MEMBER_JOIN, ctx.tenant_id, ctx.operation_id, payload)
    assert not isinstance(out, Drop)
    return _partial_veto(BEFORE_MEMBER_JOIN.name, user_ids, out)


async def _refuse_members(s: AsyncSession, tenant_id: str, group_id: str,
                          user_ids: list[str]) -> None:
    rows = await s.execute(select(GroupMember.user_id).where(
        GroupMember.tenant_id == tenant_id, GroupMember.group_id == group_id,
        GroupMember.user_id.in_(user_ids)))
    if (already := rows.scalars().first()) is not None:
        raise AlreadyExists(f"{already} is already a member of group {group_id}")


async def _enter(tx: Tx, gate: Gate, user_ids: list[str], join_source: int,
                 inviter: str) -> list[GroupMember]:
    """Add members, one afterJoinGroup each."""
    t, g, now = tx.ctx.tenant_id, gate.group, now_ms()
    rows = [GroupMember(tenant_id=t, group_id=g.group_id, user_id=uid, role_level=MEMBER,
                        join_time=now, join_source=join_source, inviter_user_id=inviter,
                        operator_user_id=gate.op) for uid in user_ids]
    tx.session.add_all(rows)
    await tx.session.flush()
    # Their pending applications to this group are settled by their entering (an admin
    # invited them, say): none stays for an admin to accept into a group they are in.
    await tx.session.execute(update(GroupRequest).where(
        GroupRequest.tenant_id == t, GroupRequest.group_id == g.group_id,
        GroupRequest.user_id.in_(user_ids), GroupRequest.handle_result == 0).values(
        handle_result=1, handle_user_id=gate.op, handled_time=now))
    for uid in user_ids:
        tx.after(AFTER_JOIN, {"groupID": g.group_id, "userID": uid, "joinSource": join_source,
                              "inviterUserID": inviter, "opUserID": gate.op})
    return rows


async def _write_members(hub: Hub, ctx: Ctx, write: Callable[[Tx], Awaitable[None]]
                         ) -> None:
    try:
        await hub.write(ctx, write)
    except IntegrityError:
        raise AlreadyExists("a member or application was added concurrently") from None


def _upsert_request(tx: Tx, row: GroupRequest | None, group_id: str, user_id: str,
                    req_msg: str, join_source: int, inviter: str, ex: str) -> None:
    """A new application replaces an earlier one (re-applying after a refusal)."""
    if row is None:
        tx.session.add(GroupRequest(tenant_id=tx.ctx.tenant_id, group_id=group_id,
                                    user_id=user_id, req_msg=req_msg, join_source=join_source,
                                    inviter_user_id=inviter, ex=ex, req_time=now_ms()))
        return
    row.req_msg, row.join_source, row.inviter_user_id, row.ex = (
        req_msg, join_source, inviter, ex)
    row.handle_result, row.handled_msg, row.handle_user_id = 0, "", ""
    row.req_time, row.handled_time = now_ms(), 0


async def _notify_application(hub: Hub, tx: Tx, gate: Gate, user_id: str, req_msg: str,
                              inviter: str) -> None:
    """1503 to the owner and admins, and to the applicant."""
    t = tx.ctx.tenant_id
    users = await users_by_id(tx.session, t, [user_id])
    applicant = public_user(users[user_id]) if user_id in users else {"userID": user_id}
    to = [*await manager_ids(tx.session, t, gate.group.group_id), user_id]
    await notify(hub, tx, to, NT.JOIN_GROUP_APPLICATION, gate, applicant=applicant,
                 reqMsg=req_msg, inviterUserID=inviter)


# --- join and applications -------------------------------------------------------------

class JoinGroupReq(Req):
    groupID: ID
    reqMessage: Text = ""
    joinSource: int = Field(default=JOIN_BY_SEARCH, ge=0, le=255)
    inviterUserID: OptID = ""
    ex: Text = ""
    userID: OptID = ""


@router.post("/group/join_group", JoinGroupReq)
async def join_group(hub: Hub, ctx: Ctx, req: JoinGroupReq) -> None:
    """Ask to join: mode 1 enters at once, mode 0 files an application, mode 2 refuses."""
    uid = req.userID or ctx.actor.user_id
    if not uid:
        raise BadArgument("userID: the tenant admin token must name who joins")
    ctx.actor.check_self(uid)
    t, gid = ctx.tenant_id, req.groupID
    async with hub.read() as s:
        await require_users(s, t, [uid, *([req.inviterUserID] if req.inviterUserID else [])])
        g = await require_group(s, t, gid)
        await _refuse_members(s, t, gid, [uid])
        if g.need_verification == INVITE_ONLY:
            raise NoPermission(f"group {gid} takes members by invitation only")
        mode = g.need_verification
    payload = {"groupID": gid, "userID": uid, "reqMessage": req.reqMessage,
               "joinSource": req.joinSource, "inviterUserID": req.inviterUserID, "ex": req.ex}
    out = await hub.bus.before(BEFORE_APPLY, t, ctx.operation_id, payload)
    assert not isinstance(out, Drop)
    if mode == OPEN:
        await _admit(hub, ctx, gid, [uid], req.joinSource, req.inviterUserID, uid)

    async def write(tx: Tx) -> None:
        g = await require_group(tx.session, t, gid, lock=True)
        if g.need_verification != mode:
            raise BadArgument(f"group {gid} changed its needVerification meanwhile; retry")
        await _refuse_members(tx.session, t, gid, [uid])
        gate = Gate(g, uid, MEMBER)
        if mode == OPEN:
            entered = await _enter(tx, gate, [uid], req.joinSource, req.inviterUserID)
            await notify(hub, tx, await member_ids(tx.session, t, gid), NT.MEMBER_ENTER, gate,
                         entrantUser=(await members_wire(tx.session, t, entered))[0])
            return
        row = await tx.session.get(GroupRequest, (t, gid, uid))
        _upsert_request(tx, row, gid, uid, req.reqMessage, req.joinSource, req.inviterUserID,
                        req.ex)
        await _notify_application(hub, tx, gate, uid, req.reqMessage, req.inviterUserID)

    await _write_members(hub, ctx, write)


class ApplicationResponseReq(Req):
    groupID: ID
    fromUserID: ID
    handleResult: Literal[1, -1]
    handledMsg: Text = ""


@router.post("/group/group_application_response", ApplicationResponseReq)
async def group_application_response(hub: Hub, ctx: Ctx, req: ApplicationResponseReq) -> None:
    """The owner or an admin accepts (1) or refuses (-1) fromUserID's pending application."""
    t, gid, uid = ctx.tenant_id, req.groupID, req.fromUserID
    accept = req.handleResult == 1
    async with hub.read() as s:
        gate = await open_group(s, ctx, gid, need=ADMIN)
        row = await s.get(GroupRequest, (t, gid, uid))
        if row is None or row.handle_result != 0:
            raise NotFound(f"no pending application of {uid} to group {gid}")
        already = await s.get(GroupMember, (t, gid, uid)) is not None
        source, inviter = row.join_source, row.inviter_user_id
    if accept and not already:
        await _admit(hub, ctx, gid, [uid], source, inviter, gate.op)

    async def write(tx: Tx) -> None:
        gate = await open_group(tx.session, ctx, gid, need=ADMIN, lock=True)
        row = await tx.session.get(GroupRequest, (t, gid, uid))
        if row is None or row.handle_result != 0:
            raise NotFound(f"no pending application of {uid} to group {gid}")
        row.handle_result, row.handled_msg = req.handleResult, req.handledMsg
        row.handle_user_id, row.handled_time = gate.op, now_ms()
        entered: list[GroupMember] = []
        if accept and await tx.session.get(GroupMember, (t, gid, uid)) is None:
            entered = await _enter(tx, gate, [uid], row.join_source, row.inviter_user_id)
        tx.after(AFTER_RESPONSE, {"groupID": gid, "fromUserID": uid,
                                  "handleResult": req.handleResult,
                                  "handledMsg": req.handledMsg, "opUserID": gate.op})
        users = await users_by_id(tx.session, t, [uid])
        applicant = public_user(users[uid]) if uid in users else {"userID": uid}
        await notify(hub, tx, [*await manager_ids(tx.session, t, gid), uid],
                     NT.GROUP_APPLICATION_ACCEPTED if accept
                     else NT.GROUP_APPLICATION_REJECTED,
                     gate, applicant=applicant, handleMsg=req.handledMsg)
        if entered:
            await notify(hub, tx, await member_ids(tx.session, t, gid), NT.MEMBER_ENTER, gate,
                         entrantUser=(await members_wire(tx.session, t, entered))[0])

    await _write_members(hub, ctx, write)


# --- invite, kick, quit, transfer ------------------------------------------------------

class InviteReq(Req):
    groupID: ID
    invitedUserIDs: list[ID] = Field(min_length=1, max_length=1000)
    reason: Text = ""


def _invites_directly(gate: Gate) -> bool:
    return gate.group.need_verification != INVITE_ONLY or gate.role >= ADMIN


@router.post("/group/invite_user_to_group", InviteReq)
async def invite_user_to_group(hub: Hub, ctx: Ctx, req: InviteReq) -> None:
    """Invite users: they enter at once, or (a plain member in mode 2) become applications."""
    t, gid = ctx.tenant_id, req.groupID
    invited = list(req.invitedUserIDs)
    refuse_duplicates("invitedUserIDs", invited)
    async with hub.read() as s:
        gate = await open_group(s, ctx, gid)
        await require_users(s, t, invited)
        await _refuse_members(s, t, gid, invited)
        await refuse_blocked(s, ctx, gate.op, invited)
    direct = _invites_directly(gate)
    payload = {"groupID": gid, "invitedUserIDs": invited, "reason": req.reason,
               "inviterUserID": gate.op}
    out = await hub.bus.before(BEFORE_INVITE, t, ctx.operation_id, payload)
    assert not isinstance(out, Drop)
    invited = _partial_veto(BEFORE_INVITE.name, invited, out)
    if direct:
        invited = await _admit(hub, ctx, gid, invited, JOIN_BY_INVITATION, gate.op, gate.op)

    async def write(tx: Tx) -> None:
        gate = await open_group(tx.session, ctx, gid, lock=True)
        if direct and not _invites_directly(gate):
            raise NoPermission(f"{gate.op} may no longer add members to group {gid} directly")
        await _refuse_members(tx.session, t, gid, invited)
        tx.after(AFTER_INVITE, {"groupID": gid, "invitedUserIDs": invited,
                                "reason": req.reason, "inviterUserID": gate.op})
        if direct:
            entered = await _enter(tx, gate, invited, JOIN_BY_INVITATION, gate.op)
            await notify(hub, tx, await member_ids(tx.session, t, gid), NT.MEMBER_INVITED,
                         gate, invitedUserList=await members_wire(tx.session, t, entered))
            return
        for uid in invited:
            row = await tx.session.get(GroupRequest, (t, gid, uid))
            _upsert_request(tx, row, gid, uid, req.reason, JOIN_BY_INVITATION, gate.op, "")
            await _notify_application(hub, tx, gate, uid, req.reason, gate.op)

    await _write_members(hub, ctx, write)


class KickReq(Req):
    groupID: ID
    kickedUserIDs: list[ID] = Field(min_length=1, max_length=1000)
    reason: Text = ""


async def _kickable(s: AsyncSession, gate: Gate, kicked: list[str]) -> list[GroupMember]:
    t, gid = gate.group.tenant_id, gate.group.group_id
    members = [await require_member(s, t, gid, uid) for uid in kicked]
    for m in members:
        if m.role_level >= gate.role:
            raise NoPermission(f"{gate.op} may not kick {m.user_id} (role {m.role_level})")
    return members


@router.post("/group/kick_group", KickReq)
async def kick_group(hub: Hub, ctx: Ctx, req: KickReq) -> None:
    """Remove members (owner over admins and members, admin over members)."""
    t, gid = ctx.tenant_id, req.groupID
    kicked = list(req.kickedUserIDs)
    refuse_duplicates("kickedUserIDs", kicked)
    if ctx.actor.user_id in kicked:
        raise BadArgument("kickedUserIDs: use quit_group to leave a group")
    async with hub.read() as s:
        await _kickable(s, await open_group(s, ctx, gid, need=ADMIN), kicked)

    async def write(tx: Tx) -> None:
        gate = await open_group(tx.session, ctx, gid, need=ADMIN, lock=True)
        members = await _kickable(tx.session, gate, kicked)
        wires = await members_wire(tx.session, t, members)
        for m in members:
            await tx.session.delete(m)
        await tx.session.flush()
        tx.after(AFTER_KICK, {"groupID": gid, "kickedUserIDs": kicked, "reason": req.reason,
                              "opUserID": gate.op})
        await notify(hub, tx, [*await member_ids(tx.session, t, gid), *kicked],
                     NT.MEMBER_KICKED, gate, kickedUserList=wires, reason=req.reason)

    await hub.write(ctx, write)


class QuitReq(Req):
    groupID: ID
    userID: ID


@router.post("/group/quit_group", QuitReq)
async def quit_group(hub: Hub, ctx: Ctx, req: QuitReq) -> None:
    """Leave a group; the owner must transfer it first."""
    ctx.actor.check_self(req.userID)
    t, gid, uid = ctx.tenant_id, req.groupID, req.userID

    async def write(tx: Tx) -> None:
        g = await require_group(tx.session, t, gid, lock=True)
        m = await require_member(tx.session, t, gid, uid)
        if m.role_level == OWNER:
            raise NoPermission("the owner must transfer the group before quitting")
        wire = (await members_wire(tx.session, t, [m]))[0]
        await tx.session.delete(m)
        await tx.session.flush()
        tx.after(AFTER_QUIT, {"groupID": gid, "userID": uid})
        await notify(hub, tx, [*await member_ids(tx.session, t, gid), uid], NT.MEMBER_QUIT,
                     Gate(g, uid, MEMBER), quitUser=wire)

    await hub.write(ctx, write)


class TransferReq(Req):
    groupID: ID
    oldOwnerUserID: ID
    newOwnerUserID: ID


@router.post("/group/transfer_group", TransferReq)
async def transfer_group(hub: Hub, ctx: Ctx, req: TransferReq) -> None:
    """Make another member the owner; the old owner becomes a plain member."""
    ctx.actor.check_self(req.oldOwnerUserID)
    if req.oldOwnerUserID == req.newOwnerUserID:
        raise BadArgument("newOwnerUserID: already the owner")
    t, gid = ctx.tenant_id, req.groupID

    async def write(tx: Tx) -> None:
        g = await require_group(tx.session, t, gid, lock=True)
        old = await require_member(tx.session, t, gid, req.oldOwnerUserID)
        if old.role_level != OWNER:
            raise NoPermission(f"{req.oldOwnerUserID} is not the owner of group {gid}")
        new = await require_member(tx.session, t, gid, req.newOwnerUserID)
        old.role_level, new.role_level, g.owner_user_id = MEMBER, OWNER, new.user_id
        await tx.session.flush()
        tx.after(AFTER_TRANSFER, {"groupID": gid, "oldOwnerUserID": old.user_id,
                                  "newOwnerUserID": new.user_id, "opUserID": old.user_id})
        old_wire, new_wire = await members_wire(tx.session, t, [old, new])
        await notify(hub, tx, await member_ids(tx.session, t, gid),
                     NT.GROUP_OWNER_TRANSFERRED, Gate(g, old.user_id, MEMBER),
                     oldGroupOwner=old.user_id, oldGroupOwnerInfo=old_wire,
                     newGroupOwner=new_wire)

    await hub.write(ctx, write)


# --- member mutes and info -------------------------------------------------------------

class MuteMemberReq(Req):
    groupID: ID
    userID: ID
    mutedSeconds: int = Field(ge=0, le=_MAX_MUTE_SECONDS)


class CancelMuteMemberReq(Req):
    groupID: ID
    userID: ID
    mutedSeconds: int = 0  # ignored: OpenIM clients send the mute body to both routes


async def _outranked(s: AsyncSession, gate: Gate, user_id: str, action: str) -> GroupMember:
    """The target member, whom the acting member must outrank."""
    m = await require_member(s, gate.group.tenant_id, gate.group.group_id, user_id)
    if m.role_level >= gate.role:
        raise NoPermission(f"{gate.op} may not {action} {user_id} (role {m.role_level})")
    return m


async def _mute_member(hub: Hub, ctx: Ctx, group_id: str, user_id: str, seconds: int) -> None:
    t = ctx.tenant_id
    async with hub.read() as s:
        await _outranked(s, await open_group(s, ctx, group_id, need=ADMIN), user_id, "mute")

    async def write(tx: Tx) -> None:
        gate = await open_group(tx.session, ctx, group_id, need=ADMIN, lock=True)
        m = await _outranked(tx.session, gate, user_id, "mute")
        m.mute_end_time = now_ms() + seconds * 1000 if seconds else 0
        tx.after(AFTER_MUTE_MEMBER, {"groupID": group_id, "userID": user_id,
                                     "mutedSeconds": seconds, "muteEndTime": m.mute_end_time,
                                     "opUserID": gate.op})
        wire = (await members_wire(tx.session, t, [m]))[0]
        await notify(hub, tx, await member_ids(tx.session, t, group_id),
                     NT.GROUP_MEMBER_MUTED if seconds else NT.GROUP_MEMBER_CANCEL_MUTED,
                     gate, mutedUser=wire, mutedSeconds=seconds)

    await hub.write(ctx, write)


@router.post("/group/mute_group_member", MuteMemberReq)
async def mute_group_member(hub: Hub, ctx: Ctx, req: MuteMemberReq) -> None:
    """Mute a member for mutedSeconds (0 unmutes); the acting member must outrank them."""
    await _mute_member(hub, ctx, req.groupID, req.userID, req.mutedSeconds)


@router.post("/group/cancel_mute_group_member", CancelMuteMemberReq)
async def cancel_mute_group_member(hub: Hub, ctx: Ctx, req: CancelMuteMemberReq) -> None:
    """Lift a member's mute."""
    await _mute_member(hub, ctx, req.groupID, req.userID, 0)


class MemberInfoIn(Req):
    groupID: ID
    userID: ID
    nickname: Name | None = None
    faceURL: URL | None = None
    roleLevel: Literal[20, 60] | None = None
    ex: Text | None = None


class SetMemberInfoReq(Req):
    members: list[MemberInfoIn] = Field(min_length=1, max_length=1000)


_MEMBER_FIELDS = (("nickname", "nickname"), ("faceURL", "face_url"),
                  ("roleLevel", "role_level"), ("ex", "ex"))


def _check_member_change(gate: Gate, m: GroupMember, change: dict[str, Any]) -> None:
    """Self: own nickname, faceURL, ex. Others: a higher role; roleLevel: the owner only."""
    if "roleLevel" in change and gate.role != OWNER:
        raise NoPermission("only the owner sets roleLevel")
    if m.user_id == gate.op:
        if "roleLevel" in change:
            raise NoPermission("a member cannot set their own roleLevel")
        return
    if gate.role < ADMIN or m.role_level >= gate.role:
        raise NoPermission(f"{gate.op} may not change {m.user_id}'s member info")


def _member_payload(m: GroupMember, op: str) -> dict[str, Any]:
    return {"groupID": m.group_id, "userID": m.user_id, "nickname": m.nickname,
            "faceURL": m.face_url, "roleLevel": m.role_level, "ex": m.ex, "opUserID": op}


@router.post("/group/set_group_member_info", SetMemberInfoReq)
async def set_group_member_info(hub: Hub, ctx: Ctx, req: SetMemberInfoReq) -> None:
    """Change members' group nickname, faceURL, ex or roleLevel; all or nothing."""
    t = ctx.tenant_id
    keys = [(m.groupID, m.userID) for m in req.members]
    if len(set(keys)) != len(keys):
        raise BadArgument("members: a member is listed twice")
    seen: list[tuple[Gate, GroupMember, dict[str, Any]]] = []
    async with hub.read() as s:
        for item in req.members:
            change = item.model_dump(exclude_none=True)
            gid, uid = change.pop("groupID"), change.pop("userID")
            if not change:
                raise BadArgument(f"members: no field to change for {uid} in {gid}")
            gate = await open_group(s, ctx, gid)
            m = await require_member(s, t, gid, uid)
            _check_member_change(gate, m, change)
            seen.append((gate, m, change))
    changes: list[tuple[str, str, dict[str, Any]]] = []
    for gate, m, change in seen:
        # Hooks see the member as it will be; their changes apply along with the request.
        payload = {**_member_payload(m, gate.op), **change}
        out = await hub.bus.before(BEFORE_SET_MEMBER, t, ctx.operation_id, payload)
        assert not isinstance(out, Drop)
        if out is not payload:
            change.update({k: out[k] for k, _ in _MEMBER_FIELDS
                           if k in out and out[k] != payload[k]})
            change = revalidate(MemberInfoIn, {"groupID": m.group_id, "userID": m.user_id,
                                               **change}).model_dump(exclude_none=True)
            del change["groupID"], change["userID"]
            _check_member_change(gate, m, change)
        changes.append((m.group_id, m.user_id, change))

    async def write(tx: Tx) -> None:
        for gid, uid, change in changes:
            gate = await open_group(tx.session, ctx, gid, lock=True)
            m = await require_member(tx.session, t, gid, uid)
            _check_member_change(gate, m, change)
            for key, column in _MEMBER_FIELDS:
                if key in change:
                    setattr(m, column, change[key])
            m.operator_user_id = gate.op
            tx.after(AFTER_SET_MEMBER, _member_payload(m, gate.op))
            await notify(hub, tx, await member_ids(tx.session, t, gid),
                         NT.GROUP_MEMBER_INFO_SET, gate,
                         changedUser=(await members_wire(tx.session, t, [m]))[0])

    await hub.write(ctx, write)
