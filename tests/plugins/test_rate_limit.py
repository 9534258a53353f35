"""RateLimit: token buckets per tenant, hook and acting user; bounded memory; config."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from hub.bus import BeforeCall, Verdict, hook
from hub.errors import ConfigError
from hub.plugin import build_plugin
from hub.settings import PluginSpec
from plugins.rate_limit import RateLimit, RateLimitConfig
from tests.plugins.conftest import StartWith

MODULE = "plugins.rate_limit:RateLimit"
ADD_FRIEND = hook("beforeAddFriend")


def limiter(**config: Any) -> RateLimit:
    return RateLimit(RateLimitConfig.model_validate(config))


async def ask(rl: RateLimit, payload: dict[str, Any], *, tenant: str = "t1",
              hook_name: str = "beforeAddFriend") -> str:
    v = await rl.before(BeforeCall(hook(hook_name), tenant, "op", payload))
    return v.action


async def test_burst_then_deny_then_refill() -> None:
    rl = limiter(rate=20, burst=2)  # a token every 50 ms
    me = {"fromUserID": "a", "toUserID": "b"}
    assert [await ask(rl, me) for _ in range(3)] == ["allow", "allow", "deny"]
    await asyncio.sleep(0.06)
    assert await ask(rl, me) == "allow"
    assert "deny" in [await ask(rl, me) for _ in range(2)]  # the burst bounds the refill


async def test_the_deny_carries_1005_by_default_and_the_configured_code_otherwise() -> None:
    me = {"fromUserID": "a"}
    rl = limiter(rate=0.01, burst=1)
    await ask(rl, me)
    assert await rl.before(BeforeCall(ADD_FRIEND, "t1", "op", me)) == \
        Verdict.deny(1005, "too many requests")
    rl = limiter(rate=0.01, burst=1, errCode=4290, errMsg="slow down")
    await ask(rl, me)
    assert await rl.before(BeforeCall(ADD_FRIEND, "t1", "op", me)) == \
        Verdict.deny(4290, "slow down")


async def test_buckets_are_per_tenant_hook_and_user() -> None:
    rl = limiter(rate=0.01, burst=1)
    assert await ask(rl, {"fromUserID": "a"}) == "allow"
    assert await ask(rl, {"fromUserID": "a"}) == "deny"
    assert await ask(rl, {"fromUserID": "b"}) == "allow"
    assert await ask(rl, {"fromUserID": "a"}, tenant="t2") == "allow"
    assert await ask(rl, {"userID": "a"}, hook_name="beforeUpdateUserInfo") == "allow"


@pytest.mark.parametrize(("payload", "actor"), [
    ({"sendID": "s", "fromUserID": "f", "userID": "u"}, "s"),
    ({"fromUserID": "f", "ownerUserID": "o"}, "f"),
    ({"ownerUserID": "o", "userID": "u"}, "o"),
    ({"userID": "u", "inviterUserID": "i"}, "u"),
    ({"inviterUserID": "i", "opUserID": "op"}, "i"),
    ({"sendID": "", "opUserID": "op"}, "op"),
])
async def test_the_acting_user_is_the_first_present_actor_field(payload: dict[str, Any],
                                                                 actor: str) -> None:
    rl = limiter(rate=0.01, burst=1)
    await ask(rl, payload)
    assert await ask(rl, {"fromUserID": actor}) == "deny"


async def test_an_action_without_an_acting_user_is_not_limited() -> None:
    rl = limiter(rate=0.01, burst=1)
    users = {"users": [{"userID": "u1"}]}
    assert [await ask(rl, users, hook_name="beforeUserRegister") for _ in range(3)] == \
        ["allow"] * 3
    assert len(rl) == 0


def test_only_the_configured_hooks_are_taken() -> None:
    every = limiter(rate=1)
    assert every.wants(hook("beforeSendSingleMsg"), "t1")
    assert not every.wants(hook("afterSendSingleMsg"), "t1")
    some = limiter(rate=1, hooks=["beforeAddFriend"])
    assert some.wants(ADD_FRIEND, "t1")
    assert not some.wants(hook("beforeSendSingleMsg"), "t1")


async def test_idle_buckets_are_evicted() -> None:
    # Refills completely within 0.5 s: long enough that 50 asks on a busy machine all
    # stay tracked, short enough for the test.
    rl = limiter(rate=2, burst=1)
    for i in range(50):
        await ask(rl, {"fromUserID": f"u{i}"})
    assert len(rl) == 50
    await asyncio.sleep(0.6)
    await ask(rl, {"fromUserID": "late"})
    assert len(rl) == 1


async def test_max_buckets_bounds_memory_dropping_the_least_recently_used() -> None:
    rl = limiter(rate=0.001, burst=1, maxBuckets=3)
    for i in range(10):
        assert await ask(rl, {"fromUserID": f"u{i}"}) == "allow"
    assert len(rl) == 3
    assert await ask(rl, {"fromUserID": "u9"}) == "deny"  # still tracked
    assert await ask(rl, {"fromUserID": "u0"}) == "allow"  # forgotten: a fresh bucket


@pytest.mark.parametrize(("rate", "burst"), [(1, 1), (2.5, 3), (0.2, 1), (10, 10)])
def test_burst_defaults_to_the_rate_rounded_up(rate: float, burst: int) -> None:
    assert RateLimitConfig.model_validate({"rate": rate}).burst == burst


@pytest.mark.parametrize(("config", "key"), [
    ({}, "rate"),
    ({"rate": 0}, "rate"),
    ({"rate": -1}, "rate"),
    ({"rate": "fast"}, "rate"),
    ({"rate": float("inf")}, "rate"),
    ({"rate": 1, "burst": 0}, "burst"),
    ({"rate": 1, "hooks": ["afterAddFriend"]}, "hooks"),
    ({"rate": 1, "hooks": []}, "hooks"),
    ({"rate": 1, "hooks": ["beforeNothing"]}, "hooks"),
    ({"rate": 1, "maxBuckets": 0}, "maxBuckets"),
    ({"rate": 1, "per": "second"}, "per"),
])
def test_bad_config_names_the_plugin_and_the_key(config: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as exc:
        build_plugin(PluginSpec(module=MODULE, config=config))
    assert f"plugin '{MODULE}' config key '{key}'" in str(exc.value)


# Through a real server.

async def test_the_next_add_friend_past_the_burst_is_refused_until_refill(
        start_with: StartWith) -> None:
    # rate 1 per second, so a loaded machine's slow requests do not refill the bucket
    # between the ones that should find it empty.
    tenant = await start_with({"module": MODULE, "config": {
        "rate": 1, "burst": 2, "hooks": ["beforeAddFriend"]}})
    srv = tenant.server
    ann, bob, *_ = await tenant.users("ann", "bob", "cat", "dan")

    async def add(token: str, a: str, b: str) -> dict[str, Any]:
        _, env = await srv.post("/friend/add_friend", {"fromUserID": a, "toUserID": b}, token)
        return env

    codes = [(await add(ann, "ann", to))["errCode"] for to in ("bob", "cat", "dan")]
    assert codes == [0, 0, 1005]
    env = await add(ann, "ann", "dan")
    assert (env["errCode"], env["errMsg"]) == (1005, "too many requests")
    applies = await srv.ok("/friend/get_friend_apply_list", {"userID": "dan"}, tenant.admin)
    assert applies["total"] == 0
    # Others, and ann's other actions, have their own buckets or none.
    assert (await add(bob, "bob", "dan"))["errCode"] == 0
    await srv.ok("/user/update_user_info", {"userInfo": {"userID": "ann", "nickname": "A"}},
                 ann)
    await asyncio.sleep(1.05)  # a token back
    assert (await add(ann, "ann", "dan"))["errCode"] == 0
    # At most two tokens (the burst) can have come back: the third try at most is refused.
    later = [(await add(ann, "ann", "dan"))["errCode"] for _ in range(2)]
    assert 1005 in later
