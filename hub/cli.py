"""The `imhub` command line."""

from __future__ import annotations

import asyncio
import errno
import sys
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn, TypeVar

import click
import orjson

from .errors import ApiError, ConfigError
from .runtime import run_node
from .settings import Settings, load_settings

T = TypeVar("T")

_config_option = click.option(
    "--config", "config_path", type=click.Path(dir_okay=False), default=None,
    help="YAML config file (default: config/hub.yml when it exists).")


def _settings(config_path: str | None, *, plugins: bool = True, **overrides: Any) -> Settings:
    """The config, or a one-line error and exit status 2. `plugins`: also build the
    listed plugins, so that a command that never starts them (tenant, migrate, events)
    refuses a config file with a bad plugin as `serve` does; `serve` and `worker` build
    them with the hub."""
    import os

    from .plugin import load_plugins

    if config_path is None and os.path.isfile("config/hub.yml"):
        config_path = "config/hub.yml"
    try:
        settings = load_settings(config_path, **overrides)
        if plugins:
            load_plugins(settings.plugins)
    except ConfigError as exc:
        _fail(str(exc))
    return settings


def _fail(msg: str) -> NoReturn:
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
    """The settings with --host and --port applied, once the address is known to be one
    this machine can listen on: a bad one is a one-line error before anything is
    written (the database is migrated before uvicorn binds)."""
    import socket

    server = settings.server.model_copy(update={
        k: v for k, v in (("host", host), ("port", port)) if v is not None})
    flag = "--host" if host is not None else "config key 'server.host'"
    try:
        infos = socket.getaddrinfo(server.host, server.port, type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as exc:
        _fail(f"{flag} {server.host!r}: not an address to listen on ({exc})")
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            probe.bind(address)
        except OSError as exc:
            where = (f"{'--port' if port is not None else 'port'} {server.port}"
                     if exc.errno == errno.EADDRINUSE else f"{flag} {server.host!r}")
            _fail(f"{where}: cannot listen on {server.host}:{server.port}: {exc.strerror}")
    return settings.model_copy(update={"server": server})


@main.command()
@_config_option
@click.option("--host", default=None, help="Address to listen on (default 127.0.0.1).")
@click.option("--port", type=click.IntRange(0, 65535), default=None,
              help="Port (default 10002).")
def serve(config_path: str | None, host: str | None, port: int | None) -> None:
    """Serve the HTTP API and the WebSocket gateway, and run delivery workers."""
    settings = _with_server(_settings(config_path, plugins=False), host, port)
    _serve(settings)


def _serve(settings: Settings, banner: Callable[[], None] | None = None) -> None:
    import uvicorn

    from . import logs
    from .api.app import create_app
    from .core import Hub
    from .gateway import uvicorn_options

    logs.setup()
    try:
        hub = Hub(settings)
    except ConfigError as exc:
        _fail(str(exc))
    app = create_app(hub)
    config = uvicorn.Config(app, host=settings.server.host, port=settings.server.port,
                            log_level="warning", lifespan="on",
                            **uvicorn_options(settings))  # the gateway's WebSocket options
    server = uvicorn.Server(config)

    async def run() -> None:
        if banner:
            banner()
        await server.serve()

    run_node(run())


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

    settings = _with_server(_settings(config_path, plugins=False), host, port)
    info = _run(lambda: prepare_demo(settings))

    def banner() -> None:
        click.echo(info)

    _serve(settings, banner)


@main.command()
@click.option("--api", "api_addr", required=True,
              help="The server's HTTP address, e.g. http://127.0.0.1:10002 "
                   "(the WebSocket address is derived from it).")
@click.option("--user", "user_id", required=True, help="Your userID.")
@click.option("--token", required=True, help="Your user token (from /auth/get_user_token).")
@click.option("--platform", "platform_id", type=click.IntRange(1, 15), default=7,
              show_default=True, help="The platformID the token was issued for (7 Linux).")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None,
              help="Where the local message store lives (default ~/.imhub/chat/HOST_PORT).")
def chat(api_addr: str, user_id: str, token: str, platform_id: int,
         data_dir: str | None) -> None:
    """A terminal chat client on the client SDK."""
    from .sdk.chat import run_chat
    from .sdk.config import ws_addr_for

    try:
        ws_addr_for(api_addr)
    except ValueError as exc:
        _fail(f"--api: {exc}")
    try:
        status = asyncio.run(run_chat(api_addr=api_addr, user_id=user_id, token=token,
                                      platform_id=platform_id, data_dir=data_dir))
    except KeyboardInterrupt:  # Ctrl-C is a way to leave, not a crash
        status = 130
    sys.exit(status)


@main.command()
@_config_option
def worker(config_path: str | None) -> None:
    """Run webhook delivery workers alone, without the HTTP API (stop with SIGTERM)."""
    settings = _settings(config_path, plugins=False)
    _run_worker(settings)


def _run_worker(settings: Settings) -> None:
    import signal

    from . import logs
    from .core import Hub

    logs.setup()
    try:
        hub = Hub(settings)
    except ConfigError as exc:
        _fail(str(exc))

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await hub.start()
        await hub.start_delivery()  # even where `serve` nodes leave delivery to workers
        try:
            await stop.wait()
        finally:
            await hub.close()

    run_node(run())


@main.group()
def events() -> None:
    """List after events with their webhook deliveries; replay them."""


