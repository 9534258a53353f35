"""Groups with OpenIM v3's rules: the group itself (create, info, mute, dismiss) and the
group reads. Membership changes live in `group_members`; the rules below cover both.

- Role levels: owner 100, admin 60, member 20. The tenant admin token is OpenIM's app
  manager: it has owner rights in every group of its tenant and acts as the group's owner
  (opUserID is the owner's userID), since there is no admin user to name.
- needVerification: 0 an application needs an owner's or admin's approval, 1 anyone
  joins at once, 2 invite only (an application is refused, 1002).
- Invitations: in modes 0 and 1 any member's invitation enters the invitees at once
  (OpenIM's "apply needs approval, invite goes directly"). In mode 2 only the owner and
  admins add directly; a plain member's invitation becomes a pending application per
  invitee (joinSource 2, inviterUserID set) that an owner or admin answers.
- beforeMemberJoinGroup runs for every way a member enters after creation: an approved
  application, an invitation that adds directly, an open join. It does not run at
  creation, where beforeCreateGroup already sees every member. Its refusedUserIDs (and
  those of beforeInviteUserToGroup) are a partial veto; when nobody is left the request
  is denied (5000) and nothing is written.
- afterInviteUserToGroup means an invitation was made (also when it became pending
  applications); afterJoinGroup, one per member, means someone entered.
- Approving an application notifies 1505 to the applicant and the owner and admins, and
  1510 MemberEnter to all members, as OpenIM does.
- Blacklist, kept simple: a user token cannot create a group with, or invite, a user who
  has that token's user on their blacklist (1301). The tenant admin token is not checked.
- Kicking, muting and setting another member's info need a higher role than the target's:
  the owner (or the admin token) over admins and members, an admin over members. Only the
  owner sets roleLevel (to 20 or 60; ownership moves by transfer_group). The owner must
  transfer the group before quitting (1002).
- A dismissed group (status 2) keeps its member rows so that former members get 1203, not
  1201; it refuses every change and is left out of the joined and application lists.
  Reads of its info and member list still answer.
- Group info is readable by any user of the tenant (one must see a group to ask to join
  it); the member list needs membership. Unknown or foreign group IDs answer 1004.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import Field, StringConstraints
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from ..api.routing import Router
from ..bus import hook
from ..bus.bus import Drop
from ..clock import now_ms
from ..context import Ctx
from ..core import Hub
from ..db.models import Group, GroupMember, GroupRequest, User
from ..errors import (
    AlreadyExists,
    BadArgument,
    Blocked,
    GroupDismissed,
    NoPermission,
    NotFound,
    NotGroupMember,
)
from ..tx import Tx
from ._lookup import is_blocked, public_user, require_users, users_by_id
from ._schema import ID, URL, Pagination, Req, Text, page, revalidate
from .notify import NT

router = Router()

OWNER, ADMIN, MEMBER = 100, 60, 20
NORMAL, DISMISSED, MUTED = 0, 2, 3
APPLY, OPEN, INVITE_ONLY = 0, 1, 2
JOIN_BY_INVITATION, JOIN_BY_SEARCH = 2, 3

BEFORE_CREATE = hook("beforeCreateGroup")
AFTER_CREATE = hook("afterCreateGroup")
BEFORE_SET_INFO = hook("beforeSetGroupInfo")
AFTER_SET_INFO = hook("afterSetGroupInfo")
AFTER_DISMISS = hook("afterDismissGroup")
AFTER_MUTE_GROUP = hook("afterMuteGroup")

GroupName = Annotated[str, StringConstraints(min_length=1, max_length=255,
                                             strip_whitespace=True)]
OptID = Annotated[str, StringConstraints(max_length=64, strip_whitespace=True)]
Verification = Literal[0, 1, 2]
_INFO_MUTABLE = ("groupName", "notification", "introduction", "faceURL", "ex")


# --- shared by the group modules -------------------------------------------------------

@dataclass(slots=True)
class Gate:
    """A group that passed the checks of an action, and who acts in it with which role."""

    group: Group
    op: str
    role: int


async def require_group(s: AsyncSession, tenant_id: str, group_id: str, *,
                        alive: bool = True, lock: bool = False) -> Group:
    """The group (1004), not dismissed when `alive` (1203); `lock`: see `open_group`."""
    g = await s.get(Group, (tenant_id, group_id), with_for_update=lock or None)
    if g is None:
        raise NotFound(f"group {group_id} not found")
    if alive and g.status == DISMISSED:
        raise GroupDismissed(f"group {group_id} is dismissed")
    return g


async def open_group(s: AsyncSession, ctx: Ctx, group_id: str, *, need: int = MEMBER,
                     alive: bool = True, lock: bool = False) -> Gate:
    """The group, checked in the order 1004, 1203 (when `alive`), 1201, 1002 (below `need`).

    `lock` takes the group row for the transaction on PostgreSQL, so that concurrent
    changes of one group (a transfer and a kick, say) take turns.
    """
    t = ctx.tenant_id
    g = await require_group(s, t, group_id, alive=alive, lock=lock)
    if ctx.actor.user_id is None:
        return Gate(g, g.owner_user_id, OWNER)
    m = await s.get(GroupMember, (t, group_id, ctx.actor.user_id))
    if m is None:
        raise NotGroupMember(f"{ctx.actor.user_id} is not a member of group {group_id}")
    if m.role_level < need:
        raise NoPermission(f"{ctx.actor.user_id} needs a higher role in group {group_id}")
    return Gate(g, m.user_id, m.role_level)


async def require_member(s: AsyncSession, tenant_id: str, group_id: str, user_id: str
                         ) -> GroupMember:
    m = await s.get(GroupMember, (tenant_id, group_id, user_id))
    if m is None:
        raise NotGroupMember(f"{user_id} is not a member of group {group_id}")
    return m


def refuse_duplicates(field: str, ids: list[str]) -> None:
    if len(set(ids)) != len(ids):
        raise BadArgument(f"{field}: a user is listed twice")


async def refuse_blocked(s: AsyncSession, ctx: Ctx, actor: str, others: Iterable[str]) -> None:
    """1301 when one of `others` has the acting user on their blacklist (user tokens only)."""
    if ctx.actor.is_admin:
        return
    for uid in others:
        if await is_blocked(s, ctx.tenant_id, uid, actor):
            raise Blocked(f"{uid} has blocked {actor}")


async def member_ids(s: AsyncSession, tenant_id: str, group_id: str, *, min_role: int = 0
                     ) -> list[str]:
    rows = await s.execute(select(GroupMember.user_id).where(
        GroupMember.tenant_id == tenant_id, GroupMember.group_id == group_id,
        GroupMember.role_level >= min_role))
    return list(rows.scalars())


async def manager_ids(s: AsyncSession, tenant_id: str, group_id: str) -> list[str]:
    """The owner and the admins: who answers applications."""
    return await member_ids(s, tenant_id, group_id, min_role=ADMIN)


async def member_counts(s: AsyncSession, tenant_id: str, group_ids: Iterable[str]
                        ) -> dict[str, int]:
    ids = list(dict.fromkeys(group_ids))
    if not ids:
        return {}
    rows = await s.execute(select(GroupMember.group_id, func.count()).where(
        GroupMember.tenant_id == tenant_id, GroupMember.group_id.in_(ids)
    ).group_by(GroupMember.group_id))
    return {gid: int(n) for gid, n in rows.all()}


def group_wire(g: Group, member_count: int) -> dict[str, Any]:
    """OpenIM's GroupInfo."""
    return {
        "groupID": g.group_id, "groupName": g.group_name, "notification": g.notification,
        "introduction": g.introduction, "faceURL": g.face_url, "ownerUserID": g.owner_user_id,
        "createTime": g.create_time, "memberCount": member_count, "ex": g.ex,
        "status": g.status, "creatorUserID": g.creator_user_id, "groupType": g.group_type,
        "needVerification": g.need_verification, "lookMemberInfo": 0, "applyMemberFriend": 0,
        "notificationUpdateTime": g.notification_update_time,
        "notificationUserID": g.notification_user_id,
    }


