"""Before hooks over HTTP: the tenant's backend as one more handler on the bus.

For each before hook a tenant enabled, the bus calls `WebhookHandler.before`, which POSTs
`{url}/{callbackCommand}` (signed, Standard Webhooks) and turns the answer into a verdict:

- `actionCode != 0`: the backend declines to decide; allow unchanged.
- `nextCode == 1`: deny with its errCode (5000 when 0) and errMsg.
- `nextCode == 2`: drop (messages; the bus denies elsewhere).
- otherwise allow, with the hook's changeable fields the answer carries (null: unchanged).

Anything else is a failure that the bus settles by the hook's `failedContinue`: a status
other than 2xx (a redirect is never followed), a timeout, a refused connection or one the
SSRF guard refused, a body that is not a JSON object or has wrongly typed fields.
"""

from __future__ import annotations

import functools
import logging
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import orjson

from ..bus.catalogue import Hook
from ..bus.handler import BeforeCall, Handler
from ..bus.verdict import ALLOW, Verdict
from ..clock import new_id, now_ms
from .config import DEFAULT_PRIORITY, MAX_TIMEOUT, BeforeHookConfig, WebhookConfigs
from .request import signed_headers
from .transport import FastTransport

__all__ = ["WebhookFailed", "WebhookHandler", "callback_url", "verdict_of"]

log = logging.getLogger("imhub.webhooks")

# A verdict is a few fields; a backend answering more than this is answering garbage.
MAX_RESPONSE_BYTES = 64 * 1024
# Changeable fields that must be lists of IDs; _fold would iterate a string letter by letter.
_ID_LISTS = frozenset({"refusedUserIDs", "userIDList", "atUserIDList"})


class WebhookFailed(Exception):
    """The backend's answer is not a verdict (status, body or types)."""


@functools.lru_cache(maxsize=4096)
def callback_url(base: str, command: str) -> str:
    """`{base}/{command}`, keeping any query string of the base after the new path."""
    parts = urlsplit(base)
    path = parts.path.rstrip("/") + "/" + command
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))


