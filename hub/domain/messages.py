"""Chat messages (CONTRACT 2 /msg, 3): sync by seq, revoke, read receipts. Sending is
hub/domain/sending.py.

Sync: /msg/newest_seq lists every conversation of the user (hub/domain/conversations.py).
/msg/pull_msg_by_seq answers, per range, the newest `num` messages of begin..end in seq
order. A range of a conversation the user does not belong to (another pair's single
chat, a group they are not a member of, another user's notifications) answers nothing:
its conversationID is absent from `msgs`, exactly as for a conversation that does not
exist, so a client that still asks for a group it has left keeps syncing the rest.

Revoke: the sender, or the owner or an admin of the message's group (the tenant admin
token: anyone), revokes a chat message of a conversation `userID` belongs to. The
message keeps its seq and becomes status 4 with content type 2101 and the revoke tips
as content (so a later pull does not serve the revoked text), and a 2101 MsgRevoked tip
is stored as a new message of the same conversation, as OpenIM does; afterRevokeMsg or
afterGroupMsgRevoke goes with it. Revoking a revoked message is 1003.

Read: /msg/mark_msgs_as_read moves ownerUserID's read mark to the highest of `seqs`
(never back; seqs past the conversation's newest are 1001). For a single chat a 2200
HasReadReceipt notification goes to the peer and to the reader's own devices, with
afterSingleMsgRead; for a group, afterGroupMsgRead.
"""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from pydantic import Field, StringConstraints
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from ..api.routing import Router
from ..bus import hook
from ..clock import new_id, now_ms
from ..context import Ctx
from ..core import Hub
from ..db.models import ConversationSeq, Group, GroupMember, Message, User
from ..errors import (
    AlreadyExists,
    BadArgument,
    GroupDismissed,
    NoPermission,
    NotFound,
    NotGroupMember,
)
from ..tx import Tx
from ._schema import ID, Req, Seq, StoredSeq
from .conversations import (
    GROUP,
    SINGLE,
    Side,
    mark_read,
    owned_by_others,
    require_user,
    seqs_of,
    side_of,
)
from .groups import ADMIN, DISMISSED, OWNER
from .notify import NT
from .sending import SENT, STORED_TYPES
from .wire import message_to_wire

router = Router()

AFTER_REVOKE = hook("afterRevokeMsg")
AFTER_GROUP_REVOKE = hook("afterGroupMsgRevoke")
AFTER_SINGLE_READ = hook("afterSingleMsgRead")
AFTER_GROUP_READ = hook("afterGroupMsgRead")

REVOKED = 4

ConvID = Annotated[str, StringConstraints(min_length=1, max_length=160, strip_whitespace=True)]


class NewestSeqReq(Req):
    userID: ID


class SeqRange(Req):
    conversationID: ConvID
    begin: Seq
    end: Seq
    num: int = Field(default=100, ge=1, le=1000)


class PullReq(Req):
    userID: ID
    seqRanges: list[SeqRange] = Field(max_length=1000)  # required: CONTRACT 3


class RevokeReq(Req):
    userID: ID
    conversationID: ConvID
    seq: StoredSeq


class MarkReadReq(Req):
    ownerUserID: ID
    conversationID: ConvID
    seqs: list[StoredSeq] = Field(min_length=1, max_length=10_000)


# --- sync ------------------------------------------------------------------------------

@router.post("/msg/newest_seq", NewestSeqReq)
async def newest_seq(hub: Hub, ctx: Ctx, req: NewestSeqReq) -> dict[str, Any]:
    """{maxSeqs, minSeqs} of every conversation the user belongs to."""
    ctx.actor.check_self(req.userID)
    async with hub.read() as s:
        await require_user(ctx, s, req.userID)
        seqs = await seqs_of(s, ctx.tenant_id, req.userID)
    return {"maxSeqs": {c: mx for c, (mx, _) in seqs.items()},
            "minSeqs": {c: mn for c, (_, mn) in seqs.items()}}


async def _member_groups(s: AsyncSession, tenant_id: str, user_id: str,
                         group_ids: list[str]) -> set[str]:
    if not group_ids:
        return set()
    return set((await s.execute(select(GroupMember.group_id).where(
        GroupMember.tenant_id == tenant_id, GroupMember.user_id == user_id,
        GroupMember.group_id.in_(group_ids)))).scalars())


