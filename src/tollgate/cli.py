"""The ``tollgate`` command."""

from __future__ import annotations

import asyncio
import getpass
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Annotated, TypeVar

import typer
import uvicorn
from pydantic import ValidationError

from tollgate import __version__
from tollgate.accounts.jobs import run_monthly_refill
from tollgate.broker import audit, demo, tokens
from tollgate.core.crypto import Keyring, generate_key_spec
from tollgate.core.database import transaction
from tollgate.core.encrypted import reencrypt_all
from tollgate.core.errors import NotFound, TollgateError
from tollgate.core.logging import configure_logging
from tollgate.core.runtime import Runtime
from tollgate.core.settings import (
    HELPDESK_FILE,
    Settings,
    get_settings,
    read_secrets_file,
    write_secrets_file,
)
from tollgate.data.demo import create_helpdesk
from tollgate.data.tools import UPSTREAM_NAME as DATA_UPSTREAM
from tollgate.gateway import admin as upstream_admin
from tollgate.gateway import servers as virtual_servers
from tollgate.gateway import service as upstream_service
from tollgate.gateway.catalogue import UpstreamListing
from tollgate.gateway.guards import UpstreamIsSelf, check_upstream_url
from tollgate.gateway.schemas import UpstreamCreate, VirtualServerCreate
from tollgate.identity import service as users
from tollgate.identity.models import Role
from tollgate.migrate import upgrade_to_head
from tollgate.wiring import encrypted_columns, install_identity_hooks

app = typer.Typer(help="Tollgate: MCP gateway and control plane.", no_args_is_help=True)
token_app = typer.Typer(help="Access tokens for MCP servers.", no_args_is_help=True)
app.add_typer(token_app, name="token")
upstream_app = typer.Typer(help="Upstream MCP servers behind /mcp.", no_args_is_help=True)
app.add_typer(upstream_app, name="upstream")
server_app = typer.Typer(
    help="Virtual servers: curated tool sets at /servers/<name>/mcp.", no_args_is_help=True
)
app.add_typer(server_app, name="server")

T = TypeVar("T")

MIN_PASSWORD_LENGTH = 8

GRACEFUL_SHUTDOWN_SECONDS = 10
"""On shutdown, in-flight requests get this long; open MCP streams are then closed."""


def _settings() -> Settings:
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_json)
    return settings


def _with_runtime(settings: Settings, work: Callable[[Runtime], Awaitable[T]]) -> T:
    async def _run() -> T:
        runtime = Runtime.build(settings)
        install_identity_hooks()
        try:
            return await work(runtime)
        finally:
            await runtime.close()

    try:
        return asyncio.run(_run())
    except TollgateError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(1) from exc


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Address to listen on")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on")] = None,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes")] = 1,
) -> None:
    """Migrate the database, then serve the API and the MCP endpoint."""
    settings = _settings()
    if workers > 1 and not settings.redis_url:
        typer.echo(
            f"error: --workers {workers} needs a shared cache: set REDIS_URL (rate limits, "
            "key revocation, MCP sessions and the live feed must hold across processes)",
            err=True,
        )
        raise typer.Exit(2)
    upgrade_to_head(settings.resolved_database_url)
    uvicorn.run(
        "tollgate.app:app_factory",
        factory=True,
        host=host or settings.host,
        port=port or settings.port,
        workers=workers,
        log_config=None,
        proxy_headers=False,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
    )


@app.command("init-db")
def init_db() -> None:
    """Create or upgrade the database schema to the newest revision."""
    settings = _settings()
    upgrade_to_head(settings.resolved_database_url)
    typer.echo("database is up to date")


def _read_password() -> str:
    if not sys.stdin.isatty():
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass("Password: ")
        if getpass.getpass("Repeat password: ") != password:
            typer.echo("error: passwords do not match", err=True)
            raise typer.Exit(1)
    if len(password) < MIN_PASSWORD_LENGTH:
        typer.echo(f"error: the password needs at least {MIN_PASSWORD_LENGTH} characters", err=True)
        raise typer.Exit(1)
    return password


@app.command("create-admin")
def create_admin(
    username: Annotated[str, typer.Option(help="Sign-in name")],
    email: Annotated[str, typer.Option(help="Email address")],
    superuser: Annotated[bool, typer.Option("--superuser", help="May manage users")] = False,
) -> None:
    """Create an admin user; the password is prompted for (or read from standard input)."""
    settings = _settings()
    password = _read_password()
    upgrade_to_head(settings.resolved_database_url)

    async def work(runtime: Runtime) -> int:
        async with transaction(runtime.sessions) as session:
            user = await users.create_user(
                session,
                username=username,
                email=email,
                password=password,
                role=Role.ADMIN,
                is_superuser=superuser,
            )
            return user.id

    user_id = _with_runtime(settings, work)
    kind = "superuser" if superuser else "admin"
    typer.echo(f"created {kind} {username} (id {user_id})")