def member_wire(m: GroupMember, user: User | None) -> dict[str, Any]:
    """OpenIM's GroupMemberFullInfo; an empty group nickname or face shows the user's."""
    return {
        "groupID": m.group_id, "userID": m.user_id, "roleLevel": m.role_level,
        "joinTime": m.join_time, "nickname": m.nickname or (user.nickname if user else ""),
        "faceURL": m.face_url or (user.face_url if user else ""), "appMangerLevel": 0,
        "joinSource": m.join_source, "operatorUserID": m.operator_user_id, "ex": m.ex,
        "muteEndTime": m.mute_end_time, "inviterUserID": m.inviter_user_id,
    }


async def members_wire(s: AsyncSession, tenant_id: str, members: list[GroupMember]
                       ) -> list[dict[str, Any]]:
    users = await users_by_id(s, tenant_id, [m.user_id for m in members])
    return [member_wire(m, users.get(m.user_id)) for m in members]


async def notify(hub: Hub, tx: Tx, to: Iterable[str], nt: NT, gate: Gate,
                 **concerned: Any) -> None:
    """Send group notification `nt` to `to`, with tips shaped roughly like OpenIM's.

    Recipients go in sorted order so that concurrent transactions take the seq rows of
    shared users in the same order (no deadlock on PostgreSQL).
    """
    s, t, g = tx.session, tx.ctx.tenant_id, gate.group
    counts = await member_counts(s, t, [g.group_id])
    op_member = await s.get(GroupMember, (t, g.group_id, gate.op))
    op_user = ((await members_wire(s, t, [op_member]))[0] if op_member is not None
               else {"userID": gate.op})
    tips = {"groupID": g.group_id, "opUserID": gate.op,
            "group": group_wire(g, counts.get(g.group_id, 0)), "opUser": op_user,
            "operationTime": now_ms(), **concerned}
    await hub.notifier.send(tx, sorted(set(to)), nt, tips, send_id=gate.op,
                            group_id=g.group_id)


