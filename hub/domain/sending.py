"""Sending a chat message (CONTRACT 2 /msg/send_msg, 3 SendMsg): validate, check, hooks.

Sending follows the pipeline: validate -> beforeSendSingleMsg / beforeSendGroupMsg ->
one transaction (the message, its seq and its after-event) -> push after the commit.
This module does the part before the transaction; hub/domain/send_queue.py stores the
sends in batches and answers them, hub/domain/push.py pushes. The rules, as OpenIM v3
has them:

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

`send_now` does all of it without waiting when it can: the checks kept in memory
(hub/checks.py) answer, no before hook would see the message and its clientMsgID never
came twice. The gateway calls it straight from a SendMsg frame, without a task, and
the rest (a read, a hook) goes on in a task through `send_waiting`; over HTTP,
`send_msg` does the same.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import orjson
from pydantic import Field, StringConstraints
from sqlalchemy import bindparam, exists, select

from ..api.routing import Router
from ..bus import hook
from ..bus.bus import Drop
from ..clock import new_id, now_ms
from ..context import Ctx
from ..core import Hub
from ..db.fast import Statement
from ..db.models import Black, Friend, Group, GroupMember, User
from ..errors import (
    BadArgument,
    Blocked,
    GroupDismissed,
    Muted,
    NotFound,
    NotFriends,
    NotGroupMember,
)
from ..wire_types import group_conversation_id, single_conversation_id
from ._lookup import user_exists
from ._schema import ID, Req, Text, revalidate
from .conversations import GROUP, SINGLE
from .drafts import Draft
from .groups import ADMIN, DISMISSED, MUTED, OWNER
from .push import BEFORE_OFFLINE, OfflinePushInfo
from .send_queue import Answer, Done, Origin, Outgoing, ack, first_send
from .wire import message_to_wire

router = Router()

BEFORE_SINGLE = hook("beforeSendSingleMsg")
AFTER_SINGLE = hook("afterSendSingleMsg")
BEFORE_GROUP = hook("beforeSendGroupMsg")
AFTER_GROUP = hook("afterSendGroupMsg")

TEXT, TYPING = 101, 113
STORED_TYPES = frozenset({*range(101, 112), 114})
SENT = 2

OptID = Annotated[str, StringConstraints(max_length=64, strip_whitespace=True)]


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


@dataclass(frozen=True, slots=True)
class _GroupState:
    status: int
    members: dict[str, tuple[int, int]]  # user_id -> (role_level, mute_end_time)


def _single_key(t: str, req: SendMsgReq) -> tuple[Any, ...]:
    if not req.recvID:
        raise BadArgument("recvID is required for a single chat (sessionType 1)")
    return (SINGLE, t, req.sendID, req.recvID)


def _group_keys(t: str, req: SendMsgReq) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
    if not req.groupID:
        raise BadArgument("groupID is required for a group chat (sessionType 3)")
    # Keys apart from a single chat's (SINGLE, t, sender, recipient): 0 for a nickname.
    return (0, t, req.sendID), (GROUP, t, req.groupID)


def _target_now(hub: Hub, t: str, req: SendMsgReq) -> _Target | None:
    """The send's target from the kept checks; None when they must be read."""
    if req.sessionType == SINGLE:
        row = hub.checks.lookup(_single_key(t, req))
        return None if row is None else _single_target(
            req, row, friends_only=hub.settings.friend_required_for_chat)
    nick_key, group_key = _group_keys(t, req)
    nick, state = hub.checks.lookup(nick_key), hub.checks.lookup(group_key)
    return None if nick is None or state is None else _group_target(req, nick, state)