@app.command("list-admins")
def list_admins() -> None:
    """List admin users."""
    settings = _settings()

    async def work(runtime: Runtime) -> list[tuple[int, str, str, bool, bool]]:
        async with runtime.sessions() as session:
            found = await users.list_users(session, role=Role.ADMIN, limit=10_000)
            return [(u.id, u.username, u.email, u.is_superuser, u.is_active) for u in found]

    for user_id, username, email, is_superuser, active in _with_runtime(settings, work):
        flags = ", ".join(
            f for f, on in (("superuser", is_superuser), ("inactive", not active)) if on
        )
        typer.echo(f"{user_id}\t{username}\t{email}" + (f"\t({flags})" if flags else ""))


@app.command("delete-admin")
def delete_admin(
    username: Annotated[str, typer.Option(help="Sign-in name of the admin to delete")],
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation")] = False,
) -> None:
    """Delete an admin user."""
    settings = _settings()
    if not yes and sys.stdin.isatty():
        typer.confirm(f"Delete admin {username}?", abort=True)

    async def work(runtime: Runtime) -> bool:
        async with transaction(runtime.sessions) as session:
            user = await users.find_user_by_login(session, username)
            if user is None or user.role != Role.ADMIN:
                return False
            await users.delete_user(session, user, runtime)
            return True

    if not _with_runtime(settings, work):
        typer.echo(f"error: no admin called {username}", err=True)
        raise typer.Exit(1)
    typer.echo(f"deleted admin {username}")


@app.command("rotate-keys")
def rotate_keys(
    new_key: Annotated[
        bool, typer.Option(help="Add a new primary key to the data directory's keyring first")
    ] = True,
) -> None:
    """Re-encrypt every stored secret under the primary key.

    With keys managed in the data directory, a new key is generated first and the old keys
    are kept for decryption. With ``TOLLGATE_ENCRYPTION_KEYS`` set, put the new key first in
    that list yourself and run this with ``--no-new-key``.
    """
    settings = _settings()
    if new_key:
        settings = _add_primary_key(settings)

    async def work(runtime: Runtime) -> dict[str, int]:
        async with transaction(runtime.sessions) as session:
            return await reencrypt_all(session, runtime.keyring, encrypted_columns())

    counts = _with_runtime(settings, work)
    typer.echo(f"primary key: {Keyring.parse(settings.encryption_keys).primary_id}")
    for column, count in counts.items():
        typer.echo(f"{column}: {count} re-encrypted")


def _add_primary_key(settings: Settings) -> Settings:
    stored = read_secrets_file(settings.secrets_file)
    if stored.get("encryption_keys") != settings.encryption_keys:
        typer.echo(
            "error: encryption keys come from TOLLGATE_ENCRYPTION_KEYS; add the new key there "
            "and run rotate-keys --no-new-key",
            err=True,
        )
        raise typer.Exit(1)
    stored["encryption_keys"] = f"{generate_key_spec()},{settings.encryption_keys}"
    write_secrets_file(settings.secrets_file, stored)
    return settings.model_copy(update={"encryption_keys": stored["encryption_keys"]})


@app.command()
def refill() -> None:
    """Top up every account due for its monthly allocation (safe to run any time)."""
    settings = _settings()
    upgrade_to_head(settings.resolved_database_url)
    count = _with_runtime(settings, lambda runtime: run_monthly_refill(runtime.sessions))
    typer.echo(f"refilled {count} accounts")


@token_app.command("create")
def token_create(
    user: Annotated[str, typer.Option(help="Email or username of the token's user")],
    name: Annotated[str, typer.Option(help="What the token is for")],
    scope: Annotated[list[str], typer.Option(help="lease (default) or read")] = ["lease"],  # noqa: B006
    expires_days: Annotated[
        int, typer.Option(min=0, help="Days until it expires; 0 for never")
    ] = 90,
) -> None:
    """Issue an access token for an MCP server; the token is printed once."""
    settings = _settings()
    upgrade_to_head(settings.resolved_database_url)

    async def work(runtime: Runtime) -> str:
        async with transaction(runtime.sessions) as session:
            owner = await users.find_user_by_login(session, user)
            if owner is None:
                raise NotFound(f"no user {user}")
            expires_at = datetime.now(UTC) + timedelta(days=expires_days) if expires_days else None
            issued = await tokens.issue(
                session,
                owner,
                name=name,
                scopes=scope,
                expires_at=expires_at,
                actor=audit.Actor(client_address="cli"),
            )
            return issued.full

    typer.echo(_with_runtime(settings, work))


