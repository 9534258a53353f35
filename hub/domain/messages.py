"""Chat messages (CONTRACT 2 /msg, 3): send, sync by seq, revoke, read receipts.

Sending follows the pipeline: validate -> beforeSendSingleMsg / beforeSendGroupMsg ->
one transaction (the message, its seq and its after-event) -> push after the commit
(hub/domain/push.py). The rules, as OpenIM v3 has them:

- The rules apply to `sendID` whichever token sends: a user token sends as itself only,
  the tenant admin token as any user of its tenant, under that user's rules.
- Single chat: the recipient must exist (1004); when the recipient has the sender on
  their blacklist, 1301; with `friend_required_for_chat`, the sender must be on the
  recipient's friend list (1302). A user may write to themselves (`si_A_A`).
- Group chat: the group exists (1004) and is not dismissed (1203), the sender is a
  member (1201); a muted member (until muteEndTime) or, for a muted group, anyone but the
  owner and admins, gets 1202. The owner is never muted.
- Content: `content` is a non-empty string; text (101) is a JSON object with a string
  "content". Stored content types are 101-111 and 114; typing (113) is relayed to the
  same recipients with seq 0, never stored and never hooked.
- A before hook may deny (its errCode), drop (the sender gets success with seq 0 and a
  serverMsgID; nothing is stored, pushed or raised) or change content, contentType (to
  another stored type), offlinePushInfo, ex and atUserIDList; the changed message is
  validated again (1001 when the change broke it).
- clientMsgID (generated when absent) makes a send idempotent: the same sender sending
  the same clientMsgID into the same conversation gets the first send's answer and
  nothing new is stored, also when both sends race (the unique index decides).

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

from dataclasses import dataclass
from typing import Annotated, Any, Literal

import orjson
from pydantic import Field, StringConstraints
from sqlalchemy import bindparam, exists, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from ..api.routing import Router
from ..bus import hook
from ..bus.bus import Drop
from ..clock import new_id, now_ms
from ..context import Ctx
from ..core import Hub
from ..db.fast import Statement
from ..db.models import Black, ConversationSeq, Friend, Group, GroupMember, Message, User
from ..errors import (
    AlreadyExists,
    BadArgument,
    Blocked,
    GroupDismissed,
    Muted,
    NoPermission,
    NotFound,
    NotFriends,
    NotGroupMember,
)
from ..tx import Tx
from ..wire_types import group_conversation_id, single_conversation_id
from ._lookup import user_exists
from ._schema import ID, Req, Seq, StoredSeq, Text, revalidate
from .conversations import (
    GROUP,
    SINGLE,
    Side,
    mark_read,
    open_single,
    owned_by_others,
    require_user,
    seqs_of,
    side_of,
)
from .drafts import INSERT_MESSAGE, Draft
from .groups import ADMIN, DISMISSED, MUTED, OWNER
from .notify import NT
from .push import AFTER_OFFLINE, BEFORE_OFFLINE, OfflinePushInfo
from .wire import message_to_wire

router = Router()

# The sending connection: (userID, platformID, connID), as in hub/signals.py.
Origin = tuple[str, int, str]

BEFORE_SINGLE = hook("beforeSendSingleMsg")
AFTER_SINGLE = hook("afterSendSingleMsg")
BEFORE_GROUP = hook("beforeSendGroupMsg")
AFTER_GROUP = hook("afterSendGroupMsg")
AFTER_REVOKE = hook("afterRevokeMsg")
AFTER_GROUP_REVOKE = hook("afterGroupMsgRevoke")
AFTER_SINGLE_READ = hook("afterSingleMsgRead")
AFTER_GROUP_READ = hook("afterGroupMsgRead")

TEXT, TYPING = 101, 113
STORED_TYPES = frozenset({*range(101, 112), 114})
SENT, REVOKED = 2, 4

OptID = Annotated[str, StringConstraints(max_length=64, strip_whitespace=True)]
ConvID = Annotated[str, StringConstraints(min_length=1, max_length=160, strip_whitespace=True)]


class SendMsgReq(Req):
    sendID: ID
    recvID: OptID = ""
    groupID: OptID = ""
    sessionType: Literal[1, 3]
    contentType: int
    content: str
    clientMsgID: OptID = ""
    offlinePushInfo: OfflinePushInfo | None = None
    ex: Text = ""
    atUserIDList: list[ID] = Field(default_factory=list, max_length=1000)


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


# --- sending ---------------------------------------------------------------------------

def _check_content(content_type: int, content: str, *, typing_ok: bool) -> None:
    if content_type not in STORED_TYPES and not (typing_ok and content_type == TYPING):
        raise BadArgument(f"contentType {content_type} cannot be sent")
    if not content:
        raise BadArgument("content is empty")
    if content_type == TEXT:
        try:
            body = orjson.loads(content)
        except orjson.JSONDecodeError:
            body = None
        if not isinstance(body, dict) or not isinstance(body.get("content"), str):
            raise BadArgument('text content must be a JSON object with a "content" string')


@dataclass(slots=True)
class _Target:
    """Where a message goes, found by the checks before its hooks."""

    conversation_id: str
    recipients: list[str]  # who gets the push, the sender included
    nickname: str


def _ack(wire: dict[str, Any]) -> dict[str, Any]:
    return {k: wire[k] for k in ("serverMsgID", "clientMsgID", "sendTime", "seq")}


# The checks of a send are one statement each (two for a group), built once: on SQLite a
# statement costs far more in SQLAlchemy than in the database. What they read is kept
# between the writes that could change it (hub/checks.py); the clientMsgID lookup, which
# no cache can answer, is one index search.
_p = bindparam

_NICKNAME = select(User.nickname).where(
    User.tenant_id == _p("t"), User.user_id == _p("send")).scalar_subquery().label("nick")
# nick, recv_ok, blocked, friend
_SINGLE_CHECKS = Statement(select(
    _NICKNAME, user_exists("recv").label("recv_ok"),
    exists().where(Black.tenant_id == _p("t"), Black.owner_user_id == _p("recv"),
                   Black.block_user_id == _p("send")).label("blocked"),
    exists().where(Friend.tenant_id == _p("t"), Friend.owner_user_id == _p("recv"),
                   Friend.friend_user_id == _p("send")).label("friend")))
# nick, status
_GROUP_CHECKS = Statement(select(
    _NICKNAME, select(Group.status).where(
        Group.tenant_id == _p("t"), Group.group_id == _p("group")).scalar_subquery()
    .label("status")))
# user_id, role_level, mute_end_time
_MEMBERS = Statement(select(
    GroupMember.user_id, GroupMember.role_level, GroupMember.mute_end_time).where(
    GroupMember.tenant_id == _p("t"), GroupMember.group_id == _p("group")))
# server_msg_id, seq, send_time of the earlier send with this clientMsgID (a unique index)
_FIRST_SEND = Statement(select(Message.server_msg_id, Message.seq, Message.send_time).where(
    Message.tenant_id == _p("t"), Message.send_id == _p("send"),
    Message.client_msg_id == _p("cmid"), Message.conversation_id == _p("conv")))


@dataclass(frozen=True, slots=True)
class _GroupState:
    status: int
    members: dict[str, tuple[int, int]]  # user_id -> (role_level, mute_end_time)


async def _first_send(hub: Hub, tenant_id: str, send_id: str, client_msg_id: str,
                      conversation_id: str) -> dict[str, Any] | None:
    """The answer to the earlier send with this clientMsgID, if there was one."""
    if not client_msg_id:
        return None  # the server makes one up: nothing can have been sent with it
    rows = await hub.reads.rows(_FIRST_SEND, {"t": tenant_id, "send": send_id,
                                              "cmid": client_msg_id, "conv": conversation_id})
    if not rows:
        return None
    server_msg_id, seq, send_time = rows[0]
    return {"serverMsgID": server_msg_id, "clientMsgID": client_msg_id, "sendTime": send_time,
            "seq": seq}


async def _single_target(hub: Hub, t: str, req: SendMsgReq) -> _Target:
    if not req.recvID:
        raise BadArgument("recvID is required for a single chat (sessionType 1)")
    conv = single_conversation_id(req.sendID, req.recvID)
    key = (SINGLE, t, req.sendID, req.recvID)
    row = hub.checks.lookup(key)
    if row is None:
        generation = hub.checks.generation
        [row] = await hub.reads.rows(_SINGLE_CHECKS, {"t": t, "send": req.sendID,
                                                      "recv": req.recvID})
        hub.checks.keep(key, generation, row)
    nick, recv_ok, blocked, friend = row
    if nick is None:
        raise NotFound(f"user {req.sendID} not found")
    if not recv_ok:
        raise NotFound(f"user {req.recvID} not found")
    if req.recvID != req.sendID:
        if blocked:
            raise Blocked(f"{req.recvID} has blocked {req.sendID}")
        if hub.settings.friend_required_for_chat and not friend:
            raise NotFriends(f"{req.sendID} is not a friend of {req.recvID}")
    return _Target(conv, [req.recvID, req.sendID], nick)


async def _group_state(hub: Hub, t: str, req: SendMsgReq) -> tuple[str | None, _GroupState | None]:
    """The sender's nickname and the group's state, from the cache or the database."""
    # Keys apart from a single chat's (SINGLE, t, sender, recipient): 0 for a nickname.
    nick_key, group_key = (0, t, req.sendID), (GROUP, t, req.groupID)
    nick: str | None = hub.checks.lookup(nick_key)
    state: _GroupState | None = hub.checks.lookup(group_key)
    if nick is not None and state is not None:
        return nick, state
    generation = hub.checks.generation
    params = {"t": t, "send": req.sendID, "group": req.groupID}
    [(nick, status)] = await hub.reads.rows(_GROUP_CHECKS, params)
    if status is None:
        return nick, None
    members = await hub.reads.rows(_MEMBERS, params)
    state = _GroupState(status, {m[0]: (m[1], m[2]) for m in members})
    if nick is not None:
        hub.checks.keep(nick_key, generation, nick)
    hub.checks.keep(group_key, generation, state, weight=max(1, len(state.members)))
    return nick, state


async def _group_target(hub: Hub, t: str, req: SendMsgReq) -> _Target:
    if not req.groupID:
        raise BadArgument("groupID is required for a group chat (sessionType 3)")
    conv = group_conversation_id(req.groupID)
    nick, state = await _group_state(hub, t, req)
    if state is None:
        raise NotFound(f"group {req.groupID} not found")
    if state.status == DISMISSED:
        raise GroupDismissed(f"group {req.groupID} is dismissed")
    me = state.members.get(req.sendID)
    if me is None:
        raise NotGroupMember(f"{req.sendID} is not a member of group {req.groupID}")
    role, mute_end = me
    if role != OWNER:
        if mute_end > now_ms():
            raise Muted(f"{req.sendID} is muted in group {req.groupID}")
        if state.status == MUTED and role != ADMIN:
            raise Muted(f"group {req.groupID} is muted")
    return _Target(conv, list(state.members), nick or "")


def _changed(req: SendMsgReq, out: dict[str, Any]) -> SendMsgReq:
    """The request with a before hook's changes, validated again."""
    final: SendMsgReq = revalidate(SendMsgReq, {
        **req.model_dump(), **{k: out[k] for k in BEFORE_SINGLE.mutable if k in out}})
    _check_content(final.contentType, final.content, typing_ok=False)
    return final