async def _target(hub: Hub, t: str, req: SendMsgReq) -> _Target:
    """The send's target, read (and kept) where the kept checks do not answer."""
    if req.sessionType == SINGLE:
        key = _single_key(t, req)
        row = hub.checks.lookup(key)
        if row is None:
            generation = hub.checks.generation
            [row] = await hub.reads.rows(_SINGLE_CHECKS, {"t": t, "send": req.sendID,
                                                          "recv": req.recvID})
            hub.checks.keep(key, generation, row)
        return _single_target(req, row, friends_only=hub.settings.friend_required_for_chat)
    nick_key, group_key = _group_keys(t, req)
    nick: str | None = hub.checks.lookup(nick_key)
    state: _GroupState | None = hub.checks.lookup(group_key)
    if nick is None or state is None:
        generation = hub.checks.generation
        params = {"t": t, "send": req.sendID, "group": req.groupID}
        [(nick, status)] = await hub.reads.rows(_GROUP_CHECKS, params)
        if status is not None:
            members = await hub.reads.rows(_MEMBERS, params)
            state = _GroupState(status, {m[0]: (m[1], m[2]) for m in members})
            if nick is not None:
                hub.checks.keep(nick_key, generation, nick)
            hub.checks.keep(group_key, generation, state, weight=max(1, len(state.members)))
        else:
            state = None
    return _group_target(req, nick, state)


def _single_target(req: SendMsgReq, row: Any, *, friends_only: bool) -> _Target:
    nick, recv_ok, blocked, friend = row
    if nick is None:
        raise NotFound(f"user {req.sendID} not found")
    if not recv_ok:
        raise NotFound(f"user {req.recvID} not found")
    if req.recvID != req.sendID:
        if blocked:
            raise Blocked(f"{req.recvID} has blocked {req.sendID}")
        if friends_only and not friend:
            raise NotFriends(f"{req.sendID} is not a friend of {req.recvID}")
    return _Target(single_conversation_id(req.sendID, req.recvID), [req.recvID, req.sendID],
                   nick)


def _group_target(req: SendMsgReq, nick: str | None, state: _GroupState | None) -> _Target:
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
    return _Target(group_conversation_id(req.groupID), list(state.members), nick or "")


def _draft(ctx: Ctx, req: SendMsgReq, target: _Target, origin: Origin | None) -> Draft:
    single = req.sessionType == SINGLE
    # By position, in Draft's field order: a call with eighteen keywords costs more.
    return Draft(
        ctx.tenant_id, target.conversation_id, 0, new_id("srv"),
        req.clientMsgID or new_id("cli"), req.sendID, req.recvID if single else "",
        "" if single else req.groupID, req.sessionType, req.contentType, req.content,
        now_ms(), SENT, origin[1] if origin else ctx.actor.platform_id, target.nickname,
        req.offlinePushInfo.model_dump_json() if req.offlinePushInfo else "",
        orjson.dumps(req.atUserIDList).decode() if req.atUserIDList else "[]", req.ex)


def _relay(hub: Hub, ctx: Ctx, req: SendMsgReq, target: _Target, origin: Origin | None
           ) -> Answer:
    """Typing (113): pushed to the same recipients, never stored, never hooked."""
    wire = message_to_wire(_draft(ctx, req, target, origin))
    one = [wire]  # one list for all: the gateway encodes the frame once
    hub.signals.messages_stored(ctx.tenant_id, dict.fromkeys(target.recipients, one), origin)
    return ack(wire)


def _outgoing(ctx: Ctx, msg: Draft, target: _Target, origin: Origin | None, *,
              offline_here: bool, done: Done) -> Outgoing:
    single = msg.session_type == SINGLE
    return Outgoing(ctx, msg, message_to_wire(msg), target.recipients,
                    AFTER_SINGLE if single else AFTER_GROUP, origin, offline_here, done)


def _resend_key(ctx: Ctx, req: SendMsgReq, target: _Target) -> tuple[str, str, str, str]:
    return (ctx.tenant_id, req.sendID, req.clientMsgID, target.conversation_id)


