"""Conversations: who belongs to which, how far each user has read, and the list a client
shows.

A user's conversations are the single chats they have a message in (a
`user_conversations` row for each side, written with the conversation's first message),
the groups they are a member of (`sg_GROUPID`; a dismissed group keeps its members), and
their own notification conversation `n_USERID`. The list of /conversation/
get_all_conversations leaves `n_USERID` out, as OpenIM's does; /msg/newest_seq has it.

unreadCount counts the messages after the user's hasReadSeq that others sent and that
are neither revoked nor a revoke's tip, so a user's own messages never count as unread
without a write per send to move their read mark.

Conversation IDs are `si_A_B` (A < B), which the contract fixes; with user IDs that
contain `_` two pairs can map to one ID (`a`+`b_c` and `a_b`+`c`): the pair that opened
it keeps it, and the other pair is refused (`owned_by_others`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, bindparam, case, func, literal, or_, select, tuple_, union_all
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from ..api.routing import Router
from ..clock import now_ms
from ..context import Ctx
from ..core import Hub
from ..db.chat import UserConversation
from ..db.fast import On, Statement, dialect_name
from ..db.models import ConversationSeq, GroupMember, Message
from ..wire_types import NotificationType, single_conversation_id
from ._lookup import require_users
from ._schema import ID, Req
from .wire import message_to_wire

router = Router()

SINGLE, GROUP, NOTIFICATION = 1, 3, 4
REVOKED = 4


@dataclass(frozen=True, slots=True)
class Side:
    """A user's side of a conversation, as its ID tells it."""

    conversation_id: str
    kind: int  # SINGLE, GROUP or NOTIFICATION
    peer: str = ""  # single chat: the other user (the user themselves in a self-chat)
    group_id: str = ""


def side_of(conversation_id: str, user_id: str) -> Side | None:
    """The user's side of `conversation_id`, or None when the ID cannot be theirs.

    A group's ID is always 'theirs' here; whether they are a member is a read away.
    """
    cid = conversation_id
    if cid.startswith("sg_") and len(cid) > 3:
        return Side(cid, GROUP, group_id=cid[3:])
    if cid == f"n_{user_id}":
        return Side(cid, NOTIFICATION)
    if cid.startswith("si_"):
        head, tail = f"si_{user_id}_", f"_{user_id}"
        peers = []
        if cid.startswith(head):
            peers.append(cid[len(head):])
        if cid.endswith(tail):
            peers.append(cid[3:-len(tail)])
        for peer in peers:
            if peer and single_conversation_id(user_id, peer) == cid:
                return Side(cid, SINGLE, peer=peer)
    return None


# Another pair's rows for a single chat's ID (see `owned_by_others`).
_OTHERS = Statement(select(literal(1)).where(
    UserConversation.tenant_id == bindparam("t"),
    UserConversation.conversation_id == bindparam("c"),
    UserConversation.owner_user_id != bindparam("a"),
    UserConversation.owner_user_id != bindparam("b")).limit(1))


def may_collide(a: str, b: str) -> bool:
    """Whether the single chat ID of a and b could be another pair's (see
    `owned_by_others`): only IDs with '_' can."""
    return "_" in a or "_" in b


async def owned_by_others(db: On, tenant_id: str, conversation_id: str, a: str, b: str
                          ) -> bool:
    """Whether the single chat `conversation_id`, taken as a and b's, belongs to another
    pair of users. `si_A_B` joins two IDs with '_', so IDs that contain '_' can make
    the same ID for two pairs (a_b with c, and a with b_c: `si_a_b_c`); the pair whose
    message opened it first (`open_single`) keeps it. IDs without '_' never collide,
    and are not looked up."""
    if not may_collide(a, b):
        return False
    return bool(await _OTHERS.rows(db, {"t": tenant_id, "c": conversation_id, "a": a,
                                        "b": b}))


def _insert(session: AsyncSession) -> Any:
    return pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert


def _open_single(insert: Any) -> Statement:
    return Statement(insert(UserConversation).values(
        {c: bindparam(c) for c in ("tenant_id", "owner_user_id", "conversation_id",
                                   "conversation_type", "user_id", "group_id",
                                   "has_read_seq", "create_time")}).on_conflict_do_nothing())


_OPEN_SINGLE = {"postgresql": _open_single(pg_insert), "sqlite": _open_single(sqlite_insert)}


async def open_single(db: On, tenant_id: str, conversation_id: str, a: str, b: str,
                      now: int) -> None:
    """Record that users a and b are in a single chat (at its first message)."""
    rows = [{"tenant_id": tenant_id, "owner_user_id": owner, "conversation_id": conversation_id,
             "conversation_type": SINGLE, "user_id": peer, "group_id": "",
             "has_read_seq": 0, "create_time": now}
            for owner, peer in dict.fromkeys(((a, b), (b, a)))]
    await _OPEN_SINGLE[dialect_name(db)].many(db, rows)