def _info_payload(g: Group) -> dict[str, Any]:
    """The group-info fields of the hook catalogue (_GROUP_INFO)."""
    return {"groupID": g.group_id, "groupName": g.group_name,
            "notification": g.notification, "introduction": g.introduction,
            "faceURL": g.face_url, "ex": g.ex, "ownerUserID": g.owner_user_id,
            "needVerification": g.need_verification, "status": g.status}


# --- create ----------------------------------------------------------------------------

class GroupInfoIn(Req):
    groupID: OptID = ""  # empty: the server chooses one
    groupName: GroupName
    notification: Text = ""
    introduction: Text = ""
    faceURL: URL = ""
    ex: Text = ""
    needVerification: Verification = 0  # APPLY


class CreateGroupReq(Req):
    ownerUserID: ID
    memberUserIDs: list[ID] = Field(default_factory=list, max_length=1000)
    adminUserIDs: list[ID] = Field(default_factory=list, max_length=1000)
    groupInfo: GroupInfoIn


@router.post("/group/create_group", CreateGroupReq)
async def create_group(hub: Hub, ctx: Ctx, req: CreateGroupReq) -> dict[str, Any]:
    """Create a group owned by ownerUserID -> {groupInfo} (beforeCreateGroup may change it)."""
    ctx.actor.check_self(req.ownerUserID)
    t, owner = ctx.tenant_id, req.ownerUserID
    others = [*req.adminUserIDs, *req.memberUserIDs]
    refuse_duplicates("ownerUserID, adminUserIDs and memberUserIDs", [owner, *others])
    # 80 random bits: generated IDs never collide in practice, so a clash means the caller's.
    group_id = req.groupInfo.groupID or secrets.token_hex(10)
    async with hub.read() as s:
        await require_users(s, t, [owner, *others])
        if await s.get(Group, (t, group_id)) is not None:
            raise AlreadyExists(f"group {group_id} already exists")
        await refuse_blocked(s, ctx, owner, others)
    op = ctx.actor.op_user(owner)
    payload: dict[str, Any] = {
        **req.groupInfo.model_dump(), "groupID": group_id, "ownerUserID": owner,
        "status": NORMAL, "memberUserIDs": list(req.memberUserIDs),
        "adminUserIDs": list(req.adminUserIDs), "opUserID": op}
    out = await hub.bus.before(BEFORE_CREATE, t, ctx.operation_id, payload)
    assert not isinstance(out, Drop)
    info: GroupInfoIn = req.groupInfo
    if out is not payload:
        info = revalidate(GroupInfoIn, {**info.model_dump(),
                                        **{k: out[k] for k in _INFO_MUTABLE if k in out}})
    roles = [(owner, OWNER), *((u, ADMIN) for u in req.adminUserIDs),
             *((u, MEMBER) for u in req.memberUserIDs)]

    async def write(tx: Tx) -> dict[str, Any]:
        if await tx.session.get(Group, (t, group_id)) is not None:
            raise AlreadyExists(f"group {group_id} already exists")
        now = now_ms()
        g = Group(tenant_id=t, group_id=group_id, group_name=info.groupName,
                  notification=info.notification, introduction=info.introduction,
                  face_url=info.faceURL, ex=info.ex, owner_user_id=owner,
                  creator_user_id=op, status=NORMAL, need_verification=info.needVerification,
                  group_type=2, create_time=now,
                  notification_update_time=now if info.notification else 0,
                  notification_user_id=op if info.notification else "")
        members = [GroupMember(tenant_id=t, group_id=group_id, user_id=uid, role_level=role,
                               join_time=now, join_source=JOIN_BY_INVITATION,
                               inviter_user_id=op, operator_user_id=op)
                   for uid, role in roles]
        tx.session.add(g)
        tx.session.add_all(members)
        await tx.session.flush()
        tx.after(AFTER_CREATE, {**payload, **_info_payload(g)})
        wires = await members_wire(tx.session, t, members)
        await notify(hub, tx, [uid for uid, _ in roles], NT.GROUP_CREATED, Gate(g, op, OWNER),
                     memberList=wires, groupOwnerUser=wires[0])
        return group_wire(g, len(members))

    try:
        created = await hub.write(ctx, write)
    except IntegrityError:
        raise AlreadyExists(f"group {group_id} was created concurrently") from None
    return {"groupInfo": created}


