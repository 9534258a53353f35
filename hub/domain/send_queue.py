"""Sends wait here for their batch: one write of the group commit stores many messages.

A send that passed its checks and before hooks (hub/domain/sending.py) becomes an
`Outgoing` and is queued. One flush at a time takes everything queued and stores it as
one `Hub.write` (hub/committer.py): per message its seq, its row, its after-event and,
when no beforeOfflinePush handler would see it, its afterOfflinePush event. Once that
commits, in queue order, the messages are pushed (hub/domain/push.py) and each send is
answered through its `done` callback: the WebSocket gateway writes the ack frame from
there, an HTTP request's future is resolved. A send is thus answered only after its
transaction has committed, as before.

One write per batch rather than one per send: a write of the group commit costs its
own future, Tx, closure and task switches, and a send's answer its own push frame; with
the gateway taking a send straight from its frame to this queue (no task per request
when nothing has to be read or asked first), the server's CPU per message fell by about
a quarter in bench/chat_throughput.py on SQLite, and on PostgreSQL sends no longer
deadlock each other (docs/performance.md, seventh session).

If a batch's write fails (the same clientMsgID racing in twice, a single chat ID that
another pair of users owns, a database error), each of its sends is written again on its
own, all at once, so that the group commit gives each a savepoint and only the failing
one fails. A send whose clientMsgID was stored already is answered with the first send's
result.

Flushes run one at a time, so seqs are allocated in queue order, and pushes and answers
leave in commit order. A caller that goes away (an HTTP request cancelled) does not take
its message out: it is stored, like one whose caller was answered.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import bindparam, select
from sqlalchemy.exc import IntegrityError

from ..bus.catalogue import Hook
from ..context import Ctx
from ..db.fast import Statement
from ..db.models import Message
from ..errors import BadArgument
from .conversations import SINGLE, may_collide, open_single, owned_by_others
from .drafts import INSERT_MESSAGE, Draft
from .push import AFTER_OFFLINE

if TYPE_CHECKING:
    from ..core import Hub
    from ..tx import Tx

log = logging.getLogger("imhub.send")

# The sending connection: (userID, platformID, connID), as in hub/signals.py.
Origin = tuple[str, int, str]
Answer = dict[str, Any]  # {serverMsgID, clientMsgID, sendTime, seq}
# Called once per send: with its answer, or with the error it failed with.
Done = Callable[[Answer | None, BaseException | None], None]

# Turns of the event loop a batch waits before it is taken: in A/B runs of the chat
# benchmark 3 beat 1 (11,900 against 11,000 messages/s) and 5 or 8 (larger batches
# whose COMMIT grew slow enough to go to the commit thread).
_TURNS = 3

# server_msg_id, seq, send_time of the earlier send with this clientMsgID (a unique index)
_FIRST_SEND = Statement(select(Message.server_msg_id, Message.seq, Message.send_time).where(
    Message.tenant_id == bindparam("t"), Message.send_id == bindparam("send"),
    Message.client_msg_id == bindparam("cmid"), Message.conversation_id == bindparam("conv")))


def ack(wire: dict[str, Any]) -> Answer:
    """A send's answer, from its message in wire form."""
    return {"serverMsgID": wire["serverMsgID"], "clientMsgID": wire["clientMsgID"],
            "sendTime": wire["sendTime"], "seq": wire["seq"]}


async def first_send(hub: Hub, tenant_id: str, send_id: str, client_msg_id: str,
                     conversation_id: str) -> Answer | None:
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


@dataclass(slots=True, eq=False)
class Outgoing:
    """A message that passed its checks and hooks, waiting for its batch."""

    ctx: Ctx
    msg: Draft  # seq 0 until stored
    wire: dict[str, Any]  # the message in wire form; its seq is set when stored
    recipients: list[str]  # who gets the push, the sender included
    after: Hook  # afterSendSingleMsg or afterSendGroupMsg
    origin: Origin | None
    # No beforeOfflinePush handler would see it: afterOfflinePush is written with it.
    offline_here: bool
    done: Done

    @property
    def resend_key(self) -> tuple[str, str, str, str]:
        m = self.msg
        return (m.tenant_id, m.send_id, m.client_msg_id, m.conversation_id)


