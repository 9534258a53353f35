"""Logging that carries the request's operationID into every line it causes."""

from __future__ import annotations

import contextvars
import logging

operation_id: contextvars.ContextVar[str] = contextvars.ContextVar("operation_id", default="-")


class _OperationIDFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "operationID"):
            record.operationID = operation_id.get()
        return True


def setup(level: str = "INFO") -> None:
    handler = logging.StreamHandler()
    handler.addFilter(_OperationIDFilter())
    handler.setFormatter(logging.Formatter(
        "%(asctime)s %(levelname)s %(name)s [op=%(operationID)s] %(message)s"))
    root = logging.getLogger("imhub")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