# --- info ------------------------------------------------------------------------------

class GroupInfoPatch(Req):
    groupID: ID
    groupName: GroupName | None = None
    notification: Text | None = None
    introduction: Text | None = None
    faceURL: URL | None = None
    ex: Text | None = None
    needVerification: Verification | None = None


class SetGroupInfoReq(Req):
    groupInfo: GroupInfoPatch


@router.post("/group/set_group_info", SetGroupInfoReq)
async def set_group_info(hub: Hub, ctx: Ctx, req: SetGroupInfoReq) -> None:
    """Change a group's info (owner or admin); fields left out stay as they are."""
    patch = req.groupInfo.model_dump(exclude_none=True)
    group_id = patch.pop("groupID")
    if not patch:
        raise BadArgument("groupInfo: no field to change")
    t = ctx.tenant_id
    async with hub.read() as s:
        gate = await open_group(s, ctx, group_id, need=ADMIN)
    # Hooks see the whole resulting info; what they change is applied along with the patch.
    payload = {**_info_payload(gate.group), **patch, "opUserID": gate.op}
    out = await hub.bus.before(BEFORE_SET_INFO, t, ctx.operation_id, payload)
    assert not isinstance(out, Drop)
    if out is not payload:
        patch.update({k: out[k] for k in _INFO_MUTABLE if k in out and out[k] != payload[k]})
        patch = revalidate(GroupInfoPatch, {"groupID": group_id, **patch}
                           ).model_dump(exclude_none=True)
        patch.pop("groupID")

    async def write(tx: Tx) -> None:
        gate = await open_group(tx.session, ctx, group_id, need=ADMIN, lock=True)
        g = gate.group
        for key, column in (("groupName", "group_name"), ("notification", "notification"),
                            ("introduction", "introduction"), ("faceURL", "face_url"),
                            ("ex", "ex"), ("needVerification", "need_verification")):
            if key in patch:
                setattr(g, column, patch[key])
        if "notification" in patch:
            g.notification_update_time, g.notification_user_id = now_ms(), gate.op
        tx.after(AFTER_SET_INFO, {**_info_payload(g), "opUserID": gate.op})
        await notify(hub, tx, await member_ids(tx.session, t, group_id), NT.GROUP_INFO_SET,
                     gate)

    await hub.write(ctx, write)