def send_now(hub: Hub, ctx: Ctx, req: SendMsgReq, done: Done, *,
             origin: Origin | None = None) -> bool:
    """Send without waiting: queue the message (`done` answers once it is stored), or
    relay a typing message and answer at once. False, having done nothing, when the send
    has to read or ask something first (`send_msg` then). Raises the send's ApiError."""
    ctx.actor.check_self(req.sendID)
    _check_content(req.contentType, req.content, typing_ok=True)
    t = ctx.tenant_id
    target = _target_now(hub, t, req)
    if target is None:
        return False
    if req.contentType == TYPING:
        done(_relay(hub, ctx, req, target, origin), None)
        return True
    bus = hub.bus
    if bus.calls_before_now(BEFORE_SINGLE if req.sessionType == SINGLE else BEFORE_GROUP,
                            t) is not False:
        return False
    offline_hooked = bus.calls_before_now(BEFORE_OFFLINE, t)
    if offline_hooked is None or (
            req.clientMsgID and _resend_key(ctx, req, target) in hub.checks.resent):
        return False
    hub.sends.put(_outgoing(ctx, _draft(ctx, req, target, origin), target, origin,
                            offline_here=not offline_hooked, done=done))
    return True


def _changed(req: SendMsgReq, out: dict[str, Any]) -> SendMsgReq:
    """The request with a before hook's changes, validated again."""
    final: SendMsgReq = revalidate(SendMsgReq, {
        **req.model_dump(), **{k: out[k] for k in BEFORE_SINGLE.mutable if k in out}})
    _check_content(final.contentType, final.content, typing_ok=False)
    return final


async def send_waiting(hub: Hub, ctx: Ctx, req: SendMsgReq, done: Done,
                       origin: Origin | None) -> None:
    """`send_now` for any send: reads the checks, asks the before hooks. `done` is
    called once, unless this raises first (the caller answers then)."""
    t = ctx.tenant_id
    target = await _target(hub, t, req)
    if req.contentType == TYPING:
        done(_relay(hub, ctx, req, target, origin), None)
        return
    before = BEFORE_SINGLE if req.sessionType == SINGLE else BEFORE_GROUP
    hooked = await hub.bus.calls_before(before, t)
    # A resend is answered with the first send's result. It is looked up here when a
    # before hook would see the message (a resend then does not ask the hook again) or
    # when this clientMsgID came again before; otherwise the unique index finds it when
    # the batch is written (hub/domain/send_queue.py). The lookup cost a tenth of a
    # send's CPU, for the rare resend.
    resend = _resend_key(ctx, req, target)
    if req.clientMsgID and (hooked or resend in hub.checks.resent):
        first = await first_send(hub, *resend)
        if first is not None:
            done(first, None)
            return
    msg = _draft(ctx, req, target, origin)
    if hooked:
        wire = message_to_wire(msg)
        out = await hub.bus.before(before, t, ctx.operation_id, wire)
        if isinstance(out, Drop):
            done(ack(wire), None)
            return
        if out is not wire:
            final = _changed(req, out)
            msg.content_type, msg.content, msg.ex = final.contentType, final.content, final.ex
            msg.offline_push_info = (final.offlinePushInfo.model_dump_json()
                                     if final.offlinePushInfo else "")
            msg.at_user_ids = orjson.dumps(final.atUserIDList).decode()
    # With no beforeOfflinePush handler to ask, afterOfflinePush is written with the
    # message (hub/domain/push.py).
    offline_here = not await hub.bus.calls_before(BEFORE_OFFLINE, t)
    hub.sends.put(_outgoing(ctx, msg, target, origin, offline_here=offline_here, done=done))


@router.post("/msg/send_msg", SendMsgReq)
async def send_msg(hub: Hub, ctx: Ctx, req: SendMsgReq, *, origin: Origin | None = None
                   ) -> Answer:
    """Send a single-chat or group message -> {serverMsgID, clientMsgID, sendTime, seq}."""
    answered: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()

    def done(answer: Answer | None, exc: BaseException | None) -> None:
        if answered.done():
            return  # the caller went away; the message is stored all the same
        if exc is not None:
            answered.set_exception(exc)
        else:
            assert answer is not None
            answered.set_result(answer)

    if not send_now(hub, ctx, req, done, origin=origin):
        await send_waiting(hub, ctx, req, done, origin)
    return await answered
