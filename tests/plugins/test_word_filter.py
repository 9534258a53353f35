"""WordFilter: what it masks and refuses, on its own and through a real server."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from hub.bus import BeforeCall, Verdict, hook
from hub.errors import ConfigError
from hub.plugin import build_plugin
from hub.settings import PluginSpec
from plugins.word_filter import WordFilter, WordFilterConfig
from tests.plugins.conftest import StartWith

MODULE = "plugins.word_filter:WordFilter"


def wf(**config: Any) -> WordFilter:
    return WordFilter(WordFilterConfig.model_validate({"words": ["darn", "heck"], **config}))


async def verdict(f: WordFilter, hook_name: str, payload: dict[str, Any]) -> Verdict:
    return await f.before(BeforeCall(hook(hook_name), "t1", "op1", payload))


@pytest.mark.parametrize(("text", "masked"), [
    ("darn it", "**** it"),
    ("DARN it, Heck!", "**** it, ****!"),
    ("darnheck", "********"),
    ("nothing here", "nothing here"),
    ("", ""),
])
def test_mask_is_case_insensitive_and_keeps_lengths(text: str, masked: str) -> None:
    assert wf().mask(text) == masked


def test_the_longest_word_wins_where_words_overlap() -> None:
    f = wf(words=["bad", "badword"])
    assert f.mask("badwords and bad") == "*******s and ***"


def test_words_are_literal_and_unicode_works() -> None:
    f = wf(words=["a.b", "坏蛋", "STRASSE"])
    assert f.mask("axb a.b") == "axb ***"
    assert f.mask("你是坏蛋吗") == "你是**吗"
    assert f.mask("strasse") == "*******"


async def test_mask_changes_a_mutable_field_and_nothing_else() -> None:
    v = await verdict(wf(), "beforeUpdateUserInfo",
                      {"userID": "darn", "nickname": "Darn Dan", "ex": "darn"})
    assert v == Verdict.allow({"nickname": "**** Dan"})


async def test_clean_text_is_allowed_without_changes() -> None:
    assert await verdict(wf(), "beforeUpdateUserInfo",
                         {"userID": "u1", "nickname": "Dan"}) == Verdict.allow()


async def test_nicknames_inside_the_users_of_a_registration_are_masked() -> None:
    users = [{"userID": "u1", "nickname": "Heck", "ex": "heck"},
             {"userID": "u2", "nickname": "fine"}]
    v = await verdict(wf(), "beforeUserRegister", {"users": users})
    assert v.changes == {"users": [{"userID": "u1", "nickname": "****", "ex": "heck"},
                                   {"userID": "u2", "nickname": "fine"}]}
    assert users[0]["nickname"] == "Heck", "the caller's payload is not touched"


async def test_a_field_the_hook_cannot_change_is_refused_even_in_mask_mode() -> None:
    # beforeAddFriend lets no plugin change reqMsg; masking is impossible, passing defeats
    # the filter.
    v = await verdict(wf(), "beforeAddFriend",
                      {"fromUserID": "a", "toUserID": "b", "reqMsg": "darn you"})
    assert v == Verdict.deny(5100, "text contains a forbidden word")
    assert await verdict(wf(), "beforeAddFriend",
                         {"fromUserID": "a", "toUserID": "b", "reqMsg": "hi"}) == Verdict()


async def test_deny_mode_refuses_with_the_configured_code_and_message() -> None:
    f = wf(action="deny", errCode=6001, errMsg="mind your language")
    v = await verdict(f, "beforeUpdateUserInfo", {"userID": "u1", "nickname": "HECK"})
    assert v == Verdict.deny(6001, "mind your language")
    assert await verdict(f, "beforeUpdateUserInfo", {"userID": "u1", "nickname": "ok"}) \
        == Verdict.allow()


async def test_group_texts_are_masked() -> None:
    v = await verdict(wf(), "beforeCreateGroup",
                      {"groupID": "g", "groupName": "darn club", "notification": "heck",
                       "introduction": "fine", "ownerUserID": "heck"})
    assert v.changes == {"groupName": "**** club", "notification": "****"}


def _msg(content_type: int, content: Any) -> dict[str, Any]:
    return {"sendID": "a", "recvID": "b", "sessionType": 1, "contentType": content_type,
            "content": content}


async def test_text_message_content_is_masked_inside_its_json() -> None:
    content = orjson.dumps({"content": "you darn fool"}).decode()
    v = await verdict(wf(), "beforeSendSingleMsg", _msg(101, content))
    assert orjson.loads(v.changes["content"]) == {"content": "you **** fool"}
    assert set(v.changes) == {"content"}


async def test_at_text_content_is_masked_and_its_other_keys_kept() -> None:
    content = orjson.dumps({"text": "@bob heck", "atUserList": ["heck"]}).decode()
    v = await verdict(wf(), "beforeSendGroupMsg",
                      {**_msg(106, content), "groupID": "g", "sessionType": 3})
    assert orjson.loads(v.changes["content"]) == {"text": "@bob ****", "atUserList": ["heck"]}


async def test_content_that_is_not_text_is_left_alone() -> None:
    picture = orjson.dumps({"sourcePicture": {"url": "http://x/darn.png"}}).decode()
    assert await verdict(wf(), "beforeSendSingleMsg", _msg(102, picture)) == Verdict.allow()


async def test_text_content_that_is_not_json_is_masked_as_it_is() -> None:
    v = await verdict(wf(), "beforeSendSingleMsg", _msg(101, "plain darn"))
    assert v.changes == {"content": "plain ****"}


async def test_deny_mode_refuses_a_message() -> None:
    content = orjson.dumps({"content": "heck"}).decode()
    v = await verdict(wf(action="deny"), "beforeSendSingleMsg", _msg(101, content))
    assert v.action == "deny"


def test_it_takes_only_before_hooks_with_text() -> None:
    assert WordFilter.hooks is not None
    assert "beforeUpdateUserInfo" in WordFilter.hooks
    assert "beforeSendGroupMsg" in WordFilter.hooks
    assert "beforeAddBlack" not in WordFilter.hooks  # no text to look at
    assert all(name.startswith("before") for name in WordFilter.hooks)


@pytest.mark.parametrize(("config", "key"), [
    ({}, "words"),
    ({"words": []}, "words"),
    ({"words": ["ok", "  "]}, "words.1"),
    ({"words": ["x"], "action": "block"}, "action"),
    ({"words": ["x"], "errCode": 0}, "errCode"),
    ({"words": ["x"], "wrods": ["y"]}, "wrods"),
])
def test_bad_config_names_the_plugin_and_the_key(config: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as exc:
        build_plugin(PluginSpec(module=MODULE, config=config))
    assert f"plugin '{MODULE}' config key '{key}'" in str(exc.value)


# Through a real server.

async def test_a_nickname_is_masked_on_update_user_info(start_with: StartWith) -> None:
    tenant = await start_with({"module": MODULE, "config": {"words": ["darn", "heck"]}})
    srv = tenant.server
    (dan,) = await tenant.users("dan")
    await srv.ok("/user/update_user_info",
                 {"userInfo": {"userID": "dan", "nickname": "Darn Dan", "ex": "darn"}}, dan)
    info = await srv.ok("/user/get_users_info", {"userIDs": ["dan"]}, dan)
    user = info["usersInfo"][0]
    assert (user["nickname"], user["ex"]) == ("**** Dan", "darn")


async def test_nicknames_are_masked_on_register(start_with: StartWith) -> None:
    tenant = await start_with({"module": MODULE, "config": {"words": ["heck"]}})
    srv = tenant.server
    await srv.ok("/user/user_register", {"users": [
        {"userID": "u1", "nickname": "Heck Yes"}, {"userID": "u2", "nickname": "Fine"}]},
        tenant.admin)
    info = await srv.ok("/user/get_users_info", {"userIDs": ["u1", "u2"]}, tenant.admin)
    assert [u["nickname"] for u in info["usersInfo"]] == ["**** Yes", "Fine"]


async def test_a_remark_is_masked_and_a_req_msg_refused(start_with: StartWith) -> None:
    tenant = await start_with({"module": MODULE, "config": {"words": ["darn"]}})
    srv = tenant.server
    ann, _ = await tenant.users("ann", "bob")
    status, env = await srv.post("/friend/add_friend",
                                 {"fromUserID": "ann", "toUserID": "bob", "reqMsg": "DARN"},
                                 ann)
    assert (env["errCode"], env["errMsg"]) == (5100, "text contains a forbidden word")
    assert status == 403
    applies = await srv.ok("/friend/get_friend_apply_list", {"userID": "bob"}, tenant.admin)
    assert applies["total"] == 0
    await srv.ok("/friend/add_friend", {"fromUserID": "ann", "toUserID": "bob",
                                        "reqMsg": "hello"}, ann)
    await srv.ok("/friend/add_friend_response", {"fromUserID": "ann", "toUserID": "bob",
                                                 "handleResult": 1}, tenant.admin)
    await srv.ok("/friend/set_friend_remark", {"ownerUserID": "ann", "friendUserID": "bob",
                                               "remark": "darn bob"}, ann)
    friends = await srv.ok("/friend/get_friend_list", {"userID": "ann"}, ann)
    assert friends["friendsInfo"][0]["remark"] == "**** bob"


async def test_deny_mode_refuses_the_update_and_keeps_the_old_nickname(start_with: StartWith
                                                                      ) -> None:
    tenant = await start_with({"module": MODULE, "config": {
        "words": ["heck"], "action": "deny", "errCode": 6001, "errMsg": "mind your language"}})
    srv = tenant.server
    (dan,) = await tenant.users("dan")
    _, env = await srv.post("/user/update_user_info",
                            {"userInfo": {"userID": "dan", "nickname": "HECK"}}, dan)
    assert (env["errCode"], env["errMsg"]) == (6001, "mind your language")
    info = await srv.ok("/user/get_users_info", {"userIDs": ["dan"]}, dan)
    assert info["usersInfo"][0]["nickname"] == "Dan"


async def test_a_text_message_is_stored_masked(start_with: StartWith) -> None:
    tenant = await start_with({"module": MODULE, "config": {"words": ["darn"]}})
    srv = tenant.server
    ann, bob = await tenant.users("ann", "bob")
    content = orjson.dumps({"content": "Darn, it works"}).decode()
    sent = await srv.ok("/msg/send_msg", {"sendID": "ann", "recvID": "bob", "sessionType": 1,
                                          "contentType": 101, "content": content}, ann)
    conv = "si_ann_bob"
    pulled = await srv.ok("/msg/pull_msg_by_seq", {"userID": "bob", "seqRanges": [
        {"conversationID": conv, "begin": 1, "end": sent["seq"], "num": 10}]}, bob)
    (msg,) = pulled["msgs"][conv]
    assert orjson.loads(msg["content"]) == {"content": "****, it works"}