class SendQueue:
    def __init__(self, hub: Hub) -> None:
        self._hub = hub
        self._queued: list[Outgoing] = []
        self._flushing: asyncio.Task[None] | None = None

    def put(self, out: Outgoing) -> None:
        """Queue a send for the next batch; `out.done` answers it once that commits."""
        self._queued.append(out)
        if self._flushing is None:
            self._flushing = asyncio.get_running_loop().create_task(
                self._flush(), name="imhub-sends")

    async def drain(self) -> None:
        """Wait until every queued send is stored and answered (shutdown, tests)."""
        while self._flushing is not None:
            await asyncio.shield(self._flushing)

    async def _flush(self) -> None:
        try:
            while self._queued:
                # A few turns of the loop first: frames already read but not yet handled
                # join this batch rather than the next. Fewer, larger batches: a batch's
                # COMMIT writes a page per conversation and index it touches, however
                # many messages share it (docs/performance.md, seventh session).
                for _ in range(_TURNS):
                    await asyncio.sleep(0)
                batch, self._queued = self._queued, []
                await self._write(batch)
        finally:
            self._flushing = None

    async def _write(self, batch: list[Outgoing]) -> None:
        try:
            await self._hub.write(batch[0].ctx, lambda tx: self._store(tx, batch), orm=False,
                                  changes_checks=False, size=len(batch))
        except Exception as exc:
            if len(batch) == 1:
                await self._failed(batch[0], exc)
            else:
                await asyncio.gather(*(self._alone(out) for out in batch))

    async def _alone(self, out: Outgoing) -> None:
        try:
            await self._hub.write(out.ctx, lambda tx: self._store(tx, [out]), orm=False,
                                  changes_checks=False)
        except Exception as exc:
            await self._failed(out, exc)

    async def _failed(self, out: Outgoing, exc: Exception) -> None:
        if isinstance(exc, IntegrityError):
            # A resend, or the same clientMsgID racing in from the same sender: the first
            # won. Remembered, so that the next resend looks it up before its hooks.
            self._hub.checks.resent.add(out.resend_key)
            try:
                first = await first_send(self._hub, *out.resend_key)
            except Exception as lookup:
                _answer(out, None, lookup)
                return
            if first is not None:
                _answer(out, first, None)
                return
        _answer(out, None, exc)

    async def _store(self, tx: Tx, batch: list[Outgoing]) -> None:
        """The batch's write. Run again from the start if the group commit retries it."""
        pusher = self._hub.pusher
        rows = []
        # Conversations in one order (a stable sort keeps each one's sends in queue
        # order): on PostgreSQL a seq counter's row stays locked until the commit, so two
        # batches (two nodes) that took the same counters in different orders would
        # deadlock and wait out deadlock_timeout.
        for out in sorted(batch, key=_lock_order):
            msg, t = out.msg, out.msg.tenant_id
            seq = tx.allocate_now(msg.conversation_id, tenant_id=t)  # no coroutine per message
            if seq is None:
                seq = await tx.allocate(msg.conversation_id, tenant_id=t)
            msg.seq = seq
            if msg.session_type == SINGLE:
                if seq == 1:
                    await open_single(tx.db, t, msg.conversation_id, msg.send_id,
                                      msg.recv_id, msg.send_time)
                elif may_collide(msg.send_id, msg.recv_id) and await owned_by_others(
                        tx.db, t, msg.conversation_id, msg.send_id, msg.recv_id):
                    # After the allocation, which holds the counter's row lock on
                    # PostgreSQL: a pair that opened it concurrently has committed by then.
                    raise BadArgument(
                        f"{msg.conversation_id} is the conversation of two other users "
                        f"(user IDs with '_' make single chat IDs ambiguous)")
            rows.append(msg)
            stored = out.wire
            stored["seq"] = seq
            tx.after(out.after, {k: stored[k] for k in _event_fields(out.after)}, ctx=out.ctx)
            offline = (pusher.offline_event(t, stored, out.recipients) if out.offline_here
                       else None)
            if offline is not None:
                tx.after(AFTER_OFFLINE, offline, ctx=out.ctx)
        await tx.insert(INSERT_MESSAGE, rows)
        tx.on_commit(lambda: self._stored(batch))

    def _stored(self, batch: list[Outgoing]) -> None:
        """After the commit: push, then answer every send."""
        try:
            self._hub.pusher.messages_stored(batch)
        except Exception:  # committed: the senders must hear so all the same
            log.exception("push of %d stored messages failed", len(batch))
        for out in batch:
            _answer(out, ack(out.wire), None)


# An after-send event's fields by hook name: the hook's, and the conversation's ID. By
# name: a Hook is a frozen dataclass, whose hash is computed from all its fields each time.
_EVENT_FIELDS: dict[str, tuple[str, ...]] = {}


def _event_fields(hk: Hook) -> tuple[str, ...]:
    found = _EVENT_FIELDS.get(hk.name)
    if found is None:
        found = _EVENT_FIELDS[hk.name] = (*hk.fields, "conversationID")
    return found


def _lock_order(out: Outgoing) -> tuple[str, str]:
    return (out.msg.tenant_id, out.msg.conversation_id)


def _answer(out: Outgoing, answer: Answer | None, exc: BaseException | None) -> None:
    try:
        out.done(answer, exc)
    except Exception:
        log.exception("answering send %s failed", out.msg.client_msg_id,
                      extra={"operationID": out.ctx.operation_id})
