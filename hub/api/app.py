"""The Starlette application: the HTTP API, the WebSocket gateway and the operator routes."""

from __future__ import annotations

import logging
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import orjson
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute
from starlette.routing import Route as StarletteRoute

from .. import logs
from ..client_json import NUL_REFUSED, nul_path
from ..context import Ctx, check_operation_id
from ..core import Hub
from ..errors import ApiError, BadArgument, NoPermission
from ..metrics import requests_total
from .routing import Route

log = logging.getLogger("imhub.api")


def envelope(code: int = 0, msg: str = "", dlt: str = "", data: Any = None,
             status: int = 200) -> Response:
    body = orjson.dumps({"errCode": code, "errMsg": msg, "errDlt": dlt, "data": data},
                        option=orjson.OPT_NON_STR_KEYS)
    return Response(body, status_code=status, media_type="application/json")


def format_validation(exc: ValidationError) -> str:
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"]) or "body"
    return f"{loc}: {err['msg']}"


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _TooLarge()
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _TooLarge()
        chunks.append(chunk)
    return b"".join(chunks)


class _TooLarge(BadArgument):
    status = 413
    default_msg = "request body over the size limit"


def parse_json_object(raw: bytes) -> dict[str, Any]:
    if not raw.strip():
        return {}
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadArgument(f"malformed JSON: {exc}") from None
    if not isinstance(data, dict):
        raise BadArgument("the body must be a JSON object")
    where = nul_path(data, raw)
    if where is not None:
        raise BadArgument(f"{where}: {NUL_REFUSED}")
    return data


def _endpoint(hub: Hub, route: Route) -> Callable[[Request], Awaitable[Response]]:
    limit = hub.settings.server.max_body_bytes

    async def endpoint(request: Request) -> Response:
        op_id = request.headers.get("operationID") or secrets.token_hex(8)
        logs.operation_id.set(op_id)
        try:
            check_operation_id(op_id)
            data = parse_json_object(await _read_body(request, limit))
            actor = await hub.tokens.verify(request.headers.get("token", ""))
            if route.admin_only and not actor.is_admin:
                raise NoPermission("this route needs the tenant admin token")
            try:
                req = route.body.model_validate(data)
            except ValidationError as exc:
                raise BadArgument(format_validation(exc)) from None
            result = await route.handler(hub, Ctx(actor, op_id), req)
        except ApiError as exc:
            requests_total.labels(route.path, str(exc.code)).inc()
            return envelope(exc.code, exc.msg, exc.detail, status=exc.status)
        except Exception:
            log.exception("unhandled error in %s", route.path)
            requests_total.labels(route.path, "500").inc()
            return envelope(500, "internal error", status=500)
        requests_total.labels(route.path, "0").inc()
        return envelope(data=result)

    return endpoint


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = 1004 if exc.status_code == 404 else 1001
    return envelope(code, exc.detail or "error", status=exc.status_code)


def create_app(hub: Hub, *, extra_routes: list[BaseRoute] | None = None,
               manage_lifecycle: bool = True) -> Starlette:
    from . import ops
    from .registry import ROUTES

    routes: list[BaseRoute] = [
        StarletteRoute(r.path, _endpoint(hub, r), methods=["POST"]) for r in ROUTES
    ]
    routes += ops.routes(hub)
    routes.append(hub.gateway.route())  # the WebSocket gateway at /ws
    routes += extra_routes or []

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        if manage_lifecycle:
            await hub.start()
        try:
            yield
        finally:
            if manage_lifecycle:
                await hub.close()

    app = Starlette(routes=routes, lifespan=lifespan,
                    exception_handlers={HTTPException: _http_error})
    app.state.hub = hub
    return app