@router.post("/msg/send_msg", SendMsgReq)
async def send_msg(hub: Hub, ctx: Ctx, req: SendMsgReq, *, origin: Origin | None = None
                   ) -> dict[str, Any]:
    """Send a single-chat or group message -> {serverMsgID, clientMsgID, sendTime, seq}."""
    ctx.actor.check_self(req.sendID)
    _check_content(req.contentType, req.content, typing_ok=True)
    t = ctx.tenant_id
    single = req.sessionType == SINGLE
    target = await (_single_target(hub, t, req) if single else _group_target(hub, t, req))
    before, after = (BEFORE_SINGLE, AFTER_SINGLE) if single else (BEFORE_GROUP, AFTER_GROUP)
    # A resend is answered with the first send's result. It is looked up here when a
    # before hook would see the message (a resend then does not ask the hook again) or
    # when this clientMsgID came again before; otherwise the unique index finds it at
    # the insert, below. The lookup cost a tenth of a send's CPU, for the rare resend.
    resend = (t, req.sendID, req.clientMsgID, target.conversation_id)
    typing = req.contentType == TYPING  # never stored, never hooked
    hooked = not typing and await hub.bus.calls_before(before, t)
    if req.clientMsgID and not typing and (resend in hub.checks.resent or hooked):
        first = await _first_send(hub, *resend)
        if first is not None:
            return first
    platform = origin[1] if origin else ctx.actor.platform_id
    msg = Draft(
        tenant_id=t, conversation_id=target.conversation_id, seq=0,
        server_msg_id=new_id("srv"), client_msg_id=req.clientMsgID or new_id("cli"),
        send_id=req.sendID, recv_id=req.recvID if single else "",
        group_id="" if single else req.groupID, session_type=req.sessionType,
        content_type=req.contentType, content=req.content, send_time=now_ms(), status=SENT,
        sender_platform_id=platform, sender_nickname=target.nickname,
        offline_push_info=req.offlinePushInfo.model_dump_json() if req.offlinePushInfo
        else "", at_user_ids=orjson.dumps(req.atUserIDList).decode(), ex=req.ex)
    wire = message_to_wire(msg)
    if typing:
        one = [wire]  # one list for all: the gateway encodes the frame once
        hub.signals.messages_stored(t, dict.fromkeys(target.recipients, one), origin)
        return _ack(wire)

    out = await hub.bus.before(before, t, ctx.operation_id, wire) if hooked else wire
    if isinstance(out, Drop):
        return _ack(wire)
    if out is not wire:
        final = _changed(req, out)
        msg.content_type, msg.content, msg.ex = final.contentType, final.content, final.ex
        msg.offline_push_info = (final.offlinePushInfo.model_dump_json()
                                 if final.offlinePushInfo else "")
        msg.at_user_ids = orjson.dumps(final.atUserIDList).decode()
        wire = message_to_wire(msg)
    row = msg.row()
    event_keys = (*after.fields, "conversationID")
    # With no beforeOfflinePush handler to ask, afterOfflinePush is written with the
    # message (hub/domain/push.py).
    offline_here = not await hub.bus.calls_before(BEFORE_OFFLINE, t)

    async def write(tx: Tx) -> dict[str, Any]:
        seq = await tx.allocate(msg.conversation_id)
        await tx.insert(INSERT_MESSAGE, [{**row, "seq": seq}])
        if single and seq == 1:
            await open_single(tx.db, t, msg.conversation_id, msg.send_id, msg.recv_id,
                              msg.send_time)
        elif single and await owned_by_others(tx.db, t, msg.conversation_id, msg.send_id,
                                              msg.recv_id):
            # After the allocation, which holds the counter's row lock on PostgreSQL: a
            # pair that opened it concurrently has committed by then.
            raise BadArgument(f"{msg.conversation_id} is the conversation of two other "
                              f"users (user IDs with '_' make single chat IDs ambiguous)")
        stored = {**wire, "seq": seq}
        tx.after(after, {k: stored[k] for k in event_keys})
        offline = (hub.pusher.offline_event(t, stored, target.recipients) if offline_here
                   else None)
        if offline is not None:
            tx.after(AFTER_OFFLINE, offline)
        tx.on_commit(lambda: hub.pusher.message_stored(
            ctx, stored, target.recipients, origin, offline_written=offline_here))
        return stored

    try:
        stored = await hub.write(ctx, write, orm=False, changes_checks=False)
    except IntegrityError:
        # A resend, or the same clientMsgID racing in from the same sender: the first won.
        hub.checks.resent.add(resend)
        first = await _first_send(hub, *resend)
        if first is None:
            raise
        return first
    return _ack(stored)


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