class GroupIDReq(Req):
    groupID: ID


@router.post("/group/dismiss_group", GroupIDReq)
async def dismiss_group(hub: Hub, ctx: Ctx, req: GroupIDReq) -> None:
    """Dismiss a group (owner only): status 2, no further change, not listed as joined."""
    t = ctx.tenant_id

    async def write(tx: Tx) -> None:
        gate = await open_group(tx.session, ctx, req.groupID, need=OWNER, lock=True)
        gate.group.status = DISMISSED
        members = await member_ids(tx.session, t, req.groupID)
        tx.after(AFTER_DISMISS, {"groupID": req.groupID, "ownerUserID":
                                 gate.group.owner_user_id, "memberUserIDs": members,
                                 "opUserID": gate.op})
        await notify(hub, tx, members, NT.GROUP_DISMISSED, gate)

    await hub.write(ctx, write)


async def _set_group_muted(hub: Hub, ctx: Ctx, group_id: str, muted: bool) -> None:
    t = ctx.tenant_id

    async def write(tx: Tx) -> None:
        gate = await open_group(tx.session, ctx, group_id, need=ADMIN, lock=True)
        gate.group.status = MUTED if muted else NORMAL
        tx.after(AFTER_MUTE_GROUP, {"groupID": group_id, "muted": muted, "opUserID": gate.op})
        await notify(hub, tx, await member_ids(tx.session, t, group_id),
                     NT.GROUP_MUTED if muted else NT.GROUP_CANCEL_MUTED, gate)

    await hub.write(ctx, write)


@router.post("/group/mute_group", GroupIDReq)
async def mute_group(hub: Hub, ctx: Ctx, req: GroupIDReq) -> None:
    """Mute the whole group (owner or admin): status 3."""
    await _set_group_muted(hub, ctx, req.groupID, True)


@router.post("/group/cancel_mute_group", GroupIDReq)
async def cancel_mute_group(hub: Hub, ctx: Ctx, req: GroupIDReq) -> None:
    """Lift the group mute (owner or admin): status 0."""
    await _set_group_muted(hub, ctx, req.groupID, False)


# --- reads -----------------------------------------------------------------------------

class GroupIDsReq(Req):
    groupIDs: list[ID] = Field(min_length=1, max_length=1000)


@router.post("/group/get_groups_info", GroupIDsReq)
async def get_groups_info(hub: Hub, ctx: Ctx, req: GroupIDsReq) -> dict[str, Any]:
    """The groups' info -> {groupInfos}; any unknown or foreign groupID answers 1004, a
    group the user is not a member of 1201 (the contract's "member/admin"; OpenIM shows
    any group to anyone)."""
    t, user = ctx.tenant_id, ctx.actor.user_id
    ids = list(dict.fromkeys(req.groupIDs))
    async with hub.read() as s:
        found = {g.group_id: g for g in (await s.execute(select(Group).where(
            Group.tenant_id == t, Group.group_id.in_(ids)))).scalars()}
        for gid in ids:
            if gid not in found:
                raise NotFound(f"group {gid} not found")
        if user is not None:
            joined = set((await s.execute(select(GroupMember.group_id).where(
                GroupMember.tenant_id == t, GroupMember.user_id == user,
                GroupMember.group_id.in_(ids)))).scalars())
            for gid in ids:
                if gid not in joined:
                    raise NotGroupMember(f"{user} is not a member of group {gid}")
        counts = await member_counts(s, t, ids)
    return {"groupInfos": [group_wire(found[gid], counts.get(gid, 0)) for gid in ids]}


# OpenIM's member-list filter: 0 all, 1 owner, 2 admins, 3 members, 4 admins and members,
# 5 owner and admins.
_FILTERS: dict[int, tuple[int, ...]] = {
    0: (OWNER, ADMIN, MEMBER), 1: (OWNER,), 2: (ADMIN,), 3: (MEMBER,), 4: (ADMIN, MEMBER),
    5: (OWNER, ADMIN)}


