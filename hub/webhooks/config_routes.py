"""/webhook/get_config and /webhook/set_config: a tenant admin reads and replaces the
tenant's hook configuration (hub/webhooks/config.py). Each admin token reaches its own
tenant's config only; there is no tenant ID in the body to get wrong."""

from __future__ import annotations

from typing import Any

from pydantic import model_validator
from sqlalchemy.exc import IntegrityError

from ..api.routing import Router
from ..context import Ctx
from ..core import Hub
from ..domain._schema import Req
from ..errors import BadArgument
from ..tx import Tx
from .config import InvalidConfig, TenantWebhooks

router = Router()


class GetConfigReq(Req):
    pass


class SetConfigReq(Req):
    config: dict[str, Any]

    @model_validator(mode="before")
    @classmethod
    def _wrapped(cls, data: Any) -> Any:
        # The likeliest mistake is posting the config itself; say so rather than
        # "config: Field required".
        if isinstance(data, dict) and "config" not in data and (
                "url" in data or any(str(k).startswith(("before", "after")) for k in data)):
            raise ValueError('send the configuration under "config": {"config": {...}}')
        return data


@router.post("/webhook/get_config", GetConfigReq, admin_only=True)
async def get_config(hub: Hub, ctx: Ctx, req: GetConfigReq) -> dict[str, Any]:
    """The tenant's webhook config, the secret that signs calls to its url, and when it
    was last written (config null: none)."""
    entry = await hub.webhook_configs.get(ctx.tenant_id)
    return entry.wire()


@router.post("/webhook/set_config", SetConfigReq, admin_only=True)
async def set_config(hub: Hub, ctx: Ctx, req: SetConfigReq) -> dict[str, Any]:
    """Replace the tenant's webhook config (validated; keys OpenIM has and imhub does not
    implement are listed in ignoredKeys)."""
    configs = hub.webhook_configs
    try:
        config = configs.parse(req.config)
        if config.url:
            await configs.check_url(config.url)
    except InvalidConfig as exc:
        raise BadArgument(f"config key '{exc.key}': {exc.msg}") from None

    async def write(tx: Tx) -> TenantWebhooks:
        entry = await configs.store(tx.session, ctx.tenant_id, config)
        tx.on_commit(lambda: configs.remember(ctx.tenant_id, entry))
        return entry

    try:
        entry = await hub.write(ctx, write)
    except IntegrityError:
        # A first write raced another (or a seed from a file): the row exists now.
        entry = await hub.write(ctx, write)
    return {**entry.wire(), "ignoredKeys": list(config.ignored)}
