"""Pushing a stored chat message: to live connections, and offline for the rest.

After the commit of a message (in commit order, from the committer's post-commit work):

- Online: `Signals.messages_stored` hands the message to the gateway for every
  recipient (single chat: recipient and sender; group: every member), the sending
  connection excepted. When a beforeOnlinePush handler wants the hook, the push to
  the other users waits for it in a background task and goes to the `userIDList` it
  answers (narrowing only: a user it adds is ignored); a deny pushes to nobody but the
  sender's own devices, which always get it at once.
- Offline: recipients other than the sender with no live connection (`hub.presence`)
  go through beforeOfflinePush, which may change `userIDList` (again narrowing only,
  so a backend cannot send a message to someone outside the conversation) and
  `offlinePushInfo`, or veto. Then an afterOfflinePush event carrying both is written
  through `hub.write`: the durable outbox row a push provider consumes. A changed
  `offlinePushInfo` that is not `{title, desc, ex}` strings is ignored (logged).

When no beforeOfflinePush handler would be called, the send writes the afterOfflinePush
event in the message's own transaction (`offline_event`, with the recipients offline
at that moment): one commit per message instead of two, and the event is as durable as
the message. Otherwise the offline part runs as a background task after the commit, so
that the sender's ack does not wait for a push hook; tasks are kept and `drain()`ed
when the hub closes. An offline push decided there is lost if the process dies between
the message's commit and the afterOfflinePush write (the message itself is not: the
recipient syncs it by seq on the next connection).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine, Iterable
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import ValidationError

from ..bus import Hook, hook
from ..bus.bus import Drop
from ..context import Ctx
from ..errors import ApiError
from ._schema import Req, Text

if TYPE_CHECKING:
    from ..core import Hub
    from ..tx import Tx

Origin = tuple[str, int, str]
Msg = dict[str, Any]


# The sending connection of gathered messages, and each user's share of them.
_Gathering = tuple[Origin | None, dict[str, list[Msg]]]


class Sent(Protocol):
    """A committed send (hub/domain/send_queue.py's Outgoing)."""

    ctx: Ctx
    wire: Msg
    recipients: list[str]
    origin: Origin | None
    offline_here: bool  # its afterOfflinePush was written with it

BEFORE_ONLINE = hook("beforeOnlinePush")
BEFORE_OFFLINE = hook("beforeOfflinePush")
AFTER_OFFLINE = hook("afterOfflinePush")

log = logging.getLogger("imhub.push")


class OfflinePushInfo(Req):
    title: Text = ""
    desc: Text = ""
    ex: Text = ""


def _push_payload(msg: Msg, user_ids: list[str]) -> dict[str, Any]:
    return {"userIDList": user_ids, **{k: msg[k] for k in AFTER_OFFLINE.fields
                                       if k != "userIDList"},
            "conversationID": msg["conversationID"]}


class Pusher:
    def __init__(self, hub: Hub) -> None:
        self._hub = hub
        self._tasks: set[asyncio.Task[None]] = set()

    def offline_event(self, tenant_id: str, msg: Msg, recipients: Iterable[str]
                      ) -> dict[str, Any] | None:
        """The afterOfflinePush event of `msg` for its recipients offline now, to be
        written with the message when no beforeOfflinePush handler would see it; None
        when everyone is online."""
        sender, is_online = msg["sendID"], self._hub.presence.is_online
        offline = [u for u in dict.fromkeys(recipients)
                   if u != sender and not is_online(tenant_id, u)]
        if not offline:
            return None
        payload = _push_payload(msg, offline)
        info = OfflinePushInfo.model_validate(payload.get("offlinePushInfo") or {})
        return {**payload, "offlinePushInfo": info.model_dump()}

    def messages_stored(self, sent: Iterable[Sent]) -> None:
        """Push committed chat messages, in commit order, to their recipients, the sender
        included, and start their offline pushes (unless written with them).

        The messages of one sending connection (over HTTP: of one sender) go to each
        user in one frame, until a message of one of their conversations comes from
        another: then what is gathered leaves first, so a conversation's messages arrive
        in seq order."""
        gathered: dict[tuple[str, Origin | str], _Gathering] = {}
        # (tenant, conversation) -> the gathering that holds its messages
        owner: dict[tuple[str, str], tuple[str, Origin | str]] = {}
        hooked: dict[str, bool] = {}  # tenant -> whether beforeOnlinePush is asked
        for s in sent:
            msg, t = s.wire, s.ctx.tenant_id
            online_hook = hooked.get(t)
            if online_hook is None:
                online_hook = hooked[t] = self._hooked(BEFORE_ONLINE, t)
            users = self._direct(s.ctx, msg, s.recipients, s.origin, s.offline_here,
                                 online_hook)
            if not users:
                continue
            key = (t, s.origin or msg["sendID"])
            conv = (t, msg["conversationID"])
            if owner.setdefault(conv, key) != key:
                self._send_gathered(gathered)
                gathered.clear()
                owner = {conv: key}
            found = gathered.get(key)
            if found is None:
                found = gathered[key] = (s.origin, {})
            by_user = found[1]
            for u in users:
                mine = by_user.get(u)
                if mine is None:
                    by_user[u] = [msg]
                else:
                    mine.append(msg)
        self._send_gathered(gathered)

    def _send_gathered(self, gathered: dict[tuple[str, Origin | str], _Gathering]) -> None:
        for (t, _), (origin, by_user) in gathered.items():
            # Users given the same messages share one list: the gateway encodes it once.
            lists: dict[tuple[int, ...], list[Msg]] = {}
            for u, msgs in by_user.items():
                by_user[u] = lists.setdefault(tuple(map(id, msgs)), msgs)
            self._hub.signals.messages_stored(t, by_user, origin)

    def _direct(self, ctx: Ctx, msg: Msg, recipients: Iterable[str], origin: Origin | None,
                offline_written: bool, online_hook: bool) -> list[str]:
        """The users `msg` goes to now; what waits for a push hook starts in a task."""
        users = list(dict.fromkeys(recipients))
        if offline_written and not online_hook:
            return users  # the common case: nothing to ask, the offline push written
        hub, t = self._hub, ctx.tenant_id
        sender = msg["sendID"]
        others = [u for u in users if u != sender]
        hooked = bool(others) and online_hook
        # Who is online matters only to an online-push hook and to the offline push; the
        # send usually wrote the offline push already and asked presence then.
        online = (hub.presence.online_user_ids(t, others)
                  if hooked or (others and not offline_written) else set())
        direct = users
        if online and hooked:
            self._spawn(self._online(ctx, msg, [u for u in others if u in online], origin))
            direct = [sender] if sender in users else []
        if not offline_written:
            offline = [u for u in others if u not in online]
            if offline:
                self._spawn(self._offline(ctx, msg, offline))
        return direct

    async def drain(self) -> None:
        """Wait for pushes in flight (shutdown, tests)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def _hooked(self, hk: Hook, tenant_id: str) -> bool:
        # Not known yet (a webhook config not read) counts as hooked: the hook decides.
        return self._hub.bus.calls_before_now(hk, tenant_id) is not False

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _verdict(self, ctx: Ctx, hk: Hook, msg: Msg, user_ids: list[str]
                       ) -> dict[str, Any] | None:
        """The hook's folded payload with userIDList narrowed, or None for a veto."""
        payload = _push_payload(msg, user_ids)
        try:
            out = await self._hub.bus.before(hk, ctx.tenant_id, ctx.operation_id, payload)
        except ApiError as exc:
            log.info("%s vetoed the push of %s: %s", hk.name, msg["serverMsgID"], exc.msg,
                     extra={"operationID": ctx.operation_id})
            return None
        assert not isinstance(out, Drop)  # push hooks are not message hooks
        if out is payload:
            return payload
        answered = out.get("userIDList")
        keep = set(answered) if isinstance(answered, list) else set(user_ids)
        out["userIDList"] = [u for u in user_ids if u in keep]
        return out

    async def _online(self, ctx: Ctx, msg: Msg, online: list[str],
                      origin: Origin | None) -> None:
        out = await self._verdict(ctx, BEFORE_ONLINE, msg, online)
        if out and out["userIDList"]:
            self._hub.signals.messages_stored(
                ctx.tenant_id, {u: [msg] for u in out["userIDList"]}, origin)

    async def _offline(self, ctx: Ctx, msg: Msg, offline: list[str]) -> None:
        try:
            out = await self._verdict(ctx, BEFORE_OFFLINE, msg, offline)
            if not out or not out["userIDList"]:
                return
            try:
                info = OfflinePushInfo.model_validate(out.get("offlinePushInfo") or {})
            except ValidationError:
                log.warning("beforeOfflinePush answered a bad offlinePushInfo; kept the "
                            "message's", extra={"operationID": ctx.operation_id})
                info = OfflinePushInfo.model_validate(msg["offlinePushInfo"])
            event = {**out, "offlinePushInfo": info.model_dump()}

            async def write(tx: Tx) -> None:
                tx.after(AFTER_OFFLINE, event)

            await self._hub.write(ctx, write, orm=False, changes_checks=False)
        except Exception:
            log.exception("offline push of %s failed", msg["serverMsgID"],
                          extra={"operationID": ctx.operation_id})
