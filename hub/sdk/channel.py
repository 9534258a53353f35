"""PushMsgAndMaxSeqCh: the one channel that drives MsgSync.

Three writers feed it: Ws (pushed messages), Heartbeat (the server's max seqs) and the
client, whose acknowledged sends say "this conversation reaches at least seq N on the
server" (the message is then pulled like anyone's, so the store holds what the server
stored, after any hook changed it). One reader, MsgSync, so the local seqs never see two
writers.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from .models import Message


@dataclass(frozen=True, slots=True)
class PushedMsgs:
    msgs: dict[str, list[Message]]


@dataclass(frozen=True, slots=True)
class ServerMaxSeqs:
    max_seqs: dict[str, int]
    min_seqs: dict[str, int] = field(default_factory=dict)
    # A full resync (login, reconnect, `sync()`) reports its progress; routine beats don't.
    report: bool = False
    # Set once the syncer has handled this item (for callers that wait for a sync).
    done: asyncio.Future[None] | None = None


SyncItem = PushedMsgs | ServerMaxSeqs
PushMsgAndMaxSeqCh = asyncio.Queue[SyncItem]