class MemberListReq(Req):
    groupID: ID
    filter: Literal[0, 1, 2, 3, 4, 5] = 0
    pagination: Pagination = Pagination()


@router.post("/group/get_group_member_list", MemberListReq)
async def get_group_member_list(hub: Hub, ctx: Ctx, req: MemberListReq) -> dict[str, Any]:
    """A group's members, owner first, then admins, then by join time -> {total, members}."""
    t = ctx.tenant_id
    async with hub.read() as s:
        await open_group(s, ctx, req.groupID, alive=False)
        rows, total = await page(s, select(GroupMember).where(
            GroupMember.tenant_id == t, GroupMember.group_id == req.groupID,
            GroupMember.role_level.in_(_FILTERS[req.filter]),
        ).order_by(GroupMember.role_level.desc(), GroupMember.join_time,
                   GroupMember.user_id), req.pagination)
        return {"total": total, "members": await members_wire(s, t, rows)}


class UserListReq(Req):
    fromUserID: ID
    pagination: Pagination = Pagination()


@router.post("/group/get_joined_group_list", UserListReq)
async def get_joined_group_list(hub: Hub, ctx: Ctx, req: UserListReq) -> dict[str, Any]:
    """The groups fromUserID is a member of, dismissed ones left out -> {total, groups}."""
    ctx.actor.check_self(req.fromUserID)
    t = ctx.tenant_id
    async with hub.read() as s:
        await require_users(s, t, [req.fromUserID])
        rows, total = await page(s, select(Group).join(GroupMember, (
            GroupMember.tenant_id == Group.tenant_id) & (GroupMember.group_id == Group.group_id)
        ).where(Group.tenant_id == t, GroupMember.user_id == req.fromUserID,
                Group.status != DISMISSED
                ).order_by(GroupMember.join_time, Group.group_id), req.pagination)
        counts = await member_counts(s, t, [g.group_id for g in rows])
    return {"total": total, "groups": [group_wire(g, counts.get(g.group_id, 0)) for g in rows]}


@router.post("/group/get_recv_group_applicationList", UserListReq)
async def get_recv_group_application_list(hub: Hub, ctx: Ctx, req: UserListReq
                                          ) -> dict[str, Any]:
    """Applications to the groups fromUserID owns or administers, newest first
    -> {total, groupRequests}."""
    ctx.actor.check_self(req.fromUserID)
    t = ctx.tenant_id
    managed = select(GroupMember.group_id).where(
        GroupMember.tenant_id == t, GroupMember.user_id == req.fromUserID,
        GroupMember.role_level >= ADMIN)
    async with hub.read() as s:
        await require_users(s, t, [req.fromUserID])
        rows, total = await page(s, select(GroupRequest).join(Group, (
            Group.tenant_id == GroupRequest.tenant_id) & (Group.group_id == GroupRequest.group_id)
        ).where(GroupRequest.tenant_id == t, GroupRequest.group_id.in_(managed),
                Group.status != DISMISSED
                ).order_by(GroupRequest.req_time.desc(), GroupRequest.group_id,
                           GroupRequest.user_id), req.pagination)
        gids = [r.group_id for r in rows]
        groups = {g.group_id: g for g in (await s.execute(select(Group).where(
            Group.tenant_id == t, Group.group_id.in_(gids)))).scalars()}
        counts = await member_counts(s, t, gids)
        users = await users_by_id(s, t, [r.user_id for r in rows])
    return {"total": total, "groupRequests": [{
        "userInfo": public_user(users[r.user_id]) if r.user_id in users
        else {"userID": r.user_id},
        "groupInfo": group_wire(groups[r.group_id], counts.get(r.group_id, 0)),
        "handleResult": r.handle_result, "reqMsg": r.req_msg, "handleMsg": r.handled_msg,
        "reqTime": r.req_time, "handleUserID": r.handle_user_id,
        "handleTime": r.handled_time, "ex": r.ex, "joinSource": r.join_source,
        "inviterUserID": r.inviter_user_id,
    } for r in rows]}
