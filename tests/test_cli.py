"""The ``tollgate`` console script, run as a real subprocess against the test's database."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import sys
from dataclasses import dataclass
from pathlib import Path

import httpx
from sqlalchemy import func, select, update

from tests.broker.factories import jira, lease, mcp_headers, person, personal_integration
from tests.conftest import JWT_SECRET, auth, bearer, make_user
from tollgate import __version__
from tollgate.chat import llm_settings
from tollgate.chat.schemas import ProviderCreate
from tollgate.cli import SERVER_COLUMNS, UPSTREAM_COLUMNS
from tollgate.core.crypto import Keyring, generate_key_spec
from tollgate.core.database import Base, transaction
from tollgate.core.encrypted import (
    EncryptedColumn,
    Envelope,
    associated_data,
    envelope_columns,
)
from tollgate.core.runtime import Runtime
from tollgate.gateway import service as upstream_service
from tollgate.gateway.schemas import UpstreamCreate
from tollgate.identity.models import User
from tollgate.wiring import encrypted_columns

TOLLGATE = Path(sys.executable).with_name("tollgate")
"""The console script installed beside this interpreter (the venv's ``bin``)."""

CLI_TIMEOUT = 60.0
"""Upper bound for one command; each takes about a second and a half."""

ADMIN_PASSWORD = "cli-admin-passphrase-1"

SETTINGS_NAMES = {
    "DATABASE_URL",
    "REDIS_URL",
    "JWT_SECRET_KEY",
    "SECRET_KEY",
    "ACCESS_TOKEN_EXPIRE_MINUTES",
    "LOG_LEVEL",
    "DEBUG",
    "STRIPE_WEBHOOK_SECRET",
}
"""Settings read from the environment under their plain names (``TOLLGATE_*`` go too)."""

SECRETS_WANTED = {"jwt_secret_key", "secret_key", "encryption_keys"}


@dataclass(frozen=True)
class Run:
    """What one command did."""

    code: int
    out: str
    err: str

    @property
    def output(self) -> str:
        return self.out + self.err


def cli_env(data_dir: Path, database_url: str, *, with_secrets: bool = True) -> dict[str, str]:
    """This process's environment without any Tollgate setting, plus the test's own."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.upper().startswith("TOLLGATE_") and name.upper() not in SETTINGS_NAMES
    }
    env["TOLLGATE_DATA_DIR"] = str(data_dir)
    env["DATABASE_URL"] = database_url
    if with_secrets:
        env["JWT_SECRET_KEY"] = JWT_SECRET
    return env


async def tollgate(*args: str, env: dict[str, str], cwd: Path, stdin: str = "") -> Run:
    """Run ``tollgate *args`` (standard input is a pipe, never a terminal)."""
    process = await asyncio.create_subprocess_exec(
        str(TOLLGATE),
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
        cwd=cwd,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(stdin.encode()), CLI_TIMEOUT)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode is not None
    return Run(process.returncode, out.decode(), err.decode())


async def user_count(runtime: Runtime) -> int:
    async with runtime.sessions() as session:
        return (await session.execute(select(func.count()).select_from(User))).scalar_one()


def admins_listed(run: Run) -> list[list[str]]:
    assert run.code == 0, run.output
    return [line.split("\t") for line in run.out.splitlines() if line]


async def test_create_admin_then_list_sign_in_and_delete(
    client: httpx.AsyncClient, database_url: str, tmp_path: Path
) -> None:
    env = cli_env(tmp_path / "cli", database_url)
    created = await tollgate(
        "create-admin",
        "--username",
        "ops",
        "--email",
        "Ops@Example.com",
        "--superuser",
        env=env,
        cwd=tmp_path,
        stdin=ADMIN_PASSWORD + "\n",
    )
    assert created.code == 0, created.output
    assert created.out.startswith("created superuser ops (id ")
    assert ADMIN_PASSWORD not in created.output

    listed = await tollgate("list-admins", env=env, cwd=tmp_path)
    rows = admins_listed(listed)
    assert len(rows) == 1
    assert rows[0][1:] == ["ops", "ops@example.com", "(superuser)"]
    assert ADMIN_PASSWORD not in listed.output

    signed_in = await client.post(
        "/api/v1/auth/login", data={"username": "ops", "password": ADMIN_PASSWORD}
    )
    assert signed_in.status_code == 200, signed_in.text
    headers = bearer(signed_in.json()["access_token"])
    me = (await client.get("/api/v1/admin/users/me", headers=headers)).json()
    assert (me["id"], me["role"], me["is_superuser"]) == (int(rows[0][0]), "admin", True)

    deleted = await tollgate("delete-admin", "--username", "ops", "--yes", env=env, cwd=tmp_path)
    assert deleted.code == 0, deleted.output
    assert "deleted admin ops" in deleted.out
    refused = await client.post(
        "/api/v1/auth/login", data={"username": "ops", "password": ADMIN_PASSWORD}
    )
    assert refused.status_code == 401
    again = await tollgate("delete-admin", "--username", "ops", "--yes", env=env, cwd=tmp_path)
    assert again.code != 0
    assert "error: no admin called ops" in again.err


async def test_create_admin_refuses_a_duplicate_with_a_clear_message(
    database_url: str, tmp_path: Path
) -> None:
    env = cli_env(tmp_path / "cli", database_url)
    args = ("create-admin", "--username", "ops", "--email", "ops@example.com")
    first = await tollgate(*args, env=env, cwd=tmp_path, stdin=ADMIN_PASSWORD + "\n")
    assert first.code == 0, first.output
    assert first.out.startswith("created admin ops (id ")
    other_password = "another-passphrase-2"
    again = await tollgate(
        "create-admin",
        "--username",
        "ops2",
        "--email",
        "OPS@example.com",
        env=env,
        cwd=tmp_path,
        stdin=other_password + "\n",
    )
    assert again.code != 0
    assert "error: Username or email already registered" in again.err
    assert "Traceback" not in again.output
    assert other_password not in again.output
    rows = admins_listed(await tollgate("list-admins", env=env, cwd=tmp_path))
    assert [row[1:] for row in rows] == [["ops", "ops@example.com"]]


async def test_create_admin_refuses_a_short_password(
    runtime: Runtime, database_url: str, tmp_path: Path
) -> None:
    env = cli_env(tmp_path / "cli", database_url)
    short = "seven77"
    run = await tollgate(
        "create-admin",
        "--username",
        "ops",
        "--email",
        "ops@example.com",
        env=env,
        cwd=tmp_path,
        stdin=short + "\n",
    )
    assert run.code != 0
    assert "error: the password needs at least 8 characters" in run.err
    assert short not in run.output
    assert await user_count(runtime) == 0


async def test_delete_admin_leaves_plain_users_alone(
    runtime: Runtime, database_url: str, tmp_path: Path
) -> None:
    await make_user(runtime, username="plain", password="")
    env = cli_env(tmp_path / "cli", database_url)
    run = await tollgate("delete-admin", "--username", "plain", "--yes", env=env, cwd=tmp_path)
    assert run.code != 0
    assert "error: no admin called plain" in run.err
    assert await user_count(runtime) == 1


async def test_version_prints_the_package_version(tmp_path: Path) -> None:
    env = cli_env(tmp_path / "cli", "")
    run = await tollgate("version", env=env, cwd=tmp_path)
    assert run.code == 0, run.output
    assert run.out.strip() == __version__


async def test_first_start_generates_secrets_once_and_init_db_can_run_again(
    database_url: str, tmp_path: Path
) -> None:
    data_dir = tmp_path / "cli"
    env = cli_env(data_dir, database_url, with_secrets=False)
    secrets_file = data_dir / "secrets.json"

    first = await tollgate("init-db", env=env, cwd=tmp_path)
    assert first.code == 0, first.output
    assert "database is up to date" in first.out
    assert first.err.count("generated secrets") == 1
    assert stat.S_IMODE(secrets_file.stat().st_mode) == 0o600
    generated = json.loads(secrets_file.read_text())
    assert set(generated) == SECRETS_WANTED
    assert all(len(value) >= 32 for value in generated.values())
    for value in generated.values():
        assert value not in first.output

    second = await tollgate("init-db", env=env, cwd=tmp_path)
    assert second.code == 0, second.output
    assert "database is up to date" in second.out
    assert "generated secrets" not in second.output
    assert json.loads(secrets_file.read_text()) == generated


async def test_given_secrets_are_not_generated_or_written(
    database_url: str, tmp_path: Path
) -> None:
    data_dir = tmp_path / "cli"
    env = cli_env(data_dir, database_url) | {"SECRET_KEY": "given-secret-key-of-some-length"}
    run = await tollgate("init-db", env=env, cwd=tmp_path)
    assert run.code == 0, run.output
    stored = json.loads((data_dir / "secrets.json").read_text())
    assert set(stored) == {"encryption_keys"}
    assert "generated secrets encryption_keys" in run.err
    assert JWT_SECRET not in run.output
    assert "given-secret-key-of-some-length" not in run.output


async def test_serve_with_several_workers_refuses_to_start_without_redis(
    tmp_path: Path, database_url: str
) -> None:
    from tests.live import free_port

    env = cli_env(tmp_path / "cli", database_url)
    run = await tollgate(
        "serve", "--port", str(free_port()), "--workers", "2", env=env, cwd=tmp_path
    )
    assert run.code == 2, run.output
    assert "REDIS_URL" in run.err


def test_every_envelope_column_of_the_models_is_rotated_by_rotate_keys() -> None:
    assert {entry.label for entry in encrypted_columns()} == envelope_columns(Base.metadata)


def _envelope_columns() -> list[EncryptedColumn]:
    """Every column typed ``Envelope`` in the models, whatever the wiring lists."""
    return [
        EncryptedColumn(table, column.name)
        for table in Base.metadata.tables.values()
        for column in table.columns
        if isinstance(column.type, Envelope)
    ]


async def _seal_every_encrypted_column(
    client: httpx.AsyncClient, runtime: Runtime
) -> dict[str, dict[object, str]]:
    """At least one row in every table with an encrypted column, each such value sealed
    under the current key; returns the clear value expected back per column and row."""
    user = await person(runtime, "rotating")
    await personal_integration(client, auth(runtime, user), "jira", jira())
    await lease(client, await mcp_headers(client, runtime, user), ["jira"])
    body = UpstreamCreate(name="vault", url="https://vault.example/mcp", headers={"X-Key": "k"})
    provider = ProviderCreate(name="llm", kind="openai", api_key="sk-rotating")
    async with transaction(runtime.sessions) as session:
        await upstream_service.create(session, runtime.keyring, body)
        await llm_settings.create_provider(session, runtime.keyring, provider)
    expected: dict[str, dict[object, str]] = {}
    async with transaction(runtime.sessions) as session:
        for entry in _envelope_columns():
            table = entry.table
            ids = (await session.execute(select(table.c.id))).scalars().all()
            assert ids, f"no {table.name} row: create one above so its rotation is checked"
            values = expected.setdefault(entry.label, {})
            for row_id in ids:
                values[row_id] = f"{entry.label}:{row_id}"
                sealed = runtime.keyring.encrypt_text(
                    values[row_id], associated_data(table.name, entry.column, row_id)
                )
                await session.execute(
                    update(table).where(table.c.id == row_id).values({entry.column: sealed})
                )
    return expected


async def test_rotate_keys_reencrypts_every_encrypted_column_of_every_table(
    client: httpx.AsyncClient, runtime: Runtime, database_url: str, tmp_path: Path
) -> None:
    expected = await _seal_every_encrypted_column(client, runtime)
    new_spec = generate_key_spec()
    keys = f"{new_spec},{runtime.settings.encryption_keys}"
    env = cli_env(tmp_path / "cli", database_url) | {"TOLLGATE_ENCRYPTION_KEYS": keys}

    run = await tollgate("rotate-keys", "--no-new-key", env=env, cwd=tmp_path)

    assert run.code == 0, run.output
    only_new = Keyring.parse(new_spec)
    async with runtime.sessions() as session:
        for entry in _envelope_columns():
            assert f"{entry.label}: {len(expected[entry.label])} re-encrypted" in run.out
            table, column = entry.table, entry.table.c[entry.column]
            for row_id, envelope in (await session.execute(select(table.c.id, column))).all():
                aad = associated_data(table.name, entry.column, row_id)
                assert only_new.decrypt_text(envelope, aad) == expected[entry.label][row_id]


async def test_upstream_list_prints_a_table_with_headers(
    runtime: Runtime, database_url: str, tmp_path: Path
) -> None:
    env = cli_env(tmp_path / "cli", database_url)
    empty = await tollgate("upstream", "list", env=env, cwd=tmp_path)
    assert empty.code == 0, empty.output
    assert empty.out.startswith("no upstreams yet: add one with `tollgate upstream add")

    async with transaction(runtime.sessions) as session:
        for body in (
            UpstreamCreate(name="everything", url="http://127.0.0.1:3001/mcp", price=2),
            UpstreamCreate(name="local", transport="stdio", command="/usr/bin/python3"),
        ):
            await upstream_service.create(session, runtime.keyring, body)
    listed = await tollgate("upstream", "list", env=env, cwd=tmp_path)

    assert listed.code == 0, listed.output
    header, *rows = listed.out.splitlines()
    assert header.split() == list(UPSTREAM_COLUMNS)
    starts = [header.index(column) for column in UPSTREAM_COLUMNS]
    cells = [
        [row[start:end].strip() for start, end in zip(starts, [*starts[1:], None], strict=True)]
        for row in rows
    ]
    # The running test app may have probed the unreachable URL meanwhile.
    assert cells[0][3] in {"unknown", "down"}
    assert [row[:3] + row[4:] for row in cells] == [
        ["everything", "streamable_http", "http://127.0.0.1:3001/mcp", "0", "2 credits", "yes"],
        ["local", "stdio", "/usr/bin/python3", "0", "1 credits", "yes"],
    ]
    assert cells[1][3] == "unknown"


async def test_server_add_list_and_remove_a_virtual_server(
    runtime: Runtime, database_url: str, tmp_path: Path
) -> None:
    env = cli_env(tmp_path / "cli", database_url)
    async with transaction(runtime.sessions) as session:
        body = UpstreamCreate(name="everything", url="http://127.0.0.1:3001/mcp")
        await upstream_service.create(session, runtime.keyring, body)

    empty = await tollgate("server", "list", env=env, cwd=tmp_path)
    added = await tollgate(
        "server", "add", "plain", "--tool", "everything__*", "--no-prefixed", env=env, cwd=tmp_path
    )
    unknown = await tollgate("server", "add", "bad", "--tool", "nowhere__x", env=env, cwd=tmp_path)
    listed = await tollgate("server", "list", env=env, cwd=tmp_path)
    removed = await tollgate("server", "remove", "plain", env=env, cwd=tmp_path)
    after = await tollgate("server", "list", env=env, cwd=tmp_path)

    assert empty.out.startswith("no virtual servers yet")
    assert added.code == 0, added.output
    assert added.out.strip() == "plain: served at /servers/plain/mcp"
    assert (unknown.code, unknown.err.strip()) == (1, "error: No upstream named nowhere")
    header, row = listed.out.splitlines()
    assert header.split() == list(SERVER_COLUMNS)
    assert row.split() == [
        "plain", "/servers/plain/mcp", "everything__*", "-", "-", "original", "everyone", "yes"
    ]  # fmt: skip
    assert removed.code == 0, removed.output
    assert after.out.startswith("no virtual servers yet")
