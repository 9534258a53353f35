"""`imhub chat`: a small terminal chat client on the SDK.

Commands: `/to USER text`, `/group GROUP text`, plain text (to whoever you last wrote to),
`/list`, `/history CONVERSATION [N]`, `/help`, `/quit`. Incoming messages and
notifications are printed as they arrive.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import threading
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit

from rich.console import Console
from rich.markup import escape

from .client import IMClient, init_sdk
from .config import Config
from .errors import SDKError, ServerError
from .listener import ConnState, Listener
from .models import ContentType, Message, NotificationType, SessionType

HELP = """\
[bold]/to[/] USER text        send to a user
[bold]/group[/] GROUP text    send to a group
text                  send to whoever you last wrote to
[bold]/list[/]                conversations
[bold]/history[/] CONV [N]    the last N messages of a conversation
[bold]/quit[/]                leave (Ctrl-D too)"""


def default_data_dir(api_addr: str) -> Path:
    return Path.home() / ".imhub" / "chat" / urlsplit(api_addr).netloc.replace(":", "_")


def describe(msg: Message, me: str) -> str:
    """One line of rich markup for a message."""
    when = datetime.fromtimestamp(msg.send_time / 1000).strftime("%H:%M:%S")
    if msg.is_notification:
        try:
            kind = NotificationType(msg.content_type).name.replace("_", " ").capitalize()
        except ValueError:
            kind = f"notification {msg.content_type}"
        return f"[dim]{when}[/] [yellow]* {escape(kind)}[/] [dim]{escape(str(msg.detail))}[/]"
    text = msg.text
    if text is None:
        try:
            text = f"<{ContentType(msg.content_type).name.lower()}>"
        except ValueError:
            text = f"<{msg.content_type}>"
    who = "you" if msg.send_id == me else msg.send_id
    if msg.session_type == SessionType.GROUP:
        where = f"[magenta]#{escape(msg.group_id)}[/] "
    elif msg.send_id == me:
        where = f"[cyan]-> {escape(msg.recv_id)}[/] "
    else:
        where = ""
    return f"[dim]{when}[/] {where}[bold]{escape(who)}[/]: {escape(text)}"


class _Printer(Listener):
    def __init__(self, chat: Chat) -> None:
        self.chat = chat

    def on_new_message(self, msg: Message) -> None:
        self.chat.console.print(describe(msg, self.chat.me))

    def on_new_notification(self, msg: Message) -> None:
        self.chat.console.print(describe(msg, self.chat.me))

    def on_kicked(self) -> None:
        self.chat.console.print("[red]logged in elsewhere on this platform: session over[/]")
        self.chat.ended.set()

    def on_connection_state(self, state: ConnState, error: BaseException | None) -> None:
        if state is ConnState.CONNECTED:
            self.chat.console.print("[green]connected[/]")
        elif state is ConnState.DISCONNECTED:
            self.chat.console.print("[yellow]connection lost, reconnecting...[/]")
        elif state is ConnState.TOKEN_INVALID:
            self.chat.console.print(f"[red]token refused: {escape(str(error))}[/]")
            self.chat.ended.set()


class Chat:
    """The command loop, separate from stdin so it can be driven by any line source."""

    def __init__(self, client: IMClient, me: str, console: Console) -> None:
        self.client = client
        self.me = me
        self.console = console
        self.target: tuple[str, str] | None = None  # ("user" | "group", ID)
        self.ended = asyncio.Event()
        client.add_listener(_Printer(self))

    async def run(self, lines: AsyncIterator[str]) -> None:
        """Handle lines until /quit, end of input, or the session ends."""
        ended = asyncio.create_task(self.ended.wait())
        try:
            while not self.ended.is_set():
                nxt = asyncio.ensure_future(anext(lines, None))
                await asyncio.wait({nxt, ended}, return_when=asyncio.FIRST_COMPLETED)
                if not nxt.done():
                    nxt.cancel()
                    break
                line = nxt.result()
                if line is None or not await self.handle(line):
                    break
        finally:
            ended.cancel()

    async def handle(self, line: str) -> bool:
        """Run one line; False means quit."""
        line = line.strip()
        if not line:
            return True
        cmd, _, rest = line.partition(" ") if line.startswith("/") else ("", "", line)
        try:
            if cmd in ("/quit", "/exit"):
                return False
            if cmd == "/help":
                self.console.print(HELP)
            elif cmd == "/list":
                await self.show_conversations()
            elif cmd == "/history":
                conv, _, n = rest.strip().partition(" ")
                await self.show_history(conv, int(n) if n.strip().isdigit() else 20)
            elif cmd in ("/to", "/group"):
                dest, _, text = rest.strip().partition(" ")
                if not dest or not text.strip():
                    self.console.print(f"[red]usage: {cmd} ID text[/]")
                    return True
                self.target = ("group" if cmd == "/group" else "user", dest)
                await self.send(text.strip())
            elif cmd:
                self.console.print(f"[red]unknown command {escape(cmd)}; /help lists them[/]")
            elif self.target is None:
                self.console.print("[red]no one to send to yet: /to USER text[/]")
            else:
                await self.send(rest)
        except ServerError as exc:
            self.console.print(f"[red]refused ({exc.err_code}): {escape(exc.err_msg)}[/]")
        except SDKError as exc:
            self.console.print(f"[red]{escape(str(exc))}[/]")
        return True

    async def send(self, text: str) -> None:
        assert self.target is not None
        kind, dest = self.target
        if kind == "group":
            msg = await self.client.send_text(text, group_id=dest)
        else:
            msg = await self.client.send_text(text, recv_id=dest)
        self.console.print(describe(msg, self.me))

    async def show_conversations(self) -> None:
        """The server's list (with unread counts); the local store's when it is out of
        reach."""
        rows: list[tuple[str, str, Message | None]] = []
        try:
            for c in (await self.client.api.get_all_conversations())["conversations"]:
                latest = Message.from_wire(c["latestMsg"]) if c.get("latestMsg") else None
                unread = int(c.get("unreadCount", 0))
                rows.append((c["conversationID"], f"{unread} unread" if unread else "", latest))
        except SDKError:
            rows = [(c.conversation_id, "", c.latest)
                    for c in await self.client.get_local_conversations()]
        if not rows:
            self.console.print("[dim]no conversations yet[/]")
        for conv, note, latest in rows:
            last = describe(latest, self.me) if latest else ""
            self.console.print(f"[bold]{escape(conv)}[/] [dim]{note}[/] {last}")

    async def show_history(self, conversation_id: str, n: int) -> None:
        if not conversation_id:
            self.console.print("[red]usage: /history CONVERSATION [N][/]")
            return
        for m in await self.client.get_history(conversation_id, n):
            self.console.print(describe(m, self.me))


async def stdin_lines() -> AsyncIterator[str]:
    """Lines of stdin, read in a thread so the event loop never blocks on the terminal."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[str | None] = asyncio.Queue()

    def put(item: str | None) -> None:
        with contextlib.suppress(RuntimeError):  # the loop closed first: nobody listens
            loop.call_soon_threadsafe(queue.put_nowait, item)

    def read() -> None:
        for line in sys.stdin:
            put(line)
        put(None)

    threading.Thread(target=read, name="imhub-chat-stdin", daemon=True).start()
    while (line := await queue.get()) is not None:
        yield line


async def run_chat(*, api_addr: str, user_id: str, token: str, platform_id: int,
                   data_dir: str | Path | None = None, console: Console | None = None,
                   lines: AsyncIterator[str] | None = None) -> int:
    """The whole client; returns the exit status."""
    console = console or Console(highlight=False)
    client = init_sdk(Config(platform_id=platform_id, api_addr=api_addr,
                             data_dir=data_dir or default_data_dir(api_addr)))
    chat = Chat(client, user_id, console)
    try:
        await client.login(user_id, token)
    except SDKError as exc:
        console.print(f"[red]cannot log in: {escape(str(exc))}[/]")
        return 1
    try:
        with contextlib.suppress(SDKError, TimeoutError):
            async with asyncio.timeout(10):
                await client.sync()
        console.print(f"logged in as [bold]{escape(user_id)}[/]. /help for commands.")
        await chat.show_conversations()
        await chat.run(lines or stdin_lines())
    finally:
        await client.logout()
    # Kicked or refused: the session ended under the user, which a script should see.
    return 1 if chat.ended.is_set() else 0