class WebhookHandler(Handler):
    """Calls each tenant's backend for the before hooks its config enables."""

    name = "webhook"
    priority = DEFAULT_PRIORITY
    prompt_cancel = True  # awaits only the transport, which gives up at once
    # For a tenant not loaded yet (a bus that skips prepare); otherwise the hook's timeout.
    timeout = MAX_TIMEOUT
    failed_continue = False

    def __init__(self, configs: WebhookConfigs, *,
                 transport: FastTransport | None = None) -> None:
        self._configs = configs
        # One pool per process; the guard vets every address at connect time, so a host
        # that re-resolves to a private address after set_config is still refused.
        self._transport = transport or FastTransport(
            connect_guard=configs.guard.resolve, max_response_bytes=MAX_RESPONSE_BYTES)

    def _hook_config(self, hook: Hook, tenant_id: str) -> BeforeHookConfig | None:
        entry = self._configs.cached(tenant_id)
        if entry is None or entry.config is None:
            return None
        return entry.config.before(hook.name)

    async def prepare(self, tenant_id: str) -> None:
        await self._configs.get(tenant_id)

    def prepared(self, tenant_id: str) -> bool:
        return self._configs.get_now(tenant_id) is not None

    def wants(self, hook: Hook, tenant_id: str) -> bool:
        entry = self._configs.cached(tenant_id)
        if entry is None:
            return True  # not loaded (a bus that skips prepare): `before` decides
        # _hook_config's lookup, on the entry in hand: asked twice for every message sent.
        return entry.config is not None and entry.config.before(hook.name) is not None

    def priority_for(self, tenant_id: str) -> int:
        entry = self._configs.cached(tenant_id)
        if entry is None or entry.config is None:
            return self.priority
        return entry.config.priority

    def timeout_for(self, hook: Hook, tenant_id: str) -> float:
        hc = self._hook_config(hook, tenant_id)
        return hc.timeout if hc is not None else self.timeout

    def failed_continue_for(self, hook: Hook, tenant_id: str) -> bool:
        hc = self._hook_config(hook, tenant_id)
        # Unknown settings (the config could not be read) must not let a veto be skipped.
        return hc.failedContinue if hc is not None else False

    async def before(self, call: BeforeCall) -> Verdict:
        entry = await self._configs.get(call.tenant_id)
        config = entry.config
        hc = config.before(call.hook.name) if config is not None else None
        occurred = now_ms()
        keys = entry.signing_secrets(occurred)
        if config is None or hc is None or not keys:
            return ALLOW
        if call.hook.messages and not hc.takes_type(call.payload.get("contentType")):
            return ALLOW
        msg_id = new_id("msg")
        envelope = {
            "callbackCommand": call.hook.callback_command,
            "eventID": msg_id,
            "tenantID": call.tenant_id,
            "operationID": call.operation_id,
            "occurredAt": occurred,
        }
        body = orjson.dumps({**envelope, **call.payload, **envelope})
        headers = signed_headers(keys, msg_id, occurred // 1000, body, call.operation_id)
        url = callback_url(config.url, call.hook.callback_command)
        # The bus bounds the whole call by timeout_for (the hook's timeout); the transport's
        # own phase limits only make a dead connect or read fail sooner with a clear error.
        try:
            resp = await self._transport.post(url, body, headers, timeout=hc.timeout)
        except httpx.TimeoutException as exc:
            raise TimeoutError(f"{url}: {exc or type(exc).__name__}") from None
        except httpx.HTTPError as exc:
            cause = exc.__cause__
            detail = f"{exc}: {cause}" if cause is not None else str(exc)
            raise WebhookFailed(f"{url}: {detail or type(exc).__name__}") from None
        if resp.truncated:
            raise WebhookFailed(f"{url}: response body over {MAX_RESPONSE_BYTES} bytes")
        return verdict_of(call.hook, resp.status, resp.body, url)

    async def start(self) -> None:
        # After migrations (the bus starts after them): tenants named by a file get it now.
        seeded = await self._configs.seed()
        if seeded:
            log.info("seeded the webhook config of %d tenant(s) from files", seeded)

    async def close(self) -> None:
        await self._configs.close()
        await self._transport.aclose()


def _int_field(data: dict[str, Any], key: str) -> int:
    value = data.get(key)
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int):
        raise WebhookFailed(f"{key} is {type(value).__name__}, not an integer")
    return value


def verdict_of(hook: Hook, status: int, body: bytes, url: str = "") -> Verdict:
    """The verdict a backend's HTTP answer gives; WebhookFailed if it gives none."""
    where = f"{url}: " if url else ""
    if 300 <= status < 400:
        raise WebhookFailed(f"{where}HTTP {status}: redirects are not followed")
    if not 200 <= status < 300:
        raise WebhookFailed(f"{where}HTTP {status}")
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise WebhookFailed(f"{where}the response body is not JSON") from None
    if not isinstance(data, dict):
        raise WebhookFailed(f"{where}the response body is not a JSON object")
    try:
        action_code = _int_field(data, "actionCode")
        next_code = _int_field(data, "nextCode")
        err_code = _int_field(data, "errCode")
    except WebhookFailed as exc:
        raise WebhookFailed(f"{where}{exc}") from None
    err_msg = data.get("errMsg")
    if err_msg is not None and not isinstance(err_msg, str):
        raise WebhookFailed(f"{where}errMsg is {type(err_msg).__name__}, not a string")
    if action_code != 0:
        return ALLOW
    if next_code == 1:
        return Verdict.deny(err_code, err_msg or "")
    if next_code == 2:
        return Verdict.drop()
    changes: dict[str, Any] = {}
    for key in hook.mutable:
        value = data.get(key)
        if value is None:
            continue
        if key in _ID_LISTS and not (isinstance(value, list)
                                     and all(isinstance(v, str) for v in value)):
            raise WebhookFailed(f"{where}{key} must be a list of strings")
        changes[key] = value
    return Verdict.allow(changes) if changes else ALLOW
