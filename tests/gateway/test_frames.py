"""Bad frames get an error reply and the connection goes on; a huge frame closes only its
own connection."""

from __future__ import annotations

import orjson

from tests.conftest import TenantHandle
from tests.gateway._client import Client


async def test_bad_frames_get_1001_and_the_connection_goes_on(
        sqlite_tenant: TenantHandle) -> None:
    t = sqlite_tenant
    tok, _ = await t.users("alice", "bob")
    c = await Client.open(t.server.ws_url, "alice", tok, 1)
    try:
        cases: list[tuple[str | bytes, str, str]] = [
            # frame, msgIncr the reply must echo, words in errMsg
            ("{not json", "", "malformed JSON"),
            ("[1, 2]", "", "JSON object"),
            ('"text"', "", "JSON object"),
            ('{"msgIncr": "m1", "data": {}}', "m1", "reqIdentifier"),
            ('{"reqIdentifier": "1001", "msgIncr": "m2"}', "m2", "reqIdentifier"),
            ('{"reqIdentifier": true, "msgIncr": "m3"}', "m3", "reqIdentifier"),
            ('{"reqIdentifier": 1001}', "", "msgIncr"),
            ('{"reqIdentifier": 1001, "msgIncr": 7}', "", "msgIncr"),
            ('{"reqIdentifier": 4242, "msgIncr": "m4"}', "m4", "unknown request"),
            ('{"reqIdentifier": 1002, "msgIncr": "m5", "data": []}', "m5", "data"),
            ('{"reqIdentifier": 1001, "msgIncr": "m6", "operationID": 5}', "m6",
             "operationID"),
            (b"\x00\x01binary", "", "binary"),
            # Valid frames whose data the request model refuses.
            ('{"reqIdentifier": 1003, "msgIncr": "m7", "data": {"recvID": "bob"}}', "m7",
             "data."),
            ('{"reqIdentifier": 1003, "msgIncr": "m8", "data": {"recvID": "bob", '
             '"sessionType": 1, "contentType": "101", "content": "x"}}', "m8", "contentType"),
            ('{"reqIdentifier": 1002, "msgIncr": "m9", "data": {"seqRanges": 3}}', "m9",
             "seqRanges"),
            ('{"reqIdentifier": 1002, "msgIncr": "m12", "data": {}}', "m12", "seqRanges"),
            ('{"reqIdentifier": 1002, "msgIncr": "m13"}', "m13", "seqRanges"),
            # NUL, which PostgreSQL cannot store, anywhere in the frame; named by its path.
            ('{"reqIdentifier": 1003, "msgIncr": "m10", "data": {"recvID": "bob", '
             '"sessionType": 1, "contentType": 101, "content": "{}", "ex": "a\\u0000"}}',
             "m10", "data.ex: a string must not contain NUL"),
            ('{"reqIdentifier": 1001, "msgIncr": "m11", "operationID": "\\u0000"}', "m11",
             "operationID"),
        ]
        for frame, incr, words in cases:
            if incr:
                fut = c.expect(incr)
                await c.send_raw(frame)
                reply = await fut
            else:
                await c.send_raw(frame)
                reply = await c.next_unmatched()
            assert reply["errCode"] == 1001, (frame, reply)
            assert words in reply["errMsg"], (frame, reply)
            assert reply["msgIncr"] == incr
        ok = await c.send_text("bob", "still here")
        assert ok["errCode"] == 0
    finally:
        await c.close()


async def test_a_frame_over_the_limit_closes_only_its_connection(
        sqlite_tenant: TenantHandle) -> None:
    t = sqlite_tenant
    tok_a, tok_b = await t.users("alice", "bob")
    a = await Client.open(t.server.ws_url, "alice", tok_a, 1)
    b = await Client.open(t.server.ws_url, "bob", tok_b, 1)
    try:
        huge = orjson.dumps({"reqIdentifier": 1003, "msgIncr": "big", "data": {
            "recvID": "bob", "sessionType": 1, "contentType": 101,
            "content": "x" * (1024 * 1024 + 10)}}).decode()
        await a.send_raw(huge)
        code, _ = await a.wait_closed()
        assert code == 1009
        # The server and the other connection go on.
        assert (await b.send_text("alice", "after"))["errCode"] == 0
        await t.server.ok("/user/get_users_info", {"userIDs": ["bob"]}, tok_b)
        a = await Client.open(t.server.ws_url, "alice", tok_a, 1)
        assert (await a.request(1001, {}))["errCode"] == 0
    finally:
        await a.close()
        await b.close()
