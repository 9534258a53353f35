"""The conversation layer: where synced messages land. It stores each batch with the
conversation's synced seq, then tells the listeners about the messages that are new."""

from __future__ import annotations

from .listener import Dispatcher
from .models import Message
from .store import LocalStore


class Conversations:
    def __init__(self, store: LocalStore, dispatcher: Dispatcher, user_id: str) -> None:
        self.store = store
        self._dispatcher = dispatcher
        self._user_id = user_id
        # clientMsgIDs this SDK is sending: they are answered by send_message, so the
        # listeners do not hear them a second time when they come back by sync.
        self.sending: set[str] = set()

    async def apply(self, conversation_id: str, msgs: list[Message], synced_seq: int) -> None:
        for m in await self.store.save(conversation_id, msgs, synced_seq):
            if m.send_id == self._user_id and m.client_msg_id in self.sending:
                self.sending.discard(m.client_msg_id)
                continue
            event = "on_new_notification" if m.is_notification else "on_new_message"
            await self._dispatcher.emit(event, m)
