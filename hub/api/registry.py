"""Every HTTP route of the API, gathered from the domain modules."""

from __future__ import annotations

from ..domain import friends, users
from .routing import Route

ROUTES: list[Route] = [
    *users.router.routes,
    *friends.router.routes,
]
