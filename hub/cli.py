"""The `imhub` command line."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import click
import orjson

from .errors import ApiError, ConfigError
from .settings import Settings, load_settings

T = TypeVar("T")

_config_option = click.option(
    "--config", "config_path", type=click.Path(dir_okay=False), default=None,
    help="YAML config file (default: config/hub.yml when it exists).")


def _settings(config_path: str | None, **overrides: Any) -> Settings:
    import os

    if config_path is None and os.path.isfile("config/hub.yml"):
        config_path = "config/hub.yml"
    try:
        return load_settings(config_path, **overrides)
    except ConfigError as exc:
        _fail(str(exc))


def _fail(msg: str) -> Any:
    click.echo(f"imhub: error: {msg}", err=True)
    sys.exit(2)


def _run(coro_fn: Callable[[], Awaitable[T]]) -> T:
    try:
        return asyncio.run(coro_fn())  # type: ignore[arg-type]
    except ConfigError as exc:
        _fail(str(exc))
        raise  # unreachable


@click.group()
@click.version_option(package_name="imhub")
def main() -> None:
    """imhub: an IM server whose every event reaches your business backend."""


def run() -> None:
    """The console entry point: click's usage errors become one line and exit status 2."""
    try:
        main.main(standalone_mode=False)
    except click.UsageError as exc:
        _fail(exc.format_message().splitlines()[0])
    except click.Abort:
        sys.exit(1)
    except click.ClickException as exc:
        click.echo(f"imhub: error: {exc.format_message()}", err=True)
        sys.exit(exc.exit_code)


def _with_server(settings: Settings, host: str | None, port: int | None) -> Settings:
    server = settings.server.model_copy(update={
        k: v for k, v in (("host", host), ("port", port)) if v is not None})
    return settings.model_copy(update={"server": server})


@main.command()
@_config_option
@click.option("--host", default=None, help="Address to listen on (default 127.0.0.1).")
@click.option("--port", type=click.IntRange(0, 65535), default=None,
              help="Port (default 10002).")
def serve(config_path: str | None, host: str | None, port: int | None) -> None:
    """Serve the HTTP API and the WebSocket gateway, and run delivery workers."""
    settings = _with_server(_settings(config_path), host, port)
    _serve(settings)


def _serve(settings: Settings, banner: Callable[[], None] | None = None) -> None:
    import uvicorn

    from . import logs
    from .api.app import create_app
    from .core import Hub

    logs.setup()
    try:
        hub = Hub(settings)
    except ConfigError as exc:
        _fail(str(exc))
    app = create_app(hub)
    config = uvicorn.Config(app, host=settings.server.host, port=settings.server.port,
                            log_level="warning", ws_max_size=settings.server.max_body_bytes,
                            lifespan="on")
    server = uvicorn.Server(config)

    async def run() -> None:
        if banner:
            banner()
        await server.serve()

    asyncio.run(run())


@main.command()
@_config_option
def migrate(config_path: str | None) -> None:
    """Bring the database schema up to date."""
    from .db.engine import create_engine
    from .db.engine import migrate as do_migrate

    settings = _settings(config_path)

    async def run() -> None:
        engine = create_engine(settings.database.url, schema=settings.database.schema_name)
        try:
            await do_migrate(engine)
        finally:
            await engine.dispose()

    _run(run)
    click.echo("schema is up to date")


@main.group()
def tenant() -> None:
    """Create and list tenants."""


async def _with_session(settings: Settings, fn: Callable[[Any], Awaitable[T]]) -> T:
    from sqlalchemy.ext.asyncio import async_sessionmaker

    from .db.engine import create_engine
    from .db.engine import migrate as do_migrate

    engine = create_engine(settings.database.url, schema=settings.database.schema_name)
    try:
        await do_migrate(engine)
        async with async_sessionmaker(engine, expire_on_commit=False)() as session, \
                session.begin():
            return await fn(session)
    finally:
        await engine.dispose()


@tenant.command("create")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print {tenantID, adminToken} as JSON.")
@_config_option
def tenant_create(name: str, as_json: bool, config_path: str | None) -> None:
    """Create tenant NAME and print its tenantID and adminToken (shown once)."""
    from .tenants import create_tenant

    settings = _settings(config_path)
    try:
        t = _run(lambda: _with_session(settings, lambda s: create_tenant(s, name)))
    except ApiError as exc:
        _fail(exc.msg)
    if as_json:
        click.echo(orjson.dumps({"tenantID": t.tenant_id, "name": t.name,
                                 "adminToken": t.admin_token}).decode())
    else:
        click.echo(f"tenantID:   {t.tenant_id}\nname:       {t.name}\n"
                   f"adminToken: {t.admin_token}")


@tenant.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@_config_option
def tenant_list(as_json: bool, config_path: str | None) -> None:
    """List tenants."""
    from .tenants import list_tenants

    settings = _settings(config_path)
    rows = _run(lambda: _with_session(settings, list_tenants))
    if as_json:
        click.echo(orjson.dumps([{"tenantID": r.tenant_id, "name": r.name,
                                  "createTime": r.create_time} for r in rows]).decode())
        return
    for r in rows:
        click.echo(f"{r.tenant_id}\t{r.name}")


@main.command()
@_config_option
@click.option("--host", default=None)
@click.option("--port", type=click.IntRange(0, 65535), default=None)
def demo(config_path: str | None, host: str | None, port: int | None) -> None:
    """Serve with a demo tenant and two demo users, printing how to connect (make run)."""
    from .demo import prepare_demo

    settings = _with_server(_settings(config_path), host, port)
    info = _run(lambda: prepare_demo(settings))

    def banner() -> None:
        click.echo(info)

    _serve(settings, banner)
