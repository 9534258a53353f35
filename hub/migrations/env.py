"""Alembic environment: migrations run on a connection that imhub hands over."""

from __future__ import annotations

from alembic import context

from hub.db import schema

config = context.config
target_metadata = schema.metadata


def _run() -> None:
    connection = config.attributes.get("connection")
    if connection is None:
        raise RuntimeError("run migrations through `imhub migrate`, which supplies the connection")
    context.configure(connection=connection, target_metadata=target_metadata,
                      render_as_batch=connection.dialect.name == "sqlite")
    with context.begin_transaction():
        context.run_migrations()


_run()
