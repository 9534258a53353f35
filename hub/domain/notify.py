"""Notifications (sessionType 4): every relation, group and user change is stored as a
message in `n_USERID` of each user it concerns, in the transaction of the change, and
pushed to that user's devices after the commit, so every device syncs by seq."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import orjson
from sqlalchemy import select

from ..clock import new_id, now_ms
from ..db.models import Friend, User
from ..wire_types import NotificationType, notification_conversation_id
from .drafts import INSERT_MESSAGE, Draft
from .wire import message_to_wire

if TYPE_CHECKING:
    from ..core import Hub
    from ..tx import Tx

SESSION_NOTIFICATION = 4

# The short name the domain modules use for notification content types.
NT = NotificationType


class Notifier:
    def __init__(self, hub: Hub) -> None:
        self._hub = hub

    async def send(self, tx: Tx, user_ids: Iterable[str], content_type: NT,
                   tips: dict[str, Any], *, send_id: str = "", group_id: str = "") -> None:
        """Store one notification per user and push it to their devices after the commit.

        The content follows OpenIM: `{"detail": "<tips as JSON>"}`.
        """
        tenant_id = tx.ctx.tenant_id
        content = orjson.dumps({"detail": orjson.dumps(tips).decode()}).decode()
        now = now_ms()
        by_user: dict[str, list[dict[str, Any]]] = {}
        rows: list[Draft] = []
        # Sorted, so that concurrent transactions lock seq rows in one order (no deadlock).
        for uid in sorted(set(user_ids)):
            conv = notification_conversation_id(uid)
            seq = await tx.allocate(conv)
            draft = Draft(
                tenant_id=tenant_id, conversation_id=conv, seq=seq,
                server_msg_id=new_id("srv"), client_msg_id=new_id("ntf"),
                send_id=send_id or tx.ctx.actor.op_user(), recv_id=uid, group_id=group_id,
                session_type=SESSION_NOTIFICATION, content_type=int(content_type),
                content=content, send_time=now, status=2, sender_platform_id=0,
                sender_nickname="", offline_push_info="", at_user_ids="", ex="")
            rows.append(draft)
            by_user.setdefault(uid, []).append(message_to_wire(draft))
        if rows:
            await tx.insert(INSERT_MESSAGE, rows)
            signals = self._hub.signals
            tx.on_commit(lambda: signals.messages_stored(tenant_id, by_user))

    async def user_info_updated(self, tx: Tx, user: User) -> None:
        """1303 to the user's own devices and to everyone who has them as a friend."""
        friends = (await tx.session.execute(select(Friend.owner_user_id).where(
            Friend.tenant_id == user.tenant_id,
            Friend.friend_user_id == user.user_id))).scalars().all()
        await self.send(tx, [user.user_id, *friends], NT.USER_INFO_UPDATED,
                        {"userID": user.user_id}, send_id=user.user_id)
