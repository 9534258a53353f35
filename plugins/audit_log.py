"""Every committed after-event as one JSON line (its webhook body) appended to a file.

The event loop only serialises and enqueues; a writer thread appends what has queued up
since its last write and flushes, so a slow disk never stalls requests and a burst of
events costs one write. The file is opened at start-up and closed at shutdown, after
the lines still queued are written. Lines are flushed to the OS, not fsynced: the outbox
table, not this file, is what survives a crash.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import queue
import threading
from pathlib import Path
from typing import IO

import orjson
from pydantic import Field, field_validator

from hub.bus import AfterEvent
from hub.plugin import Plugin, PluginConfig

log = logging.getLogger("imhub.plugins.audit_log")


class AuditLogConfig(PluginConfig):
    path: str = Field(min_length=1)

    @field_validator("path")
    @classmethod
    def _writable(cls, path: str) -> str:
        # Checked here, not when the file is opened, so a bad path stops start-up with the
        # plugin's name and key instead of failing later inside the server.
        p = Path(path)
        if p.is_dir():
            raise ValueError(f"{path} is a directory")
        parent = p.parent if str(p.parent) else Path(".")
        if not parent.is_dir():
            raise ValueError(f"directory {parent} does not exist")
        if not os.access(p if p.exists() else parent, os.W_OK):
            raise ValueError(f"{path} is not writable")
        return path


class _Barrier:
    """Queued behind lines; set once the lines before it are written."""

    __slots__ = ("done", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.done: asyncio.Future[None] = loop.create_future()

    def release(self) -> None:
        # A closed loop raises RuntimeError: nobody is waiting any more.
        with contextlib.suppress(RuntimeError):
            self.loop.call_soon_threadsafe(_resolve, self.done)


_STOP = object()


class AuditLog(Plugin):
    Config = AuditLogConfig

    def __init__(self, config: PluginConfig) -> None:
        if not isinstance(config, AuditLogConfig):
            raise TypeError("AuditLog takes an AuditLogConfig")
        super().__init__(config)
        self.path = Path(config.path)
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    async def start(self) -> None:
        file = await asyncio.to_thread(open, self.path, "ab")
        self._thread = threading.Thread(target=self._write_loop, args=(file,),
                                        name="imhub-audit-log", daemon=True)
        self._thread.start()

    async def after(self, event: AfterEvent) -> None:
        if self._thread is None:
            raise RuntimeError("AuditLog is not started")
        self._queue.put(orjson.dumps(event.body()) + b"\n")

    async def flush(self) -> None:
        """Wait until every line handed over so far is written and flushed."""
        if self._thread is None:
            return
        barrier = _Barrier(asyncio.get_running_loop())
        self._queue.put(barrier)
        await barrier.done

    async def close(self) -> None:
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._queue.put(_STOP)
        await asyncio.to_thread(thread.join)

    def _write_loop(self, file: IO[bytes]) -> None:
        try:
            while True:
                batch = [self._queue.get()]
                while True:
                    try:
                        batch.append(self._queue.get_nowait())
                    except queue.Empty:
                        break
                lines = [item for item in batch if isinstance(item, bytes)]
                if lines:
                    self._write(file, lines)
                for item in batch:
                    if isinstance(item, _Barrier):
                        item.release()
                if _STOP in batch:
                    return
        finally:
            file.close()

    def _write(self, file: IO[bytes], lines: list[bytes]) -> None:
        try:
            file.write(b"".join(lines))
            file.flush()
        except Exception:
            # A full disk must not kill the writer: later lines may still fit, and a dead
            # writer would leave flush() and close() waiting.
            log.exception("audit log %s: %d lines lost", self.path, len(lines))


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)
