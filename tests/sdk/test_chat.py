"""`imhub chat` against the real server: in-process with a scripted console, and as the
real command reading a piped stdin."""

from __future__ import annotations

import asyncio
import io
import shutil
import sys
from collections.abc import AsyncIterator
from pathlib import Path

from rich.console import Console

from hub.sdk.chat import run_chat
from tests.conftest import TenantHandle
from tests.sdk.conftest import ClientFactory, eventually


async def test_chat_session(sqlite_tenant: TenantHandle, make_client: ClientFactory,
                            tmp_path: Path) -> None:
    srv, admin = sqlite_tenant.server, sqlite_tenant.admin
    alice_tok, bob_tok = await sqlite_tenant.users("alice", "bob")
    await srv.ok("/group/create_group", {"ownerUserID": "alice", "memberUserIDs": ["bob"],
                                         "groupInfo": {"groupID": "g1", "groupName": "team"}},
                 admin)
    bob, bob_rec = await make_client(srv, "bob", bob_tok)
    out = io.StringIO()
    console = Console(file=out, width=200, color_system=None, highlight=False)
    lines: asyncio.Queue[str | None] = asyncio.Queue()

    async def typed() -> AsyncIterator[str]:
        while (line := await lines.get()) is not None:
            yield line

    async def shows(text: str) -> bool:
        return text in out.getvalue()

    chat = asyncio.create_task(run_chat(
        api_addr=srv.base_url, user_id="alice", token=alice_tok, platform_id=1,
        data_dir=tmp_path / "chat", console=console, lines=typed()))
    await eventually(lambda: shows("logged in as alice"))

    lines.put_nowait("/to bob hello bob\n")
    await bob_rec.wait_for(lambda: any(m.text == "hello bob" for m in bob_rec.messages))
    lines.put_nowait("and again\n")  # plain text goes to whoever was last written to
    await bob_rec.wait_for(lambda: any(m.text == "and again" for m in bob_rec.messages))
    lines.put_nowait("/group g1 hi team\n")
    await bob_rec.wait_for(lambda: any(m.group_id == "g1" and m.text == "hi team"
                                       for m in bob_rec.messages))

    await bob.send_text("hey alice", recv_id="alice")
    await eventually(lambda: shows("bob: hey alice"))
    await srv.ok("/friend/add_friend", {"fromUserID": "bob", "toUserID": "alice"}, admin)
    await eventually(lambda: shows("* Friend application"))

    lines.put_nowait("/list\n")
    await eventually(lambda: shows("si_alice_bob"))
    lines.put_nowait("/history si_alice_bob 5\n")
    lines.put_nowait("/to nobody where are you\n")
    await eventually(lambda: shows("refused (1004)"))
    lines.put_nowait("/nonsense\n")
    await eventually(lambda: shows("unknown command /nonsense"))
    lines.put_nowait("/quit\n")
    assert await chat == 0
    assert out.getvalue().count("-> bob") >= 2  # alice's own sends, echoed with their ack


async def test_imhub_chat_command_reads_stdin(sqlite_tenant: TenantHandle,
                                              make_client: ClientFactory,
                                              tmp_path: Path) -> None:
    srv = sqlite_tenant.server
    alice_tok, bob_tok = await sqlite_tenant.users("alice", "bob")
    _, bob_rec = await make_client(srv, "bob", bob_tok)
    imhub = shutil.which("imhub", path=str(Path(sys.executable).parent))
    assert imhub, "the imhub console script is not installed in this environment"
    proc = await asyncio.create_subprocess_exec(
        imhub, "chat", "--api", srv.base_url, "--user", "alice", "--token", alice_tok,
        "--platform", "1", "--data-dir", str(tmp_path / "cli"),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    assert proc.stdin is not None
    proc.stdin.write(b"/to bob from the terminal\n")
    await proc.stdin.drain()
    await bob_rec.wait_for(lambda: any(m.text == "from the terminal"
                                       for m in bob_rec.messages), within=20)
    proc.stdin.write(b"/quit\n")
    await proc.stdin.drain()
    stdout, stderr = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 0, stderr.decode()
    assert "logged in as alice" in stdout.decode()
