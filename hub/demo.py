"""`make run`: a demo tenant with two users, and how to reach them."""

from __future__ import annotations

from sqlalchemy import select

from .auth import hash_admin_token, new_admin_token
from .context import Actor, Ctx
from .core import Hub
from .db.models import Tenant
from .domain import users
from .settings import Settings
from .tenants import create_tenant

DEMO_TENANT = "demo"
DEMO_USERS = ("alice", "bob")


async def prepare_demo(settings: Settings) -> str:
    """Create (or refresh) the demo tenant; a new admin token each run, since only hashes
    are stored. Returns the text to print."""
    hub = Hub(settings)
    await hub.start()
    try:
        async with hub.sessions() as s, s.begin():
            row = (await s.execute(select(Tenant).where(Tenant.name == DEMO_TENANT))
                   ).scalar_one_or_none()
            if row is None:
                t = await create_tenant(s, DEMO_TENANT)
                tenant_id, admin = t.tenant_id, t.admin_token
            else:
                admin = new_admin_token()
                row.admin_token_hash = hash_admin_token(admin)
                tenant_id = row.tenant_id
        ctx = Ctx(Actor(tenant_id), "demo")
        async with hub.read() as s:
            from .domain._lookup import users_by_id
            known = await users_by_id(s, tenant_id, DEMO_USERS)
        missing = [u for u in DEMO_USERS if u not in known]
        if missing:
            await users.user_register(hub, ctx, users.RegisterReq(users=[
                users.UserInfo(userID=u, nickname=u.title()) for u in missing]))
        tokens = {u: (await users.get_user_token(hub, ctx, users.TokenReq(userID=u,
                                                                          platformID=5)))["token"]
                  for u in DEMO_USERS}
    finally:
        await hub.close()
    host, port = settings.server.host, settings.server.port
    base = f"http://{host}:{port}"
    return "\n".join([
        f"imhub demo on {base}  (database: {settings.database.url})",
        f"  tenantID    {tenant_id}",
        f"  adminToken  {admin}",
        *[f"  {u:<11} token {tok}" for u, tok in tokens.items()],
        "",
        "Try:",
        f"  curl -s {base}/user/get_users_info -H 'token: {admin}' "
        "-d '{\"userIDs\": [\"alice\", \"bob\"]}'",
        f"  curl -s {base}/friend/add_friend -H 'token: {tokens['alice']}' "
        "-d '{\"fromUserID\": \"alice\", \"toUserID\": \"bob\", \"reqMsg\": \"hi\"}'",
        f"  WebSocket: ws://{host}:{port}/ws?sendID=alice&platformID=5&token=<alice's token>",
        f"  Chat in a terminal: .venv/bin/imhub chat --api {base} --user alice "
        "--token <alice's token>",
    ])