@router.post("/msg/pull_msg_by_seq", PullReq)
async def pull_msg_by_seq(hub: Hub, ctx: Ctx, req: PullReq) -> dict[str, Any]:
    """Messages of the user's conversations by seq range -> {msgs: {conversationID: [msg]}}."""
    ctx.actor.check_self(req.userID)
    t, user = ctx.tenant_id, req.userID
    for r in req.seqRanges:
        if r.begin > r.end:
            raise BadArgument(f"{r.conversationID}: begin {r.begin} is after end {r.end}")
    sides = {r.conversationID: side_of(r.conversationID, user) for r in req.seqRanges}
    msgs: dict[str, list[dict[str, Any]]] = {}
    async with hub.read() as s:
        await require_user(ctx, s, user)
        groups = await _member_groups(s, t, user, [
            side.group_id for side in sides.values() if side and side.kind == GROUP])
        for r in req.seqRanges:
            side = sides[r.conversationID]
            if side is None or (side.kind == GROUP and side.group_id not in groups) or (
                    side.kind == SINGLE and await owned_by_others(
                        s, t, r.conversationID, user, side.peer)):
                continue
            # The newest `num` stored in begin..end: an end past the newest seq (a client
            # asking generously, as OpenIM's SDK does) still gets the newest messages.
            rows = (await s.execute(select(Message).where(
                Message.tenant_id == t, Message.conversation_id == r.conversationID,
                Message.seq >= r.begin, Message.seq <= r.end).order_by(Message.seq.desc())
                .limit(r.num))).scalars().all()
            msgs.setdefault(r.conversationID, []).extend(
                message_to_wire(m) for m in reversed(rows))
    return {"msgs": msgs}


# --- revoke and read -------------------------------------------------------------------

async def _require_side(s: AsyncSession, ctx: Ctx, conversation_id: str, user_id: str, *,
                        alive: bool = False) -> tuple[Side, list[str]]:
    """The user's side of a conversation they belong to, and who is in it (1004, 1201;
    1203 for a dismissed group when `alive`)."""
    side = side_of(conversation_id, user_id)
    if side is None:
        raise NotFound(f"conversation {conversation_id} not found")
    await require_user(ctx, s, user_id)
    if side.kind == SINGLE:
        if await owned_by_others(s, ctx.tenant_id, conversation_id, user_id, side.peer):
            raise NotFound(f"conversation {conversation_id} not found")
        return side, list(dict.fromkeys((user_id, side.peer)))
    if side.kind != GROUP:
        return side, [user_id]
    group = await s.get(Group, (ctx.tenant_id, side.group_id))
    if group is None:
        raise NotFound(f"conversation {conversation_id} not found")
    members = list((await s.execute(select(GroupMember.user_id).where(
        GroupMember.tenant_id == ctx.tenant_id,
        GroupMember.group_id == side.group_id))).scalars())
    if user_id not in members:
        raise NotGroupMember(f"{user_id} is not a member of group {side.group_id}")
    if alive and group.status == DISMISSED:
        raise GroupDismissed(f"group {side.group_id} is dismissed")
    return side, members


def _tips_content(tips: dict[str, Any]) -> str:
    # Notification content as OpenIM has it: {"detail": "<tips as JSON>"}.
    return orjson.dumps({"detail": orjson.dumps(tips).decode()}).decode()


