"""The OpenAPI 3.1 document, built from the route table's body models."""

from __future__ import annotations

from typing import Any

from pydantic.json_schema import models_json_schema

from .. import __version__
from .registry import ROUTES

_ENVELOPE = {
    "type": "object",
    "required": ["errCode", "errMsg", "errDlt", "data"],
    "properties": {
        "errCode": {"type": "integer", "description": "0 on success"},
        "errMsg": {"type": "string"},
        "errDlt": {"type": "string"},
        "data": {},
    },
}


def openapi_document() -> dict[str, Any]:
    # One pass over every body model, so pydantic gives models that share a class name
    # (two modules' `ListReq`) distinct component names.
    models = list(dict.fromkeys(r.body for r in ROUTES))
    refs, top = models_json_schema([(m, "validation") for m in models],
                                   ref_template="#/components/schemas/{model}")
    schemas: dict[str, Any] = {"Envelope": _ENVELOPE, **top.get("$defs", {})}
    paths: dict[str, Any] = {}
    for r in ROUTES:
        body_ref = refs[(r.body, "validation")]["$ref"]
        paths[r.path] = {"post": {
            "summary": r.summary,
            "operationId": r.path.strip("/").replace("/", "_"),
            "tags": [r.path.strip("/").split("/")[0]],
            "parameters": [
                {"name": "token", "in": "header", "required": True, "schema": {"type": "string"},
                 "description": "tenant admin token" if r.admin_only
                 else "user token or tenant admin token"},
                {"name": "operationID", "in": "header", "required": False,
                 "schema": {"type": "string"}},
            ],
            "requestBody": {"required": True, "content": {"application/json": {
                "schema": {"$ref": body_ref}}}},
            "responses": {
                "200": {"description": "errCode 0, or a business error",
                        "content": {"application/json": {
                            "schema": {"$ref": "#/components/schemas/Envelope"}}}},
                "400": {"description": "malformed JSON or schema violation (errCode 1001)"},
                "401": {"description": "token invalid (1501) or kicked (1502)"},
                "413": {"description": "body over 1 MiB (errCode 1001)"},
            },
        }}
    return {
        "openapi": "3.1.0",
        "info": {"title": "imhub", "version": __version__},
        "paths": paths,
        "components": {"schemas": schemas},
    }
