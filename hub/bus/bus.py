"""The bus: runs before handlers in priority order and after handlers once committed.

A handler's coroutine is first run in place, up to where it would wait: most in-process
plugins (a word filter, a rate limit, an observer) never wait, and those are done there,
with no task and no timer. One that waits goes on from that point under its timeout, in
a task of its own (or, for `prompt_cancel` handlers, in the caller's task), exactly as if
it had been started there: its timeout counts from its first wait.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import time
from collections.abc import Awaitable, Coroutine, Generator, Iterable
from typing import Any, TypeVar

from ..errors import HookDenied, HookFailed
from ..metrics import hook_seconds
from .catalogue import HOOKS, Hook
from .handler import AfterEvent, BeforeCall, Handler
from .verdict import Verdict

log = logging.getLogger("imhub.bus")


class Drop:
    """The verdict of a message hook that swallowed the message: success, nothing stored."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "DROP"


DROP = Drop()


def _overrides(handler: Handler, method: str) -> bool:
    return getattr(type(handler), method) is not getattr(Handler, method)


class Bus:
    def __init__(self, handlers: Iterable[Handler] = ()) -> None:
        self._handlers: list[Handler] = []
        self._before: dict[str, list[Handler]] = {}
        self._after: dict[str, list[Handler]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        for h in handlers:
            self.add(h)

    @property
    def handlers(self) -> list[Handler]:
        return list(self._handlers)

    def add(self, handler: Handler) -> None:
        self._handlers.append(handler)
        self._handlers.sort(key=lambda h: h.priority)
        # Handlers that do not override a phase are never called for it: a bus with only
        # after-observers costs a dict lookup on the request path.
        self._before = {name: [h for h in self._handlers if _overrides(h, "before")]
                        for name, hk in HOOKS.items() if hk.is_before}
        self._after = {name: [h for h in self._handlers if _overrides(h, "after")]
                       for name, hk in HOOKS.items() if not hk.is_before}
        # Per-tenant handlers (webhooks): loaded before each chain, ordered per tenant.
        self._preparers = [h for h in self._handlers
                           if _overrides(h, "before") and _overrides(h, "prepare")]
        self._reorder = any(_overrides(h, "priority_for") for h in self._handlers)

    async def before(self, hook: Hook, tenant_id: str, operation_id: str,
                     payload: dict[str, Any]) -> dict[str, Any] | Drop:
        """Run `hook`'s before handlers; return the folded payload, or DROP.

        Raises HookDenied for a deny and HookFailed when a failed handler's policy denies.
        """
        handlers = self._before.get(hook.name)
        if not handlers:
            return payload
        for p in self._preparers:
            await p.prepare(tenant_id)
        if self._reorder:
            handlers = sorted(handlers, key=lambda h: h.priority_for(tenant_id))
        current = payload
        for h in handlers:
            if not h.wants(hook, tenant_id):
                continue
            verdict = await self._call(h, BeforeCall(hook, tenant_id, operation_id, current))
            if verdict is None:
                continue
            if verdict.action == "deny":
                raise HookDenied(verdict.err_code, verdict.err_msg, hook=hook.name,
                                 handler=h.name)
            if verdict.action == "drop":
                if hook.messages:
                    return DROP
                raise HookDenied(5000, "dropped", hook=hook.name, handler=h.name)
            if verdict.changes:
                current = _fold(hook, current, verdict.changes)
        return current

    async def calls_before(self, hook: Hook, tenant_id: str) -> bool:
        """Whether `before(hook, tenant_id, ...)` would call any handler now."""
        handlers = self._before.get(hook.name)
        if not handlers:
            return False
        for p in self._preparers:
            await p.prepare(tenant_id)
        return any(h.wants(hook, tenant_id) for h in handlers)

    def calls_before_now(self, hook: Hook, tenant_id: str) -> bool | None:
        """`calls_before` without waiting: None when a handler has yet to load the
        tenant's settings (`Handler.prepared`)."""
        handlers = self._before.get(hook.name)
        if not handlers:
            return False
        for p in self._preparers:
            if not p.prepared(tenant_id):
                return None
        # A loop, not any() over a generator: asked twice for every message sent.
        for h in handlers:  # noqa: SIM110
            if h.wants(hook, tenant_id):
                return True
        return False

    async def _call(self, h: Handler, call: BeforeCall) -> Verdict | None:
        """One handler under its timeout. None means 'failed, but go on'."""
        start = time.perf_counter()
        outcome = "ok"
        try:
            limit = h.timeout_for(call.hook, call.tenant_id)
            # Not prompt_cancel: run in a copy of the context, as a task of its own would.
            context = None if h.prompt_cancel else contextvars.copy_context()
            coro = _coroutine(h.before(call))
            verdict: Verdict
            try:
                waits = coro.send(None) if context is None else context.run(coro.send, None)
            except StopIteration as done:
                verdict = done.value  # answered without waiting
            else:
                rest = _resume(coro, waits)
                if context is None:  # no task of its own: one fewer hand-over per call
                    async with asyncio.timeout(limit):
                        verdict = await rest
                else:
                    verdict = await _within(rest, limit, context)
            if not _well_formed(verdict):
                raise TypeError(f"{h.name} returned {verdict!r}, not a well-formed Verdict")
            outcome = verdict.action
            return verdict
        except (HookDenied, HookFailed):
            raise
        except Exception as exc:
            outcome = "timeout" if isinstance(exc, TimeoutError) else "error"
            go_on = h.failed_continue_for(call.hook, call.tenant_id)
            log.warning("hook %s handler %s failed (%s): %r; failedContinue=%s",
                        call.hook.name, h.name, outcome, exc, go_on,
                        extra={"operationID": call.operation_id})
            if go_on:
                return None
            raise HookFailed(f"{call.hook.callback_command} failed: {outcome}",
                             detail=f"handler {h.name}") from None
        finally:
            hook_seconds.labels(call.hook.name, h.name, outcome).observe(
                time.perf_counter() - start)

    def has_after(self, hook: Hook) -> bool:
        return bool(self._after.get(hook.name))

    def after(self, events: Iterable[AfterEvent]) -> None:
        """Hand committed events to in-process after handlers; one that waits goes on in
        a task of its own, so that none holds up the caller or another."""
        for ev in events:
            for h in self._after.get(ev.hook.name, ()):
                if h.wants(ev.hook, ev.tenant_id):
                    self._start_after(h, ev)

    def _start_after(self, h: Handler, ev: AfterEvent) -> None:
        start = time.perf_counter()
        context = contextvars.copy_context()
        coro = _coroutine(h.after(ev))
        try:
            waits = context.run(coro.send, None)
        except StopIteration:
            self._after_done(h, ev, start, None)
            return
        except Exception as exc:
            self._after_done(h, ev, start, exc)
            return
        task = asyncio.get_running_loop().create_task(
            self._finish_after(h, ev, _resume(coro, waits), start), context=context)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _finish_after(self, h: Handler, ev: AfterEvent,
                            rest: Coroutine[Any, Any, None], start: float) -> None:
        try:
            await _within(rest, h.timeout)
        except Exception as exc:
            self._after_done(h, ev, start, exc)
        else:
            self._after_done(h, ev, start, None)

    @staticmethod
    def _after_done(h: Handler, ev: AfterEvent, start: float, exc: Exception | None) -> None:
        outcome = "ok"
        if exc is not None:
            outcome = "timeout" if isinstance(exc, TimeoutError) else "error"
            log.warning("after handler %s for %s failed: %r", h.name, ev.hook.name, exc,
                        extra={"operationID": ev.operation_id})
        hook_seconds.labels(ev.hook.name, h.name, outcome).observe(time.perf_counter() - start)

    async def drain(self) -> None:
        """Wait for after handlers in flight (shutdown, tests)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def start(self) -> None:
        for h in self._handlers:
            await h.start()

    async def close(self) -> None:
        await self.drain()
        for h in self._handlers:
            try:
                await h.close()
            except Exception:
                log.exception("closing handler %s", h.name)


_T = TypeVar("_T")
# Handlers that outlived their timeout by ignoring cancellation, kept until they end.
_orphans: set[asyncio.Task[Any]] = set()


async def _within(aw: Coroutine[Any, Any, _T], seconds: float,
                  context: contextvars.Context | None = None) -> _T:
    """Await `aw` in a task of its own for at most `seconds`, then raise TimeoutError.

    Not `asyncio.timeout`: that waits for the cancelled coroutine to finish, so a handler
    that swallows its cancellation would hold the request past its timeout. Here such a
    handler is cancelled and left to end on its own, and the caller goes on in time.
    (A waiter future and a timer, not `asyncio.wait`: half the cost, on every hook call.)
    """
    loop = asyncio.get_running_loop()
    task = loop.create_task(aw, context=context)
    waiter: asyncio.Future[None] = loop.create_future()
    wake = functools.partial(_wake, waiter)
    task.add_done_callback(wake)
    timer = loop.call_later(seconds, wake, None)
    try:
        await waiter
    except asyncio.CancelledError:
        task.cancel()
        raise
    finally:
        timer.cancel()
        task.remove_done_callback(wake)
    if task.done():
        return task.result()
    task.cancel()
    _orphans.add(task)
    task.add_done_callback(_reap)
    raise TimeoutError


def _coroutine(aw: Awaitable[_T]) -> Coroutine[Any, Any, _T]:
    """`aw` as a coroutine that can be stepped (a handler may return any awaitable)."""
    return aw if isinstance(aw, Coroutine) else _await(aw)


async def _await(aw: Awaitable[_T]) -> _T:
    return await aw


async def _resume(coro: Coroutine[Any, Any, _T], waits: Any) -> _T:
    """Go on with `coro` from its first wait, on `waits`, the object it yielded there."""
    result: _T = await _Resumed(coro, waits)
    return result


class _Resumed:
    """Awaiting it drives a coroutine that has already run to its first wait: what the
    coroutine yields goes to the task awaiting this, what the task sends or throws goes
    back in (Python 3.12's eager tasks do the same in C)."""

    __slots__ = ("_coro", "_waits")

    def __init__(self, coro: Coroutine[Any, Any, Any], waits: Any) -> None:
        self._coro, self._waits = coro, waits

    def __await__(self) -> Generator[Any, Any, Any]:
        coro, waits = self._coro, self._waits
        while True:
            try:
                sent = yield waits
            except GeneratorExit:
                coro.close()
                raise
            except BaseException as exc:
                try:
                    waits = coro.throw(exc)
                except StopIteration as done:
                    return done.value
                continue
            try:
                waits = coro.send(sent)
            except StopIteration as done:
                return done.value


def _wake(waiter: asyncio.Future[None], _: object) -> None:
    if not waiter.done():
        waiter.set_result(None)


def _reap(task: asyncio.Task[Any]) -> None:
    _orphans.discard(task)
    if not task.cancelled():
        task.exception()  # retrieved, so asyncio does not log it as never retrieved


def _well_formed(verdict: object) -> bool:
    # A Verdict is a plain dataclass: nothing stops a handler building a broken one.
    return (isinstance(verdict, Verdict) and verdict.action in ("allow", "deny", "drop")
            and isinstance(verdict.changes, dict) and isinstance(verdict.err_code, int)
            and isinstance(verdict.err_msg, str))


def _fold(hook: Hook, payload: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """Apply the changes a hook may make; refusedUserIDs accumulate across handlers."""
    out = dict(payload)
    for key, value in changes.items():
        if key not in hook.mutable:
            continue
        if key == "refusedUserIDs":
            prior = list(out.get("refusedUserIDs") or [])
            out[key] = prior + [u for u in (value or []) if u not in prior]
        else:
            out[key] = value
    return out
