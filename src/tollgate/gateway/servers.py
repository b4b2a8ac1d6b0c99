"""Virtual server registrations: create, change, remove, and the spec every process serves."""

from __future__ import annotations

import time
from collections.abc import Collection, Sequence

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tollgate.core.database import database_now
from tollgate.core.errors import Conflict, NotFound, Unprocessable
from tollgate.gateway.models import VirtualServer
from tollgate.gateway.schemas import VirtualServerCreate, VirtualServerFields
from tollgate.gateway.views import ServerSpec
from tollgate.identity.models import Membership

SERVERS_PATH_PREFIX = "/servers/"

MEMBERSHIP_TTL_SECONDS = 30.0
"""How long a process trusts what it read of a user's organizations (for access checks)."""


def path_of(name: str) -> str:
    """Where a virtual server is served."""
    return f"{SERVERS_PATH_PREFIX}{name}/mcp"


def server_of_path(path: str) -> str | None:
    """The virtual server a request path names (``/servers/<name>/mcp``), else None."""
    if not path.startswith(SERVERS_PATH_PREFIX):
        return None
    name, slash, rest = path[len(SERVERS_PATH_PREFIX) :].partition("/")
    return name if slash and name and rest.rstrip("/") == "mcp" else None


def spec_of(row: VirtualServer) -> ServerSpec:
    """What every process serves for a stored virtual server."""
    return ServerSpec(
        name=row.name,
        tools=tuple(row.tools or ()),
        resources=tuple(row.resources or ()),
        prompts=tuple(row.prompts or ()),
        prefixed=row.prefixed,
        allowed_users=frozenset(row.allowed_users or ()),
        allowed_organizations=frozenset(row.allowed_organizations or ()),
        enabled=row.enabled,
        title=row.title,
    )


def check(spec: ServerSpec, known_upstreams: Collection[str]) -> None:
    """Refuse a definition naming an unknown upstream, or unprefixed across upstreams."""
    unknown = sorted(spec.upstreams() - set(known_upstreams))
    if unknown:
        raise Unprocessable(f"No upstream named {', '.join(unknown)}", code="unknown_upstream")
    if not spec.prefixed and len(spec.upstreams()) != 1:
        raise Unprocessable(
            "Only a virtual server whose items all come from one upstream can serve "
            "the original names (prefixed: false)",
            code="prefix_required",
        )


async def create(session: AsyncSession, body: VirtualServerCreate) -> VirtualServer:
    """Store a new virtual server; its name must be new."""
    server = VirtualServer(
        name=body.name,
        title=body.title,
        description=body.description,
        tools=list(body.tools or ()),
        resources=list(body.resources or ()),
        prompts=list(body.prompts or ()),
        prefixed=True if body.prefixed is None else body.prefixed,
        allowed_users=sorted(set(body.allowed_users or ())),
        allowed_organizations=sorted(set(body.allowed_organizations or ())),
        enabled=True if body.enabled is None else body.enabled,
    )
    session.add(server)
    try:
        async with session.begin_nested():
            await session.flush()
    except IntegrityError as exc:
        raise Conflict(f"A virtual server named {body.name} exists", code="server_exists") from exc
    return server


async def get(session: AsyncSession, name: str) -> VirtualServer:
    """The virtual server called ``name``, or NotFound."""
    found = (
        await session.execute(select(VirtualServer).where(VirtualServer.name == name))
    ).scalar_one_or_none()
    if found is None:
        raise NotFound(f"No virtual server named {name}", code="server_not_found")
    return found


async def list_all(session: AsyncSession) -> Sequence[VirtualServer]:
    """Every virtual server, by name."""
    query = select(VirtualServer).order_by(VirtualServer.name)
    return (await session.execute(query)).scalars().all()


async def update(
    session: AsyncSession, server: VirtualServer, body: VirtualServerFields
) -> VirtualServer:
    """Apply the given changes (a given ``null`` leaves a field as it is)."""
    for field, value in body.model_dump(exclude_unset=True).items():
        if value is None:
            continue
        if field in ("allowed_users", "allowed_organizations"):
            value = sorted(set(value))
        setattr(server, field, value)
    server.updated_at = await database_now(session)
    await session.flush()
    return server


async def delete(session: AsyncSession, server: VirtualServer) -> None:
    """Remove a virtual server."""
    await session.delete(server)
    await session.flush()


class Memberships:
    """Which organizations each user belongs to, read at most every
    :data:`MEMBERSHIP_TTL_SECONDS` per user: access to a restricted virtual server is checked
    on every request, so it must not cost a query each time."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions
        self._known: dict[int, tuple[float, frozenset[int]]] = {}

    async def of(self, user_id: int) -> frozenset[int]:
        """The ids of the organizations ``user_id`` is a member of."""
        now = time.monotonic()
        known = self._known.get(user_id)
        if known is not None and known[0] > now:
            return known[1]
        async with self._sessions() as session:
            query = select(Membership.organization_id).where(Membership.user_id == user_id)
            found = frozenset((await session.execute(query)).scalars())
        self._known[user_id] = (now + MEMBERSHIP_TTL_SECONDS, found)
        return found

    async def admitted(self, spec: ServerSpec, user_id: int) -> bool:
        """Whether ``user_id`` may use the virtual server ``spec``."""
        if not spec.restricted or user_id in spec.allowed_users:
            return True
        return spec.admits(user_id, await self.of(user_id))