def _millis(value: str | None, flag: str) -> int | None:
    """Unix milliseconds, or an ISO 8601 time (UTC unless it says otherwise)."""
    if value is None:
        return None
    if value.isdigit():
        return int(value)
    from datetime import UTC, datetime

    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        _fail(f"{flag}: expected unix milliseconds or an ISO 8601 time, got {value!r}")
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp() * 1000)


async def _with_engine(settings: Settings, tenant_id: str, fn: Callable[[Any], Awaitable[T]]
                       ) -> T:
    from sqlalchemy import select

    from .db.engine import create_engine
    from .db.engine import migrate as do_migrate
    from .db.models import Tenant
    from .errors import NotFound

    engine = create_engine(settings.database.url, schema=settings.database.schema_name)
    try:
        await do_migrate(engine)
        async with engine.connect() as conn:
            found = (await conn.execute(
                select(Tenant.tenant_id).where(Tenant.tenant_id == tenant_id))).first()
        if found is None:
            raise NotFound(f"tenant {tenant_id} not found")
        return await fn(engine)
    finally:
        await engine.dispose()


_tenant_option = click.option("--tenant", "tenant_id", required=True, help="The tenantID.")


@events.command("list")
@_tenant_option
@click.option("--status", type=click.Choice(["pending", "delivered", "failed"]), default=None,
              help="Only events with a delivery in this state.")
@click.option("--command", "command", default=None,
              help="Only this callbackCommand (or hook name, e.g. afterSendSingleMsg).")
@click.option("--endpoint", "endpoint_id", default=None, help="Only deliveries to this endpoint.")
@click.option("--since", default=None, help="occurredAt from (unix ms or ISO 8601).")
@click.option("--until", default=None, help="occurredAt up to (unix ms or ISO 8601).")
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True)
@click.option("--page", type=click.IntRange(1), default=1, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the events/list answer as JSON.")
@_config_option
def events_list(tenant_id: str, status: str | None, command: str | None,
                endpoint_id: str | None, since: str | None, until: str | None, limit: int,
                page: int, as_json: bool, config_path: str | None) -> None:
    """List a tenant's after events, newest first, with their deliveries."""
    from .webhooks.replay import list_events

    settings = _settings(config_path)
    since_ms, until_ms = _millis(since, "--since"), _millis(until, "--until")
    try:
        out = _run(lambda: _with_engine(settings, tenant_id, lambda engine: list_events(
            engine, tenant_id, status=status, command=command, endpoint_id=endpoint_id,
            since=since_ms, until=until_ms, page=page, size=limit)))
    except ApiError as exc:
        _fail(exc.msg)
    if as_json:
        click.echo(orjson.dumps(out).decode())
        return
    _print_events(out)


def _print_events(out: dict[str, Any]) -> None:
    from datetime import UTC, datetime

    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{out['total']} events", title_justify="left")
    table.add_column("eventID", no_wrap=True)  # whole, so it can be copied into replay
    for column in ("callbackCommand", "occurredAt", "deliveries", "last error"):
        table.add_column(column, overflow="fold")
    for ev in out["events"]:
        when = datetime.fromtimestamp(ev["occurredAt"] / 1000, UTC).strftime(
            "%Y-%m-%d %H:%M:%S")
        deliveries = "\n".join(f"{d['endpointID']}: {d['status']} ({d['attemptCount']})"
                               for d in ev["deliveries"]) or "-"
        errors = "\n".join(d["lastError"] for d in ev["deliveries"] if d["lastError"])
        table.add_row(ev["eventID"], ev["callbackCommand"], when, deliveries, errors)
    Console().print(table)


@events.command("replay")
@_tenant_option
@click.option("--event", "event_ids", multiple=True,
              help="An eventID to send again (repeat the flag for several).")
@click.option("--endpoint", "endpoint_id", default=None,
              help="Replay this endpoint's failed deliveries.")
@click.option("--status", type=click.Choice(["failed"]), default="failed", show_default=True)
@click.option("--since", default=None, help="occurredAt from (unix ms or ISO 8601).")
@click.option("--until", default=None, help="occurredAt up to (unix ms or ISO 8601).")
@_config_option
def events_replay(tenant_id: str, event_ids: tuple[str, ...], endpoint_id: str | None,
                  status: str, since: str | None, until: str | None,
                  config_path: str | None) -> None:
    """Send events again: --event ID..., or --endpoint ID for its failed deliveries.

    Works while the server runs: its delivery workers pick the requeued deliveries up.
    """
    from .webhooks.replay import count_failed, replay_events, replay_failed

    if bool(event_ids) == bool(endpoint_id):
        _fail("give --event (one or more) or --endpoint, not both")
    settings = _settings(config_path)
    since_ms, until_ms = _millis(since, "--since"), _millis(until, "--until")

    async def by_events(engine: Any) -> int:
        return await replay_events(engine, tenant_id, list(event_ids))

    async def by_endpoint(engine: Any) -> int:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

        assert endpoint_id is not None
        total = await count_failed(engine, tenant_id, endpoint_id, since_ms, until_ms)
        with Progress("[progress.description]{task.description}", BarColumn(),
                      MofNCompleteColumn(), TimeRemainingColumn(), transient=True,
                      disable=total < 2_000 or not sys.stderr.isatty()) as bar:
            task = bar.add_task("requeueing", total=total)
            return await replay_failed(engine, tenant_id, endpoint_id, since=since_ms,
                                       until=until_ms,
                                       progress=lambda n: bar.advance(task, n))

    try:
        n = _run(lambda: _with_engine(settings, tenant_id,
                                      by_events if event_ids else by_endpoint))
    except ApiError as exc:
        _fail(exc.msg)
    click.echo(f"requeued {n} deliveries")
