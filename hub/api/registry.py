"""Every HTTP route of the API, gathered from the domain modules."""

from __future__ import annotations

from .. import presence
from ..domain import conversations, friends, group_members, groups, messages, sending, users
from ..webhooks import config_routes as webhook_config
from ..webhooks import endpoints as webhook_endpoints
from ..webhooks import replay as webhook_replay
from .routing import Route

ROUTES: list[Route] = [
    *users.router.routes,
    *presence.router.routes,
    *friends.router.routes,
    *groups.router.routes,
    *group_members.router.routes,
    *sending.router.routes,
    *messages.router.routes,
    *conversations.router.routes,
    *webhook_config.router.routes,
    *webhook_endpoints.router.routes,
    *webhook_replay.router.routes,
]