@app.command("seed-demo")
def seed_demo() -> None:
    """Create the development data (users, organizations, integrations, token, leases).

    Running it again changes nothing; the system user's token is printed only when created.
    """
    settings = _settings()
    upgrade_to_head(settings.resolved_database_url)

    async def work(runtime: Runtime) -> demo.DemoReport:
        async with transaction(runtime.sessions) as session:
            return await demo.seed(session, runtime.keyring, runtime.settings)

    report = _with_runtime(settings, work)
    if not settings.data_url and create_helpdesk(settings.data_dir / HELPDESK_FILE):
        report.created.append(f"helpdesk database {settings.data_dir / HELPDESK_FILE}")
    for line in report.created or ["nothing to do: the demo data exists"]:
        typer.echo(line)
    if report.token:
        typer.echo(f"\nMCP_TOKEN={report.token}\n(shown once: store it now)")


@upstream_app.command("add")
def upstream_add(
    name: Annotated[str, typer.Argument(help="Slug; tools become <name>__<tool>")],
    url: Annotated[str | None, typer.Option(help="Streamable HTTP endpoint")] = None,
    command: Annotated[str | None, typer.Option(help="stdio: the program to start")] = None,
    arg: Annotated[list[str] | None, typer.Option(help="stdio: an argument (repeat)")] = None,
    header: Annotated[
        list[str] | None,
        typer.Option(help="'Name: value' sent upstream (repeat); stored encrypted"),
    ] = None,
    price: Annotated[int, typer.Option(min=0, help="Credits per tool call")] = 1,
    timeout: Annotated[float, typer.Option(min=0.1, help="Seconds before a call fails")] = 30.0,
) -> None:
    """Register an upstream, connect to it once and list the tools found."""
    settings = _settings()
    upgrade_to_head(settings.resolved_database_url)
    headers = dict(_header(h) for h in header or [])
    try:
        body = UpstreamCreate(
            name=name,
            transport="stdio" if command else "streamable_http",
            url=url,
            command=command,
            args=arg or [],
            auth="static" if headers else "none",
            headers=headers,
            price=price,
            timeout_seconds=timeout,
        )
    except ValidationError as exc:
        typer.echo(f"error: {exc.errors()[0]['msg']}", err=True)
        raise typer.Exit(1) from exc

    async def work(runtime: Runtime) -> None:
        # The host's operator may add stdio upstreams whatever the settings; URLs still
        # follow the upstream address rules, and this Tollgate itself is never an upstream.
        if body.url:
            await check_upstream_url(runtime.settings, body.url)
        async with transaction(runtime.sessions) as session:
            await upstream_service.create(session, runtime.keyring, body)
        try:
            await upstream_admin.probe(runtime, name)
        except UpstreamIsSelf:
            async with transaction(runtime.sessions) as session:
                await upstream_service.delete(session, await upstream_service.get(session, name))
            raise
        await _show_upstream(runtime, name)

    _with_runtime(settings, work)


def _header(text: str) -> tuple[str, str]:
    key, sep, value = text.partition(":")
    if not sep or not key.strip() or not value.strip():
        typer.echo(f"error: headers look like 'Name: value', not {text!r}", err=True)
        raise typer.Exit(1)
    return key.strip(), value.strip()


async def _show_upstream(runtime: Runtime, name: str) -> None:
    async with runtime.sessions() as session:
        upstream = await upstream_service.get(session, name)
    listing = UpstreamListing.from_json(upstream.catalogue)
    policy = upstream_service.policy(upstream)
    problem = f" - {upstream.last_error}" if upstream.last_error else ""
    typer.echo(f"{upstream.name}: {upstream.state} ({upstream.protocol_era or '-'}){problem}")
    for tool in listing.tools:
        if policy.offers(tool.name):
            typer.echo(f"  {upstream.name}__{tool.name}\t{policy.price_of(tool.name)} credits")


UPSTREAM_COLUMNS = ("NAME", "TRANSPORT", "TARGET", "STATE", "TOOLS", "PRICE", "ENABLED")
"""The columns of ``tollgate upstream list``."""


def table(headers: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    """``rows`` under ``headers``, each column as wide as its widest cell, two spaces apart."""
    widths = [max(len(cell) for cell in column) for column in zip(headers, *rows, strict=True)]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip()
        for line in (headers, *rows)
    ]
    return "\n".join(lines)


@upstream_app.command("list")
def upstream_list() -> None:
    """List the upstreams with their state, number of tools and price."""
    settings = _settings()
    upgrade_to_head(settings.resolved_database_url)

    async def work(runtime: Runtime) -> list[tuple[str, ...]]:
        async with runtime.sessions() as session:
            return [
                (
                    upstream.name,
                    upstream.transport,
                    upstream.url or upstream.command or "-",
                    upstream.state,
                    str(len(UpstreamListing.from_json(upstream.catalogue).tools)),
                    f"{upstream.price} credits",
                    "yes" if upstream.enabled else "no",
                )
                for upstream in await upstream_service.list_all(session)
            ]

    rows = _with_runtime(settings, work)
    if not rows:
        typer.echo("no upstreams yet: add one with `tollgate upstream add NAME --url URL`")
        return
    typer.echo(table(UPSTREAM_COLUMNS, rows))


