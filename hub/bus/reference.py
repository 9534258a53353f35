"""The hook catalogue rendered as Markdown for docs/hooks.md (kept true by a test)."""

from __future__ import annotations

import json
from typing import Any

from .catalogue import HOOKS, Hook

_EXAMPLES: dict[str, Any] = {
    "userID": "alice", "fromUserID": "alice", "toUserID": "bob", "ownerUserID": "alice",
    "friendUserID": "bob", "blackUserID": "mallory", "sendID": "alice", "recvID": "bob",
    "groupID": "", "serverMsgID": "srv_0193a1b2c3d4e5f60718293a4b5c6d7e8f90",
    "clientMsgID": "c6f1d9a2", "sessionType": 1, "contentType": 101,
    "content": "{\"content\": \"hello\"}", "seq": 42, "sendTime": 1764259200000,
    "senderPlatformID": 1, "senderNickname": "Alice", "atUserIDList": [],
    "offlinePushInfo": {"title": "Alice", "desc": "hello", "ex": ""}, "ex": "",
    "nickname": "Alice", "faceURL": "https://cdn.example/alice.png", "reqMsg": "hi, it's Alice",
    "handleResult": 1, "handleMsg": "welcome", "remark": "Ally", "platformID": 1,
    "connID": "c1f2", "reason": "", "conversationID": "si_alice_bob", "seqs": [41, 42],
    "revokerUserID": "alice", "groupName": "Hiking", "notification": "Sat 8am",
    "introduction": "Weekend hikes", "needVerification": 0, "status": 0,
    "memberUserIDs": ["bob", "carol"], "adminUserIDs": ["bob"], "opUserID": "alice",
    "reqMessage": "let me in", "joinSource": 3, "inviterUserID": "", "userIDs": ["dave"],
    "handledMsg": "ok", "invitedUserIDs": ["dave", "erin"], "kickedUserIDs": ["erin"],
    "oldOwnerUserID": "alice", "newOwnerUserID": "bob", "roleLevel": 20, "muted": True,
    "mutedSeconds": 3600, "muteEndTime": 1764262800000, "userIDList": ["bob"],
    "users": [{"userID": "alice", "nickname": "Alice", "faceURL": "", "ex": ""}],
}


def example_payload(h: Hook) -> dict[str, Any]:
    payload = {f: _EXAMPLES.get(f, "") for f in h.fields}
    if h.area == "group" and "groupID" in payload:
        payload["groupID"] = "g_hiking"
    if "sessionType" in payload and h.name.endswith(("GroupMsg", "GroupMsgRevoke")):
        payload.update(sessionType=3, recvID="", groupID="g_hiking")
    return payload


def render() -> str:
    out: list[str] = []
    area = ""
    for h in HOOKS.values():
        if h.area != area:
            area = h.area
            out.append(f"\n### {area}\n")
        out.append(f"#### {h.name}\n")
        out.append(f"- callbackCommand: `{h.callback_command}`")
        out.append(f"- phase: {h.phase}; ordering key: `{h.key}`")
        if h.is_before:
            may = ", ".join(f"`{f}`" for f in sorted(h.mutable)) or "nothing (allow or deny)"
            out.append(f"- may change: {may}")
            if h.messages:
                out.append("- may drop (messages only); `deniedTypes` apply")
        if h.text_fields:
            out.append(f"- text fields (word filter): {', '.join(h.text_fields)}")
        out.append("\n```json")
        out.append(json.dumps(example_payload(h), indent=2, ensure_ascii=False))
        out.append("```\n")
    return "\n".join(out).strip() + "\n"


def write(path: str) -> None:
    """Replace the generated section of `path` (between the catalogue markers)."""
    from pathlib import Path

    doc = Path(path)
    head, rest = doc.read_text().split(_START, 1)
    tail = rest.split(_END, 1)[1]
    doc.write_text(f"{head}{_START}{render()}{_END}{tail}")


_START, _END = "<!-- catalogue:start -->\n", "<!-- catalogue:end -->"

if __name__ == "__main__":
    import sys

    if len(sys.argv) == 3 and sys.argv[1] == "--write":
        write(sys.argv[2])
    else:
        print(render())
