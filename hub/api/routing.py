"""A route table for POST-JSON routes: body model, who may call, and the handler."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel

if TYPE_CHECKING:
    from ..context import Ctx
    from ..core import Hub

M = TypeVar("M", bound=BaseModel)
Handler = Callable[["Hub", "Ctx", Any], Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class Route:
    path: str
    body: type[BaseModel]
    handler: Handler
    admin_only: bool
    summary: str


class Router:
    def __init__(self) -> None:
        self.routes: list[Route] = []

    def post(self, path: str, body: type[M], *, admin_only: bool = False
             ) -> Callable[[Callable[[Hub, Ctx, M], Awaitable[Any]]],
                           Callable[[Hub, Ctx, M], Awaitable[Any]]]:
        def register(fn: Callable[[Hub, Ctx, M], Awaitable[Any]]
                     ) -> Callable[[Hub, Ctx, M], Awaitable[Any]]:
            doc = (fn.__doc__ or "").strip().splitlines()
            self.routes.append(Route(path, body, fn, admin_only, doc[0] if doc else ""))
            return fn
        return register