@router.post("/msg/revoke_msg", RevokeReq)
async def revoke_msg(hub: Hub, ctx: Ctx, req: RevokeReq) -> None:
    """Revoke a message (its sender, or a group's owner/admin)."""
    ctx.actor.check_self(req.userID)
    t, user, conv = ctx.tenant_id, req.userID, req.conversationID
    async with hub.read() as s:
        side, members = await _require_side(s, ctx, conv, user, alive=True)
        if side.kind not in (SINGLE, GROUP):
            raise BadArgument("only chat messages can be revoked")
        msg = await s.get(Message, (t, conv, req.seq))
        if msg is None:
            raise NotFound(f"message {req.seq} of {conv} not found")
        if msg.status == REVOKED:
            raise AlreadyExists(f"message {req.seq} of {conv} is already revoked")
        if msg.content_type not in STORED_TYPES:
            raise BadArgument("only chat messages can be revoked")
        role = 0
        if side.kind == GROUP:
            role = (await s.execute(select(GroupMember.role_level).where(
                GroupMember.tenant_id == t, GroupMember.group_id == side.group_id,
                GroupMember.user_id == user))).scalar_one()
        if msg.send_id != user and not ctx.actor.is_admin and role not in (OWNER, ADMIN):
            raise NoPermission("only the sender or a group owner or admin can revoke")
        revoker = await s.get(User, (t, user))
    now = now_ms()
    tips = {"revokerUserID": user, "revokerNickname": revoker.nickname if revoker else "",
            "clientMsgID": msg.client_msg_id, "revokeTime": now,
            "sourceMessageSendID": msg.send_id, "sourceMessageSendTime": msg.send_time,
            "sessionType": msg.session_type, "seq": msg.seq, "conversationID": conv,
            "isAdminRevoke": msg.send_id != user}
    content = _tips_content(tips)
    event = {"revokerUserID": user, "conversationID": conv, "seq": msg.seq,
             "sendID": msg.send_id, "sessionType": msg.session_type,
             **({"recvID": msg.recv_id} if side.kind == SINGLE else {"groupID": msg.group_id})}

    async def write(tx: Tx) -> None:
        done = await tx.session.execute(update(Message).where(
            Message.tenant_id == t, Message.conversation_id == conv, Message.seq == msg.seq,
            Message.status != REVOKED).values(
            status=REVOKED, content_type=int(NT.MSG_REVOKED), content=content))
        if done.rowcount != 1:  # type: ignore[attr-defined]
            raise AlreadyExists(f"message {msg.seq} of {conv} is already revoked")
        tip = Message(
            tenant_id=t, conversation_id=conv, seq=await tx.allocate(conv),
            server_msg_id=new_id("srv"), client_msg_id=new_id("rvk"), send_id=user,
            recv_id=side.peer if side.kind == SINGLE else "", group_id=side.group_id,
            session_type=msg.session_type, content_type=int(NT.MSG_REVOKED),
            content=content, send_time=now, status=SENT, sender_nickname=tips[
                "revokerNickname"], sender_platform_id=ctx.actor.platform_id)
        tx.session.add(tip)
        tx.after(AFTER_REVOKE if side.kind == SINGLE else AFTER_GROUP_REVOKE, event)
        # And, as the contract lists 2101 among the notifications, one in the n_USERID of
        # everyone in the conversation: a client syncing only its notifications learns it.
        await hub.notifier.send(tx, members, NT.MSG_REVOKED, tips, send_id=user,
                                group_id=side.group_id)
        wire = message_to_wire(tip)
        one = [wire]  # one list for all: the gateway encodes the frame once
        tx.on_commit(lambda: hub.signals.messages_stored(t, dict.fromkeys(members, one)))

    await hub.write(ctx, write)


@router.post("/msg/mark_msgs_as_read", MarkReadReq)
async def mark_msgs_as_read(hub: Hub, ctx: Ctx, req: MarkReadReq) -> None:
    """Record how far ownerUserID has read a conversation."""
    ctx.actor.check_self(req.ownerUserID)
    t, owner, conv = ctx.tenant_id, req.ownerUserID, req.conversationID
    top = max(req.seqs)
    async with hub.read() as s:
        side, _ = await _require_side(s, ctx, conv, owner)
        row = await s.get(ConversationSeq, (t, conv))
        if top > (row.max_seq if row else 0):
            raise BadArgument(f"seq {top} is past the newest of {conv}")
    seqs = sorted(set(req.seqs))

    async def write(tx: Tx) -> None:
        await mark_read(tx.session, t, owner, side, top)
        if side.kind == SINGLE:
            tx.after(AFTER_SINGLE_READ, {"sendID": owner, "recvID": side.peer,
                                         "conversationID": conv, "seqs": seqs})
            await hub.notifier.send(tx, [side.peer, owner], NT.HAS_READ_RECEIPT, {
                "conversationID": conv, "markAsReadUserID": owner, "seqs": seqs,
                "hasReadSeq": top}, send_id=owner)
        elif side.kind == GROUP:
            tx.after(AFTER_GROUP_READ, {"sendID": owner, "groupID": side.group_id,
                                        "conversationID": conv, "seqs": seqs})

    await hub.write(ctx, write)