async def mark_read(session: AsyncSession, tenant_id: str, user_id: str, side: Side,
                    seq: int) -> None:
    """Move the user's read mark forward to `seq` (never back)."""
    stmt = _insert(session)(UserConversation).values(
        tenant_id=tenant_id, owner_user_id=user_id, conversation_id=side.conversation_id,
        conversation_type=side.kind, user_id=side.peer, group_id=side.group_id,
        has_read_seq=seq, create_time=now_ms())
    current = UserConversation.has_read_seq
    await session.execute(stmt.on_conflict_do_update(
        index_elements=[UserConversation.tenant_id, UserConversation.owner_user_id,
                        UserConversation.conversation_id],
        set_={"has_read_seq": case((stmt.excluded.has_read_seq > current,
                                    stmt.excluded.has_read_seq), else_=current)}))


def _conversation_ids(tenant_id: str, user_id: str) -> Any:
    """Single chats and groups of the user, as one SELECT of (conversation_id)."""
    return union_all(
        select(UserConversation.conversation_id.label("cid")).where(
            UserConversation.tenant_id == tenant_id,
            UserConversation.owner_user_id == user_id,
            UserConversation.conversation_type == SINGLE),
        select((literal("sg_") + GroupMember.group_id).label("cid")).where(
            GroupMember.tenant_id == tenant_id, GroupMember.user_id == user_id),
    ).subquery()


async def seqs_of(session: AsyncSession, tenant_id: str, user_id: str
                  ) -> dict[str, tuple[int, int]]:
    """{conversationID: (maxSeq, minSeq)} of every conversation of the user, n_USERID
    included; a conversation without messages has (0, 0)."""
    ids = _conversation_ids(tenant_id, user_id)
    rows = await session.execute(
        select(ids.c.cid, ConversationSeq.max_seq, ConversationSeq.min_seq)
        .select_from(ids).outerjoin(ConversationSeq, and_(
            ConversationSeq.tenant_id == tenant_id,
            ConversationSeq.conversation_id == ids.c.cid)))
    out = {cid: (int(mx or 0), int(mn or 0)) for cid, mx, mn in rows}
    own = f"n_{user_id}"
    row = await session.get(ConversationSeq, (tenant_id, own))
    out[own] = (row.max_seq, row.min_seq) if row is not None else (0, 0)
    return out


async def require_user(ctx: Ctx, session: AsyncSession, user_id: str) -> None:
    """1004 for an unknown user; a user token needs no read, it names an existing user."""
    if ctx.actor.is_admin:
        await require_users(session, ctx.tenant_id, [user_id])


class ConversationsReq(Req):
    ownerUserID: ID


@router.post("/conversation/get_all_conversations", ConversationsReq)
async def get_all_conversations(hub: Hub, ctx: Ctx, req: ConversationsReq
                                ) -> dict[str, Any]:
    """The user's single and group conversations, newest message first, with read state."""
    ctx.actor.check_self(req.ownerUserID)
    t, owner = ctx.tenant_id, req.ownerUserID
    async with hub.read() as s:
        await require_user(ctx, s, owner)
        seqs = await seqs_of(s, t, owner)
        seqs.pop(f"n_{owner}", None)
        mine = {r.conversation_id: r for r in (await s.execute(select(UserConversation).where(
            UserConversation.tenant_id == t,
            UserConversation.owner_user_id == owner))).scalars()}
        read = {cid: (mine[cid].has_read_seq if cid in mine else 0) for cid in seqs}
        latest = await _latest(s, t, {cid: mx for cid, (mx, _) in seqs.items() if mx})
        unread = await _unread(s, t, owner, {cid: r for cid, r in read.items()
                                             if seqs[cid][0] > r})
    out: list[dict[str, Any]] = []
    for cid, (max_seq, _) in seqs.items():
        side = side_of(cid, owner)
        assert side is not None
        # A single chat's peer as its first message recorded it: with '_' in user IDs
        # the ID alone can read two ways.
        peer = mine[cid].user_id if side.kind == SINGLE and cid in mine else side.peer
        msg = latest.get(cid)
        out.append({
            "conversationID": cid, "conversationType": side.kind, "ownerUserID": owner,
            "userID": peer, "groupID": side.group_id, "maxSeq": max_seq,
            "hasReadSeq": read[cid], "unreadCount": unread.get(cid, 0), "latestMsg": msg,
            "latestMsgSendTime": msg["sendTime"] if msg else 0,
        })
    out.sort(key=lambda c: (-c["latestMsgSendTime"], c["conversationID"]))
    return {"conversations": out}


async def _latest(s: AsyncSession, tenant_id: str, max_seqs: dict[str, int]
                  ) -> dict[str, dict[str, Any]]:
    if not max_seqs:
        return {}
    rows = (await s.execute(select(Message).where(
        Message.tenant_id == tenant_id,
        tuple_(Message.conversation_id, Message.seq).in_(list(max_seqs.items()))))).scalars()
    return {m.conversation_id: message_to_wire(m) for m in rows}


async def _unread(s: AsyncSession, tenant_id: str, owner: str, read: dict[str, int]
                  ) -> dict[str, int]:
    if not read:
        return {}
    rows = await s.execute(
        select(Message.conversation_id, func.count()).where(
            Message.tenant_id == tenant_id,
            or_(*(and_(Message.conversation_id == cid, Message.seq > seq)
                  for cid, seq in read.items())),
            Message.send_id != owner, Message.status != REVOKED,
            Message.content_type != NotificationType.MSG_REVOKED,  # a revoke's tip: not news
        ).group_by(Message.conversation_id))
    return {cid: int(n) for cid, n in rows}
