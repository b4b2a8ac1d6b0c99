"""Users: creation, sign-in with throttling, and users named by a JWT."""

from __future__ import annotations

import re
import secrets
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from tollgate.core.cache import Cache
from tollgate.core.clock import utc_now
from tollgate.core.errors import Conflict, NotFound, TooManyRequests, Unauthorized
from tollgate.core.runtime import Runtime
from tollgate.core.settings import Settings
from tollgate.identity.jwt import TokenClaims, create_access_token
from tollgate.identity.models import Invitation, Role, User
from tollgate.identity.passwords import hash_password, verify_password

AccessChangedHook = Callable[[AsyncSession, Runtime, int, bool], Awaitable[object]]
"""Called with (session, runtime, user id, still active) in the transaction that
deactivates, reactivates or deletes a user: other parts drop what they cache for them."""

_access_changed_hooks: tuple[AccessChangedHook, ...] = ()


def install_access_hooks(hooks: Sequence[AccessChangedHook]) -> None:
    """Wire the work that must happen whenever a user is switched off, on, or deleted
    (``create_app`` and the CLI call it; installing again replaces what was there)."""
    global _access_changed_hooks
    _access_changed_hooks = tuple(hooks)


async def _access_changed(
    session: AsyncSession, runtime: Runtime | None, user_id: int, active: bool
) -> None:
    if runtime is None:
        return
    for hook in _access_changed_hooks:
        await hook(session, runtime, user_id, active)


def normalise_email(email: str) -> str:
    """Emails are unique case-insensitively: store them lowercased."""
    return email.strip().lower()


async def get_user(session: AsyncSession, user_id: int) -> User:
    """The user with ``user_id``, or NotFound."""
    user = await session.get(User, user_id)
    if user is None:
        raise NotFound("User not found", code="user_not_found")
    return user


async def find_user_by_email(session: AsyncSession, email: str) -> User | None:
    """The user with this email, if any."""
    result = await session.execute(select(User).where(User.email == normalise_email(email)))
    return result.scalar_one_or_none()


async def find_user_by_login(session: AsyncSession, login: str) -> User | None:
    """The user whose username or email is ``login``."""
    login = login.strip()
    column = User.email if "@" in login else User.username
    value = normalise_email(login) if "@" in login else login
    return (await session.execute(select(User).where(column == value))).scalar_one_or_none()


async def create_user(
    session: AsyncSession,
    *,
    username: str,
    email: str,
    password: str | None,
    role: str = Role.USER,
    is_superuser: bool = False,
    display_name: str | None = None,
) -> User:
    """Create a user; Conflict when the username or email is taken."""
    user = User(
        username=username.strip(),
        email=normalise_email(email),
        password_hash=await hash_password(password) if password else None,
        role=Role.ADMIN if is_superuser else role,
        is_superuser=is_superuser,
        display_name=display_name,
        is_active=True,
        token_version=1,
    )
    await _ensure_unique(session, user.username, user.email)
    session.add(user)
    try:
        async with session.begin_nested():
            await session.flush()
    except IntegrityError as exc:
        raise Conflict("Username or email already registered", code="user_exists") from exc
    return user


async def _ensure_unique(
    session: AsyncSession, username: str, email: str, exclude_id: int | None = None
) -> None:
    query = (
        select(func.count())
        .select_from(User)
        .where((User.username == username) | (User.email == email))
    )
    if exclude_id is not None:
        query = query.where(User.id != exclude_id)
    if (await session.execute(query)).scalar_one():
        raise Conflict("Username or email already registered", code="user_exists")


async def list_users(
    session: AsyncSession, *, role: str | None = None, limit: int = 100, offset: int = 0
) -> Sequence[User]:
    """Users, oldest first, optionally of one role."""
    query = select(User).order_by(User.id).limit(limit).offset(offset)
    if role:
        query = query.where(User.role == role)
    return (await session.execute(query)).scalars().all()


async def update_user(
    session: AsyncSession,
    user: User,
    *,
    email: str | None = None,
    display_name: str | None = None,
    password: str | None = None,
    role: str | None = None,
    is_active: bool | None = None,
    is_superuser: bool | None = None,
    runtime: Runtime | None = None,
) -> User:
    """Change the given fields of ``user``.

    Switching a user off or on is announced to the access hooks (with ``runtime``), so
    their account keys are refused (or accepted again) at once in every process.
    """
    if email is not None and normalise_email(email) != user.email:
        await _ensure_unique(session, user.username, normalise_email(email), exclude_id=user.id)
        user.email = normalise_email(email)
    if display_name is not None:
        user.display_name = display_name
    if password is not None:
        user.password_hash = await hash_password(password)
        user.token_version += 1
    _apply_role(user, role, is_superuser)
    switched = is_active is not None and is_active != user.is_active
    if is_active is not None:
        if user.is_active and not is_active:
            user.token_version += 1
        user.is_active = is_active
    await session.flush()
    if switched:
        await _access_changed(session, runtime, user.id, user.is_active)
    return user


def refuse_self_demotion(
    caller: User,
    user: User,
    *,
    role: str | None = None,
    is_active: bool | None = None,
    is_superuser: bool | None = None,
) -> None:
    """Conflict when ``caller`` would demote or deactivate themselves: an administrator
    cannot lock themselves out (another one has to)."""
    if user.id == caller.id and (is_active is False or is_superuser is False or role == Role.USER):
        raise Conflict("You cannot demote or deactivate yourself", code="cannot_demote_self")


