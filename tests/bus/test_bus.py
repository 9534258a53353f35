"""The bus on its own: before chains (order, deny, drop, folding, failures, timeouts) and
isolated after handlers. No server: the subject is hub.bus.Bus and small plugins."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from hub.bus import AfterEvent, BeforeCall, Bus, Verdict, hook
from hub.bus.bus import DROP
from hub.errors import HookDenied, HookFailed
from hub.plugin import Plugin, PluginConfig

UPDATE_USER = hook("beforeUpdateUserInfo")
ADD_FRIEND = hook("beforeAddFriend")
MEMBER_JOIN = hook("beforeMemberJoinGroup")
SEND_SINGLE = hook("beforeSendSingleMsg")
AFTER_ADD_FRIEND = hook("afterAddFriend")

Answer = Callable[[BeforeCall], Awaitable[Any]]


class Fn(Plugin):
    """A plugin that records what it sees and answers with `answer`."""

    def __init__(self, name: str, answer: Answer | None = None, *, priority: int = 100,
                 timeout: float = 2.0, failed_continue: bool = True,
                 order: list[str] | None = None) -> None:
        super().__init__(PluginConfig())
        self.name, self.priority = name, priority
        self.timeout, self.failed_continue = timeout, failed_continue
        self._answer = answer
        self._order = order
        self.seen: list[dict[str, Any]] = []

    async def before(self, call: BeforeCall) -> Verdict:
        self.seen.append(dict(call.payload))
        if self._order is not None:
            self._order.append(self.name)
        if self._answer is None:
            return Verdict.allow()
        result: Verdict = await self._answer(call)
        return result


def answer(verdict: Any) -> Answer:
    async def fn(call: BeforeCall) -> Any:
        return verdict
    return fn


def changes(**fields: Any) -> Answer:
    return answer(Verdict.allow(fields))


async def raise_error(call: BeforeCall) -> Any:
    raise RuntimeError("boom")


async def hang(call: BeforeCall) -> Any:
    await asyncio.sleep(30)


async def run(bus: Bus, hk: Any, payload: dict[str, Any]) -> Any:
    return await bus.before(hk, "t1", "op1", payload)


async def test_handlers_run_in_priority_order_lower_first() -> None:
    order: list[str] = []
    bus = Bus([Fn("late", priority=30, order=order), Fn("first", priority=10, order=order),
               Fn("middle", priority=20, order=order)])
    await run(bus, ADD_FRIEND, {"fromUserID": "a", "toUserID": "b"})
    assert order == ["first", "middle", "late"]


async def test_equal_priorities_keep_the_order_they_were_added_in() -> None:
    order: list[str] = []
    bus = Bus([Fn(n, order=order) for n in ("one", "two", "three")])
    await run(bus, ADD_FRIEND, {"fromUserID": "a", "toUserID": "b"})
    assert order == ["one", "two", "three"]


async def test_first_deny_ends_the_chain_with_its_code_and_message() -> None:
    after = Fn("after", priority=20)
    bus = Bus([Fn("no", answer(Verdict.deny(7001, "no")), priority=10), after])
    with pytest.raises(HookDenied) as exc:
        await run(bus, ADD_FRIEND, {"fromUserID": "a", "toUserID": "b"})
    assert (exc.value.code, exc.value.msg) == (7001, "no")
    assert after.seen == []


async def test_deny_without_a_code_answers_5000() -> None:
    bus = Bus([Fn("no", answer(Verdict("deny", err_msg="nope")))])
    with pytest.raises(HookDenied) as exc:
        await run(bus, ADD_FRIEND, {"fromUserID": "a", "toUserID": "b"})
    assert (exc.value.code, exc.value.msg) == (5000, "nope")


async def test_changes_fold_and_only_mutable_fields_are_taken() -> None:
    first = Fn("first", changes(nickname="Ann", userID="mallory", admin=True), priority=1)
    second = Fn("second", changes(faceURL="http://x/a.png"), priority=2)
    third = Fn("third", priority=3)
    payload = {"userID": "u1", "nickname": "ann"}
    out = await run(Bus([first, second, third]), UPDATE_USER, payload)
    assert out == {"userID": "u1", "nickname": "Ann", "faceURL": "http://x/a.png"}
    assert second.seen == [{"userID": "u1", "nickname": "Ann"}]
    assert third.seen == [out]
    assert payload == {"userID": "u1", "nickname": "ann"}, "the caller's dict is not touched"


async def test_an_unchanged_payload_is_returned_as_the_same_object() -> None:
    # Actions skip revalidation when `out is payload`; a copy would cost a validation.
    payload = {"userID": "u1", "nickname": "ann"}
    out = await run(Bus([Fn("a"), Fn("b", changes())]), UPDATE_USER, payload)
    assert out is payload
    out = await run(Bus([Fn("c", changes(userID="x"))]), UPDATE_USER, payload)
    assert out == {"userID": "u1", "nickname": "ann"}


async def test_a_bus_without_handlers_for_a_hook_returns_the_payload() -> None:
    payload = {"fromUserID": "a", "toUserID": "b"}
    assert await run(Bus(), ADD_FRIEND, payload) is payload


async def test_refused_user_ids_accumulate_across_handlers() -> None:
    bus = Bus([Fn("a", changes(refusedUserIDs=["u1"]), priority=1),
               Fn("b", changes(refusedUserIDs=["u2", "u1"]), priority=2),
               Fn("c", changes(refusedUserIDs=[]), priority=3)])
    out = await run(bus, MEMBER_JOIN, {"groupID": "g", "userIDs": ["u1", "u2", "u3"]})
    assert out["refusedUserIDs"] == ["u1", "u2"]


async def test_drop_on_a_message_hook_returns_drop_and_ends_the_chain() -> None:
    later = Fn("later", priority=20)
    bus = Bus([Fn("dropper", answer(Verdict.drop()), priority=10), later])
    out = await run(bus, SEND_SINGLE, {"sendID": "a", "recvID": "b", "content": "{}"})
    assert out is DROP
    assert later.seen == []


async def test_drop_on_a_non_message_hook_denies() -> None:
    later = Fn("later", priority=20)
    bus = Bus([Fn("dropper", answer(Verdict.drop()), priority=10), later])
    with pytest.raises(HookDenied) as exc:
        await run(bus, ADD_FRIEND, {"fromUserID": "a", "toUserID": "b"})
    assert exc.value.code == 5000
    assert later.seen == []


GARBAGE: list[Any] = [
    None,
    {"nickname": "x"},
    "allow",
    Verdict("maybe"),  # type: ignore[arg-type]
    Verdict("allow", ["nickname"]),  # type: ignore[arg-type]
    Verdict("deny", {}, "7001", "no"),  # type: ignore[arg-type]
]


@pytest.mark.parametrize("bad", [raise_error, *[answer(g) for g in GARBAGE]],
                         ids=["raises", *[repr(g) for g in GARBAGE]])
async def test_a_failing_handler_with_failed_continue_lets_the_chain_go_on(bad: Answer) -> None:
    later = Fn("later", changes(nickname="later"), priority=20)
    bus = Bus([Fn("bad", bad, priority=10, failed_continue=True), later])
    out = await run(bus, UPDATE_USER, {"userID": "u1", "nickname": "n"})
    assert out == {"userID": "u1", "nickname": "later"}
    assert len(later.seen) == 1


@pytest.mark.parametrize("bad", [raise_error, *[answer(g) for g in GARBAGE]],
                         ids=["raises", *[repr(g) for g in GARBAGE]])
async def test_a_failing_handler_without_failed_continue_raises_hook_failed(bad: Answer
                                                                           ) -> None:
    later = Fn("later", priority=20)
    bus = Bus([Fn("bad", bad, priority=10, failed_continue=False), later])
    with pytest.raises(HookFailed) as exc:
        await run(bus, UPDATE_USER, {"userID": "u1", "nickname": "n"})
    assert exc.value.code == 5001
    assert later.seen == []


async def _wait_then(call: BeforeCall) -> Any:
    await asyncio.sleep(0)  # a bare yield
    await asyncio.sleep(0.01)  # a timer
    await asyncio.get_running_loop().run_in_executor(None, time.sleep, 0.01)  # a future
    return Verdict.allow({"nickname": "waited"})


async def _wait_then_raise(call: BeforeCall) -> Any:
    await asyncio.sleep(0.01)
    raise RuntimeError("late boom")


async def test_a_handler_that_waits_before_answering_is_heard() -> None:
    later = Fn("later", priority=20)
    out = await run(Bus([Fn("waits", _wait_then, priority=10), later]), UPDATE_USER,
                    {"userID": "u1", "nickname": "n"})
    assert out == {"userID": "u1", "nickname": "waited"}
    assert later.seen == [out]


@pytest.mark.parametrize("failed_continue", [True, False])
async def test_a_handler_that_raises_after_waiting_has_failed(failed_continue: bool) -> None:
    bus = Bus([Fn("late", _wait_then_raise, failed_continue=failed_continue)])
    payload = {"userID": "u1", "nickname": "n"}
    if failed_continue:
        assert await run(bus, UPDATE_USER, payload) is payload
    else:
        with pytest.raises(HookFailed):
            await run(bus, UPDATE_USER, payload)


async def test_a_denial_given_after_waiting_is_a_denial() -> None:
    async def slow_no(call: BeforeCall) -> Any:
        await asyncio.sleep(0.01)
        return Verdict.deny(7002, "later no")

    with pytest.raises(HookDenied) as exc:
        await run(Bus([Fn("slow-no", slow_no)]), ADD_FRIEND, {"fromUserID": "a"})
    assert (exc.value.code, exc.value.msg) == (7002, "later no")


TIMEOUT = 0.3


@pytest.mark.parametrize("failed_continue", [True, False])
async def test_a_hanging_handler_is_cut_at_its_timeout(failed_continue: bool) -> None:
    later = Fn("later", priority=20)
    bus = Bus([Fn("hang", hang, priority=10, timeout=TIMEOUT,
                  failed_continue=failed_continue), later])
    payload = {"fromUserID": "a", "toUserID": "b"}
    start = time.perf_counter()
    if failed_continue:
        assert await run(bus, ADD_FRIEND, payload) is payload
        assert len(later.seen) == 1
    else:
        with pytest.raises(HookFailed):
            await run(bus, ADD_FRIEND, payload)
        assert later.seen == []
    elapsed = time.perf_counter() - start
    assert TIMEOUT <= elapsed < TIMEOUT + 0.5


async def test_a_handler_that_ignores_cancellation_still_costs_only_its_timeout() -> None:
    release = asyncio.Event()
    finished = asyncio.Event()

    async def stubborn(call: BeforeCall) -> Any:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            await release.wait()  # swallows the cancellation and keeps going
            finished.set()
        return Verdict.deny(1, "too late")

    bus = Bus([Fn("stubborn", stubborn, timeout=TIMEOUT, failed_continue=False)])
    start = time.perf_counter()
    with pytest.raises(HookFailed):
        await run(bus, ADD_FRIEND, {"fromUserID": "a", "toUserID": "b"})
    elapsed = time.perf_counter() - start
    release.set()
    await asyncio.wait_for(finished.wait(), 1)
    assert TIMEOUT <= elapsed < TIMEOUT + 0.5


async def test_a_cancelled_caller_cancels_the_handler_too() -> None:
    # A client that hangs up must not leave its hook running on.
    cancelled = asyncio.Event()

    async def slow(call: BeforeCall) -> Any:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    bus = Bus([Fn("slow", slow, timeout=10)])
    task = asyncio.create_task(run(bus, ADD_FRIEND, {"fromUserID": "a", "toUserID": "b"}))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.wait_for(cancelled.wait(), 1)


async def test_wants_skips_a_handler_for_hooks_it_does_not_take() -> None:
    class OnlyRemark(Fn):
        hooks = frozenset({"beforeSetFriendRemark"})

    only = OnlyRemark("only", answer(Verdict.deny(1, "x")))
    out = await run(Bus([only]), ADD_FRIEND, {"fromUserID": "a", "toUserID": "b"})
    assert out == {"fromUserID": "a", "toUserID": "b"}
    assert only.seen == []


async def test_calls_before_now_answers_without_waiting_once_the_tenant_is_prepared() -> None:
    # A handler with per-tenant settings (a webhook) loads them in `prepare`; until it
    # has, the sync question cannot be answered and the caller must take the waiting way.
    class PerTenant(Fn):
        def __init__(self) -> None:
            super().__init__("per-tenant")
            self.loaded: dict[str, set[str]] = {}

        async def prepare(self, tenant_id: str) -> None:
            self.loaded[tenant_id] = {"beforeAddFriend"} if tenant_id == "t1" else set()

        def prepared(self, tenant_id: str) -> bool:
            return tenant_id in self.loaded

        def wants(self, hk: Any, tenant_id: str) -> bool:
            return hk.name in self.loaded.get(tenant_id, {hk.name})

    bus = Bus([PerTenant()])
    assert bus.calls_before_now(ADD_FRIEND, "t1") is None
    assert bus.calls_before_now(UPDATE_USER, "t1") is None
    assert await bus.calls_before(ADD_FRIEND, "t1") is True
    assert bus.calls_before_now(ADD_FRIEND, "t1") is True
    assert bus.calls_before_now(UPDATE_USER, "t1") is False
    assert bus.calls_before_now(ADD_FRIEND, "t2") is None
    assert await bus.calls_before(ADD_FRIEND, "t2") is False
    assert bus.calls_before_now(ADD_FRIEND, "t2") is False
    # Handlers without per-tenant settings answer at once; a bus without any, False.
    assert Bus([Fn("plain")]).calls_before_now(ADD_FRIEND, "t3") is True
    assert Bus([Observer("after-only")]).calls_before_now(ADD_FRIEND, "t3") is False


def _event(n: int = 1) -> AfterEvent:
    return AfterEvent(hook=AFTER_ADD_FRIEND, event_id=f"evt{n}", tenant_id="t1",
                      operation_id="op1", occurred_at=1, key="a",
                      payload={"fromUserID": "a", "toUserID": "b"})


class Observer(Plugin):
    def __init__(self, name: str, behaviour: str = "record", timeout: float = 2.0) -> None:
        super().__init__(PluginConfig())
        self.name, self.timeout, self._behaviour = name, timeout, behaviour
        self.events: list[AfterEvent] = []

    async def after(self, event: AfterEvent) -> None:
        if self._behaviour == "raise":
            raise RuntimeError("observer down")
        if self._behaviour == "hang":
            await asyncio.sleep(30)
        self.events.append(event)


async def test_after_handlers_are_isolated_from_each_other() -> None:
    ok = Observer("ok")
    bus = Bus([Observer("raises", "raise"), Observer("hangs", "hang", timeout=TIMEOUT), ok])
    events = [_event(1), _event(2)]
    start = time.perf_counter()
    bus.after(events)
    await bus.drain()
    assert time.perf_counter() - start < TIMEOUT + 0.5
    assert ok.events == events


async def test_after_does_not_wait_for_handlers() -> None:
    slow = Observer("slow", "hang", timeout=TIMEOUT)
    bus = Bus([slow])
    start = time.perf_counter()
    bus.after([_event()])
    assert time.perf_counter() - start < 0.05
    await bus.close()


async def test_before_only_plugins_are_not_called_after_and_vice_versa() -> None:
    before_only = Fn("before-only", answer(Verdict.deny(1, "x")))
    observer = Observer("observer")
    bus = Bus([before_only, observer])
    assert bus.has_after(AFTER_ADD_FRIEND)
    assert not Bus([before_only]).has_after(AFTER_ADD_FRIEND)
    with pytest.raises(HookDenied):
        await run(bus, ADD_FRIEND, {"fromUserID": "a", "toUserID": "b"})
    bus.after([_event()])
    await bus.drain()
    assert len(observer.events) == 1
    assert len(before_only.seen) == 1


# --- where a handler runs -------------------------------------------------------------------

async def test_a_handler_that_never_waits_runs_in_place_and_one_that_waits_goes_on_alone(
        ) -> None:
    """Run in place up to its first wait: no task for a plugin that answers at once, a
    task of its own for the rest of one that waits. Either way it sees a copy of the
    caller's context, so what it sets there does not leak back."""
    import contextvars

    mark: contextvars.ContextVar[str] = contextvars.ContextVar("mark", default="caller")
    tasks: dict[str, tuple[asyncio.Task[Any] | None, asyncio.Task[Any] | None]] = {}

    def where(name: str, waits: bool) -> Answer:
        async def fn(call: BeforeCall) -> Any:
            first = asyncio.current_task()
            assert mark.get() == "caller"
            mark.set(name)
            if waits:
                await asyncio.sleep(0.01)
            tasks[name] = (first, asyncio.current_task())
            return Verdict.allow({"nickname": name})
        return fn

    bus = Bus([Fn("quick", where("quick", False), priority=1),
               Fn("slow", where("slow", True), priority=2)])
    out = await run(bus, UPDATE_USER, {"userID": "u", "nickname": "n"})
    assert out["nickname"] == "slow"
    me = asyncio.current_task()
    assert tasks["quick"] == (me, me)
    first, rest = tasks["slow"]
    assert first is me and rest is not me and rest is not None
    assert mark.get() == "caller"


