"""MsgSync, the message syncer.

It owns the local max seq of every conversation (the seq up to which the local store
holds everything) and reads PushMsgAndMaxSeqCh:

- the server's max seqs (from the heartbeat, or from the ack of this client's own
  send): every conversation whose server max is above the local one is pulled (1002)
  from local max + 1;
- pushed messages: one whose seq is local max + 1 is applied at once; one further ahead
  first has the gap [local max + 1, seq - 1] pulled; one at or below local max is a
  duplicate and is dropped.

Messages reach the conversation layer strictly in seq order per conversation, each once.
A pull that fails (connection lost) drops its item: nothing after the gap is applied,
and the next heartbeat (the first one of a new connection at the latest) finds it again.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

from .channel import PushedMsgs, PushMsgAndMaxSeqCh, ServerMaxSeqs, SyncItem
from .errors import SDKError
from .models import Message, SeqRange, messages_from_wire
from .protocol import ReqIdentifier
from .ws import Ws

log = logging.getLogger("imhub.sdk.sync")

# conversationID, messages in seq order (new or not), and the seq the store now holds
# everything up to.
ConversationSink = Callable[[str, list[Message], int], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class SyncProgress:
    """A full sync's progress: `done` of `total` seqs pulled; `finished` at the end,
    with `error` set when it stopped early (the next heartbeat resumes it)."""

    done: int
    total: int
    finished: bool = False
    error: BaseException | None = None


ProgressSink = Callable[[SyncProgress], Awaitable[None]]


class MsgSync:
    def __init__(self, ws: Ws, ch: PushMsgAndMaxSeqCh, sink: ConversationSink,
                 local_max: dict[str, int], *, progress: ProgressSink | None = None,
                 pull_chunk: int = 100, ranges_per_pull: int = 5) -> None:
        self.ws = ws
        self.ch = ch
        self.local_max = local_max
        self._sink = sink
        self._progress = progress
        self._chunk = pull_chunk
        self._per_pull = ranges_per_pull
        self.pulls = 0  # requests made; lets a caller see that a gap was fetched

    async def run(self) -> None:
        while True:
            items = [await self.ch.get()]
            while not self.ch.empty():
                items.append(self.ch.get_nowait())
            try:
                await self.handle(items)
            except Exception:
                log.exception("sync failed")

    async def handle(self, items: list[SyncItem]) -> None:
        """Handle what the channel held: the pushes in order, then the max seqs merged
        into one (a burst of acks or beats becomes one pull, not one each). Order between
        the two does not matter: either way only contiguous seqs are applied."""
        hints = [i for i in items if isinstance(i, ServerMaxSeqs)]
        cut: SDKError | None = None  # why the pull of the max seqs stopped short
        try:
            for item in items:
                if isinstance(item, PushedMsgs):
                    await self._guard(self._on_push(item.msgs))
            if hints:
                try:
                    await self._on_max_seqs(_merge(hints))
                except SDKError as exc:
                    log.info("sync interrupted, the next heartbeat resumes it: %r", exc)
                    cut = exc
        finally:
            # A caller waiting for this sync (IMClient.sync) learns whether it caught up.
            for h in hints:
                if h.done is not None and not h.done.done():
                    if cut is None:
                        h.done.set_result(None)
                    else:
                        h.done.set_exception(cut)

    @staticmethod
    async def _guard(step: Awaitable[None]) -> None:
        try:
            await step
        except SDKError as exc:
            log.info("sync interrupted, the next heartbeat resumes it: %r", exc)

    async def _on_push(self, msgs: dict[str, list[Message]]) -> None:
        for conv, items in msgs.items():
            batch: list[Message] = []
            for m in sorted({m.seq: m for m in items}.values(), key=lambda m: m.seq):
                expected = self.local_max.get(conv, 0) + len(batch) + 1
                if m.seq < expected:
                    continue
                if m.seq > expected:
                    await self._flush(conv, batch)
                    batch = []
                    await self._pull([SeqRange(conv, expected, m.seq - 1)])
                batch.append(m)
            await self._flush(conv, batch)

    async def _flush(self, conv: str, batch: list[Message]) -> None:
        if batch:
            await self._apply(conv, batch, batch[-1].seq)

    async def _on_max_seqs(self, item: ServerMaxSeqs) -> None:
        ranges: list[SeqRange] = []
        for conv, server_max in item.max_seqs.items():
            local = self.local_max.get(conv, 0)
            begin = max(local + 1, item.min_seqs.get(conv, 0), 1)
            if server_max >= begin:
                ranges.append(SeqRange(conv, begin, server_max))
        if not ranges and not item.report:
            return
        await self._pull(ranges, report=item.report)

    async def _pull(self, ranges: Iterable[SeqRange], *, report: bool = False) -> None:
        batches = _batches(_chunks(ranges, self._chunk), self._per_pull)
        progress = self._progress if report else None
        total = sum(r.end - r.begin + 1 for batch in batches for r in batch)
        if progress is not None:
            await progress(SyncProgress(0, total, finished=not batches))
        done = 0
        try:
            for batch in batches:
                await self._pull_batch(batch)
                done += sum(r.end - r.begin + 1 for r in batch)
                if progress is not None:
                    await progress(SyncProgress(done, total, finished=done == total))
        except SDKError as exc:
            if progress is not None:
                await progress(SyncProgress(done, total, finished=True, error=exc))
            raise

    async def _pull_batch(self, batch: list[SeqRange]) -> None:
        self.pulls += 1
        data = await self.ws.send_req_wait_resp(
            ReqIdentifier.PULL_MSG_BY_SEQ_LIST, {"seqRanges": [r.to_wire() for r in batch]})
        got = messages_from_wire((data or {}).get("msgs"))
        # A batch holds consecutive chunks, so one conversation's chunks in it are
        # contiguous and start at its local max + 1.
        spans: dict[str, tuple[int, int]] = {}
        for r in batch:
            begin, end = spans.get(r.conversation_id, (r.begin, r.end))
            spans[r.conversation_id] = (min(begin, r.begin), max(end, r.end))
        for conv, (begin, end) in spans.items():
            msgs = list({m.seq: m for m in got.get(conv, []) if begin <= m.seq <= end}
                        .values())
            if len(msgs) < end - begin + 1:
                # Seqs the server does not show this user (e.g. before they joined a group)
                # are passed over, or they would be asked for forever.
                log.debug("pull %s [%d, %d] returned %d", conv, begin, end, len(msgs))
            await self._apply(conv, msgs, end)

    async def _apply(self, conv: str, msgs: list[Message], synced: int) -> None:
        if synced <= self.local_max.get(conv, 0):
            return
        await self._sink(conv, msgs, synced)
        self.local_max[conv] = synced


def _merge(hints: list[ServerMaxSeqs]) -> ServerMaxSeqs:
    max_seqs: dict[str, int] = {}
    min_seqs: dict[str, int] = {}
    for h in hints:
        for conv, seq in h.max_seqs.items():
            max_seqs[conv] = max(seq, max_seqs.get(conv, 0))
        for conv, seq in h.min_seqs.items():
            min_seqs[conv] = max(seq, min_seqs.get(conv, 0))
    return ServerMaxSeqs(max_seqs, min_seqs, report=any(h.report for h in hints))


def _chunks(ranges: Iterable[SeqRange], size: int) -> list[SeqRange]:
    out: list[SeqRange] = []
    for r in ranges:
        for begin in range(r.begin, r.end + 1, size):
            out.append(SeqRange(r.conversation_id, begin, min(begin + size - 1, r.end)))
    return out


def _batches(chunks: list[SeqRange], size: int) -> list[list[SeqRange]]:
    return [chunks[i:i + size] for i in range(0, len(chunks), size)]