def _apply_role(user: User, role: str | None, is_superuser: bool | None) -> None:
    """A role below admin takes superuser away; superuser implies the admin role."""
    if role is not None:
        user.role = role
        if role != Role.ADMIN:
            user.is_superuser = False
    if is_superuser is not None:
        user.is_superuser = is_superuser
        if is_superuser:
            user.role = Role.ADMIN


async def delete_user(session: AsyncSession, user: User, runtime: Runtime | None = None) -> None:
    """Remove a user and what belongs only to them (invitations addressed to their id too:
    that id may be given to someone else later); with ``runtime``, their keys are refused
    at once in every process."""
    await _access_changed(session, runtime, user.id, False)
    await session.execute(delete(Invitation).where(Invitation.invitee_user_id == user.id))
    await session.delete(user)
    await session.flush()


class LoginThrottle:
    """Counts sign-in attempts per client address, per login as typed and per account.

    Each attempt is counted before its password is checked, so concurrent guesses cannot
    all pass a check made before any of them was counted; a success takes its count back.
    The per-account counter (by user id) is shared by every name of one account, so
    alternating ``admin`` and ``admin@example.com`` does not double the guesses.
    """

    def __init__(self, cache: Cache, settings: Settings) -> None:
        self.cache = cache
        self.window = settings.login_failure_window_seconds
        self.limits = {
            "addr": settings.login_max_failures_per_address,
            "user": settings.login_max_failures_per_user,
            "account": settings.login_max_failures_per_user,
        }

    def _keys(self, login: str, address: str) -> dict[str, str]:
        # The login is normalised as find_user_by_login does: " alice" is alice.
        return {
            "addr": f"login-fail:addr:{address}",
            "user": f"login-fail:user:{login.strip().lower()}",
        }

    @staticmethod
    def _account_key(user_id: int) -> str:
        return f"login-fail:account:{user_id}"

    async def _count(self, kind: str, key: str) -> None:
        if await self.cache.incr(key, ttl=self.window) > self.limits[kind]:
            raise TooManyRequests(
                "Too many failed sign-in attempts; try again later",
                code="too_many_attempts",
                extra={"retry_after_seconds": self.window},
            )

    async def attempt(self, login: str, address: str) -> None:
        """Count one attempt; refuse it once either counter is past its limit."""
        for kind, key in self._keys(login, address).items():
            await self._count(kind, key)

    async def attempt_account(self, user_id: int) -> None:
        """Count one attempt at the account the login names; refuse past the limit."""
        await self._count("account", self._account_key(user_id))

    async def succeeded(self, login: str, address: str, user_id: int) -> None:
        """A correct password clears the login's and the account's counters and uncounts
        the address's try."""
        keys = self._keys(login, address)
        await self.cache.delete(keys["user"], self._account_key(user_id))
        await self.cache.incr(keys["addr"], amount=-1, ttl=self.window)


async def authenticate(
    session: AsyncSession, throttle: LoginThrottle, login: str, password: str, address: str
) -> User:
    """The active user whose credentials these are, or Unauthorized."""
    await throttle.attempt(login, address)
    user = await find_user_by_login(session, login)
    if user is not None:
        await throttle.attempt_account(user.id)
    password_ok = await verify_password(password, user.password_hash if user else None)
    if user is None or not password_ok or not user.is_active:
        raise Unauthorized("Incorrect username or password", code="invalid_credentials")
    await throttle.succeeded(login, address, user.id)
    user.last_login_at = utc_now()
    await session.flush()
    return user


def issue_access_token(settings: Settings, user: User) -> str:
    """A JWT for ``user`` that expires after ``ACCESS_TOKEN_EXPIRE_MINUTES``."""
    return create_access_token(
        secret=settings.jwt_secret_key,
        email=user.email,
        user_id=user.id,
        role=user.role,
        token_version=user.token_version,
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        expires_in=timedelta(minutes=settings.access_token_expire_minutes),
    )


async def user_for_claims(session: AsyncSession, claims: TokenClaims) -> User:
    """The user a JWT names, created on first use when another backend issued the token.

    A token we issued names the user by id and must carry the user's current token
    version: a password change or a deactivation bumps it, refusing every older token.
    Users first seen in another backend's token always start with the plain user role: a
    role claim from elsewhere is not trusted to grant admin rights here, and a token from
    elsewhere never acts as an admin.
    """
    if claims.issued_by_us:
        return await _user_of_our_token(session, claims)
    email = claims.email or ""
    user = await find_user_by_email(session, email)
    if user is None:
        user = await _create_external_user(session, email, claims.display_name)
    if not user.is_active:
        raise Unauthorized("User is inactive", code="user_inactive")
    if user.role == Role.ADMIN or user.is_superuser:
        raise Unauthorized("Invalid token", code="invalid_token")
    return user


async def _user_of_our_token(session: AsyncSession, claims: TokenClaims) -> User:
    user = await session.get(User, claims.user_id) if claims.user_id is not None else None
    if user is None:
        raise Unauthorized("Invalid token", code="invalid_token")
    if not user.is_active:
        raise Unauthorized("User is inactive", code="user_inactive")
    if user.token_version != claims.token_version:
        raise Unauthorized("Token revoked", code="token_revoked")
    return user


async def _create_external_user(
    session: AsyncSession, email: str, display_name: str | None
) -> User:
    base = re.sub(r"[^a-z0-9._-]", "", email.split("@")[0])[:48] or "user"
    username = base
    while (
        await session.execute(select(User.id).where(User.username == username))
    ).first() is not None:
        username = f"{base}-{secrets.token_hex(3)}"
    try:
        return await create_user(
            session,
            username=username,
            email=email,
            password=None,
            display_name=display_name,
        )
    except Conflict:
        existing = await find_user_by_email(session, email)
        if existing is None:
            raise
        return existing
