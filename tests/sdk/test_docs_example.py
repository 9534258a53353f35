"""The example program in docs/sdk.md runs as written against a real server."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from hub.sdk import Listener, Message
from tests.conftest import TenantHandle
from tests.sdk.conftest import ClientFactory

DOC = Path(__file__).resolve().parents[2] / "docs" / "sdk.md"


def example_source() -> str:
    return DOC.read_text().split("```python\n", 1)[1].split("```", 1)[0]


async def test_docs_example_runs(sqlite_tenant: TenantHandle, make_client: ClientFactory,
                                 tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    srv = sqlite_tenant.server
    await sqlite_tenant.users("alice", "bob")
    await sqlite_tenant.befriend("alice", "bob")
    alice_tok = await sqlite_tenant.login("alice", 7)
    bob, _ = await make_client(srv, "bob", sqlite_tenant.tokens["bob"])

    class Echo(Listener):
        async def on_new_message(self, msg: Message) -> None:
            await bob.send_text(f"re: {msg.text}", recv_id=msg.send_id)

    bob.add_listener(Echo())
    namespace: dict[str, Any] = {"__name__": "example"}
    exec(compile(example_source(), str(DOC), "exec"), namespace)
    await namespace["main"](srv.base_url, "alice", alice_tok, "bob", str(tmp_path / "ex"))

    out = capsys.readouterr().out
    assert "connection connected" in out
    assert "notification 1204" in out  # FriendAdded, synced at login
    assert "sent as seq 1 " in out
    assert "si_alice_bob #2 bob: re: hello" in out
    assert "history: 1 alice hello" in out and "history: 2 bob re: hello" in out
    assert "friends: ['bob']" in out
    assert "connection closed" in out