@upstream_app.command("refresh")
def upstream_refresh(name: Annotated[str, typer.Argument()]) -> None:
    """Connect to an upstream and read its catalogue again."""
    settings = _settings()
    upgrade_to_head(settings.resolved_database_url)

    async def work(runtime: Runtime) -> None:
        await upstream_admin.probe(runtime, name)
        await _show_upstream(runtime, name)

    _with_runtime(settings, work)


@upstream_app.command("remove")
def upstream_remove(name: Annotated[str, typer.Argument()]) -> None:
    """Remove an upstream (a running server drops it at its next sync)."""
    settings = _settings()
    upgrade_to_head(settings.resolved_database_url)

    async def work(runtime: Runtime) -> None:
        async with transaction(runtime.sessions) as session:
            await upstream_service.delete(session, await upstream_service.get(session, name))

    _with_runtime(settings, work)
    typer.echo(f"removed {name}")


Items = Annotated[list[str] | None, typer.Option(help="<upstream>__<name> or <upstream>__*")]


@server_app.command("add")
def server_add(
    name: Annotated[str, typer.Argument(help="Slug; served at /servers/<name>/mcp")],
    tool: Items = None,
    resource: Items = None,
    prompt: Items = None,
    prefixed: Annotated[
        bool, typer.Option(help="--no-prefixed: original names (items of one upstream only)")
    ] = True,
    allow_user: Annotated[
        list[int] | None, typer.Option(help="Only these user ids (repeat); default: everyone")
    ] = None,
    allow_org: Annotated[
        list[int] | None, typer.Option(help="And members of these organization ids (repeat)")
    ] = None,
    title: Annotated[str | None, typer.Option(help="A name for people")] = None,
) -> None:
    """Define a virtual server (a running server serves it at its next sync)."""
    settings = _settings()
    upgrade_to_head(settings.resolved_database_url)
    try:
        body = VirtualServerCreate(
            name=name,
            title=title,
            tools=tool or [],
            resources=resource or [],
            prompts=prompt or [],
            prefixed=prefixed,
            allowed_users=allow_user or [],
            allowed_organizations=allow_org or [],
        )
    except ValidationError as exc:
        typer.echo(f"error: {exc.errors()[0]['msg']}", err=True)
        raise typer.Exit(1) from exc

    async def work(runtime: Runtime) -> None:
        async with transaction(runtime.sessions) as session:
            known = {u.name for u in await upstream_service.list_all(session)}
            row = await virtual_servers.create(session, body)
            builtin = {DATA_UPSTREAM} if settings.mcp_enabled else set()
            virtual_servers.check(virtual_servers.spec_of(row), known | builtin)

    _with_runtime(settings, work)
    typer.echo(f"{name}: served at {virtual_servers.path_of(name)}")


SERVER_COLUMNS = ("NAME", "PATH", "TOOLS", "RESOURCES", "PROMPTS", "NAMES", "ACCESS", "ENABLED")
"""The columns of ``tollgate server list``."""


@server_app.command("list")
def server_list() -> None:
    """List the virtual servers with what they select."""
    settings = _settings()
    upgrade_to_head(settings.resolved_database_url)

    async def work(runtime: Runtime) -> list[tuple[str, ...]]:
        async with runtime.sessions() as session:
            rows = await virtual_servers.list_all(session)
        return [
            (
                row.name,
                virtual_servers.path_of(row.name),
                ",".join(row.tools) or "-",
                ",".join(row.resources) or "-",
                ",".join(row.prompts) or "-",
                "prefixed" if row.prefixed else "original",
                "restricted" if row.allowed_users or row.allowed_organizations else "everyone",
                "yes" if row.enabled else "no",
            )
            for row in rows
        ]

    rows = _with_runtime(settings, work)
    if not rows:
        typer.echo("no virtual servers yet: add one with `tollgate server add NAME --tool X`")
        return
    typer.echo(table(SERVER_COLUMNS, rows))


@server_app.command("remove")
def server_remove(name: Annotated[str, typer.Argument()]) -> None:
    """Remove a virtual server (a running server stops serving it at its next sync)."""
    settings = _settings()
    upgrade_to_head(settings.resolved_database_url)

    async def work(runtime: Runtime) -> None:
        async with transaction(runtime.sessions) as session:
            await virtual_servers.delete(session, await virtual_servers.get(session, name))

    _with_runtime(settings, work)
    typer.echo(f"removed {name}")


@app.command()
def version() -> None:
    """Print the version."""
    typer.echo(__version__)


def main() -> None:
    """Console entry point."""
    app()