async def test_an_after_handler_that_raises_before_waiting_fails_alone() -> None:
    class Sync(Plugin):
        name, timeout = "sync", 2.0

        def __init__(self, behaviour: str) -> None:
            super().__init__(PluginConfig())
            self._behaviour = behaviour
            self.events: list[AfterEvent] = []

        async def after(self, event: AfterEvent) -> None:
            if self._behaviour == "raise":
                raise RuntimeError("at once")
            self.events.append(event)

    ok, bad = Sync("record"), Sync("raise")
    bus = Bus([bad, ok])
    bus.after([_event(1), _event(2)])
    assert [e.event_id for e in ok.events] == ["evt1", "evt2"]  # done in place
    await bus.drain()
    assert not bus._tasks


async def test_a_handler_may_return_any_awaitable() -> None:
    """`before` and `after` written as plain functions returning a future still work."""
    seen: list[str] = []

    class Plain(Plugin):
        name = "plain"

        def before(self, call: BeforeCall) -> Any:  # type: ignore[override]
            fut = asyncio.get_running_loop().create_future()
            asyncio.get_running_loop().call_later(0.01, fut.set_result,
                                                  Verdict.allow({"nickname": "plain"}))
            return fut

        def after(self, event: AfterEvent) -> Any:  # type: ignore[override]
            fut = asyncio.get_running_loop().create_future()
            fut.set_result(None)
            seen.append(event.event_id)
            return fut

    bus = Bus([Plain(PluginConfig())])
    out = await run(bus, UPDATE_USER, {"userID": "u", "nickname": "n"})
    assert out["nickname"] == "plain"
    bus.after([_event(7)])
    await bus.drain()
    assert seen == ["evt7"]
