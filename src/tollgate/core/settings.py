"""Settings: the seed documents' names as they are, Tollgate's own under ``TOLLGATE_*``."""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import secrets
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any

from pydantic import AliasChoices, BaseModel, Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from tollgate.core.crypto import generate_key_spec

logger = logging.getLogger(__name__)

HELPDESK_FILE = "helpdesk.db"
"""The demo helpdesk database agents read by default, in the data directory."""

SECRETS_FILE_NAME = "secrets.json"
"""Generated secrets live beside the SQLite database, in the data directory."""

DEFAULT_MAX_BODY_BYTES = 4 * 1024 * 1024
"""4 MiB: far above any JSON-RPC call or API payload, far below what exhausts memory."""

GENERATED_KEY_BYTES = 32
"""256-bit secrets: the JWT HMAC key, the app secret and AES-256-GCM keys."""


DEFAULT_ALLOWED_HOSTS = ("127.0.0.1:*", "localhost:*", "[::1]:*")
"""Loopback under any port: what `tollgate serve` answers to out of the box."""

DEFAULT_DENIED_UPSTREAM_NETWORKS = (
    "169.254.0.0/16",
    "fe80::/10",
    "fd00:ec2::254/128",
    "0.0.0.0/8",
    "::/128",
)
"""Link-local (cloud metadata services live there) and the unspecified addresses: never an
upstream. Loopback and private ranges stay allowed, where self-hosted upstreams live."""


class CreditTier(BaseModel):
    """A credits tier: how many credits its accounts get each month."""

    monthly_allocation: int = Field(ge=0)
    stripe_price_ids: list[str] = Field(default_factory=list)


DEFAULT_TIERS: dict[str, CreditTier] = {
    "free": CreditTier(monthly_allocation=50),
    "pro": CreditTier(monthly_allocation=1000),
    "team": CreditTier(monthly_allocation=5000),
}


def _env(name: str, *extra: str) -> Any:
    """Accept a seed's plain name and Tollgate's prefixed name for one setting."""
    return AliasChoices(name, f"TOLLGATE_{name}", *extra)


class Settings(BaseSettings):
    """Everything Tollgate reads from the environment (or a ``.env`` file)."""

    model_config = SettingsConfigDict(
        env_file=".env", extra="ignore", populate_by_name=True, case_sensitive=False
    )

    data_dir: Path = Field(
        default=Path(".tollgate"),
        validation_alias="TOLLGATE_DATA_DIR",
        description="Folder of the default SQLite database, the demo helpdesk and the "
        "generated secrets (`secrets.json`, mode 0600).",
    )
    database_url: str = Field(
        default="",
        validation_alias=_env("DATABASE_URL"),
        description="The database; empty: SQLite `tollgate.db` in the data directory. "
        "`postgresql://...` uses asyncpg.",
    )
    redis_url: str = Field(
        default="",
        validation_alias=_env("REDIS_URL"),
        description="Redis, to share rate limits, key revocation, requests for held credits, MCP "
        "session ownership and live events between processes; empty: an in-memory cache "
        "(one process only).",
    )
    cache_prefix: str = Field(
        default="tollgate:",
        validation_alias="TOLLGATE_CACHE_PREFIX",
        description="Prefix of every cache key, so several deployments can share one Redis.",
    )

    jwt_secret_key: str = Field(
        default="",
        validation_alias=_env("JWT_SECRET_KEY"),
        description="HMAC key of login JWTs; empty: generated into the data directory.",
    )
    secret_key: str = Field(
        default="",
        validation_alias=_env("SECRET_KEY"),
        description="App secret (marks requests forwarded between processes: every process "
        "must share it); empty: generated into the data directory.",
    )
    encryption_keys: str = Field(
        default="",
        validation_alias="TOLLGATE_ENCRYPTION_KEYS",
        description="AES-256-GCM keys of stored secrets, `kid:base64key,...`, primary "
        "first; empty: generated into the data directory.",
    )
    access_token_expire_minutes: int = Field(
        default=30,
        ge=1,
        validation_alias=_env("ACCESS_TOKEN_EXPIRE_MINUTES"),
        description="Lifetime of login JWTs, in minutes.",
    )
    jwt_issuer: str = Field(
        default="tollgate",
        validation_alias="TOLLGATE_JWT_ISSUER",
        description="`iss` claim written into, and required of, Tollgate's JWTs.",
    )
    jwt_audience: str = Field(
        default="tollgate",
        validation_alias="TOLLGATE_JWT_AUDIENCE",
        description="`aud` claim written into, and required of, Tollgate's JWTs.",
    )

    log_level: str = Field(
        default="INFO",
        validation_alias=_env("LOG_LEVEL"),
        description="Logging level (`DEBUG`, `INFO`, `WARNING`, ...); logs never carry a secret.",
    )
    log_json: bool | None = Field(
        default=None,
        validation_alias="TOLLGATE_LOG_JSON",
        description="JSON log lines; unset: JSON when standard error is not a terminal.",
    )

    host: str = Field(
        default="127.0.0.1",
        validation_alias="TOLLGATE_HOST",
        description="Address `tollgate serve` listens on.",
    )
    port: int = Field(
        default=8000,
        validation_alias="TOLLGATE_PORT",
        description="Port `tollgate serve` listens on.",
    )

    credit_tiers: dict[str, CreditTier] = Field(
        default_factory=lambda: dict(DEFAULT_TIERS),
        validation_alias="TOLLGATE_CREDIT_TIERS",
        description='Credit tiers as JSON: `{"free": {"monthly_allocation": 50, '
        '"stripe_price_ids": []}, ...}`.',
    )
    default_tier: str = Field(
        default="free",
        validation_alias="TOLLGATE_DEFAULT_TIER",
        description="Tier of new accounts and of accounts whose subscription ended.",
    )
    refill_interval_seconds: float = Field(
        default=3600,
        gt=0,
        validation_alias="TOLLGATE_REFILL_INTERVAL_SECONDS",
        description="How often the server looks for accounts due for their monthly refill.",
    )
    key_cache_ttl_seconds: float = Field(
        default=60,
        gt=0,
        validation_alias="TOLLGATE_KEY_CACHE_TTL_SECONDS",
        description="How long a looked-up account key stays cached (a replaced or revoked "
        "key is refused at once regardless).",
    )
    oauth_access_token_seconds: int = Field(
        default=3600,
        ge=1,
        validation_alias="TOLLGATE_OAUTH_ACCESS_TOKEN_SECONDS",
        description="Lifetime of an access token issued by Tollgate's OAuth authorization "
        "server; clients renew it with their refresh token.",
    )
    oauth_client_metadata_allow_loopback: bool = Field(
        default=False,
        validation_alias="TOLLGATE_OAUTH_CLIENT_METADATA_ALLOW_LOOPBACK",
        description="Let OAuth client ids be `http://127.0.0.1` metadata document URLs "
        "(tests and local development only; otherwise only public HTTPS URLs are fetched).",
    )
    login_max_failures_per_user: int = Field(
        default=5,
        ge=1,
        validation_alias="TOLLGATE_LOGIN_MAX_FAILURES_PER_USER",
        description="Failed logins of one username within the window before it is locked.",
    )
    login_max_failures_per_address: int = Field(
        default=20,
        ge=1,
        validation_alias="TOLLGATE_LOGIN_MAX_FAILURES_PER_ADDRESS",
        description="Failed logins from one client address within the window before it is locked.",
    )
    login_failure_window_seconds: int = Field(
        default=900,
        ge=1,
        validation_alias="TOLLGATE_LOGIN_FAILURE_WINDOW_SECONDS",
        description="Window over which failed logins are counted; a locked username or "
        "address is let in again once its failures fall out of it.",
    )
    lease_default_ttl_seconds: int = Field(
        default=3600,
        ge=1,
        validation_alias="TOLLGATE_LEASE_DEFAULT_TTL_SECONDS",
        description="TTL of a credential lease that asks for none.",
    )
    lease_min_ttl_seconds: int = Field(
        default=60,
        ge=1,
        validation_alias="TOLLGATE_LEASE_MIN_TTL_SECONDS",
        description="Shortest TTL a lease may ask for.",
    )
    lease_max_ttl_seconds: int = Field(
        default=86400,
        ge=1,
        validation_alias="TOLLGATE_LEASE_MAX_TTL_SECONDS",
        description="Longest TTL a lease may ask for.",
    )
    lease_max_renewals: int = Field(
        default=24,
        ge=0,
        validation_alias="TOLLGATE_LEASE_MAX_RENEWALS",
        description="How many times one lease may be renewed.",
    )
    lease_max_lifetime_seconds: int = Field(
        default=90000,
        ge=1,
        validation_alias="TOLLGATE_LEASE_MAX_LIFETIME_SECONDS",
        description="Longest a lease may live from its creation, renewals included.",
    )
    lease_expiry_interval_seconds: float = Field(
        default=60,
        gt=0,
        validation_alias="TOLLGATE_LEASE_EXPIRY_INTERVAL_SECONDS",
        description="How often the server marks leases past their expiry as expired.",
    )
    key_rate_limit_per_minute: int = Field(
        default=1200,
        ge=1,
        validation_alias="TOLLGATE_KEY_RATE_LIMIT_PER_MINUTE",
        description="Tool calls per minute one account key may make through `/mcp` (counted "
        "in one-minute windows shared by every process). The default leaves an interactive "
        "agent, which makes a few calls a second with bursts of parallel calls, far from the "
        "limit; a call past it is a tool error `rate_limited` with `retry_after_seconds`.",
    )
    credit_block: int = Field(
        default=100,
        ge=1,
        validation_alias="TOLLGATE_CREDIT_BLOCK",
        description="Credits a process draws at once from an account's balance to reserve "
        "calls in memory (while the account has four blocks or more; near the end of a "
        "balance it draws one call's cost at a time).",
    )
    credit_hold_seconds: float = Field(
        default=5.0,
        gt=0,
        validation_alias="TOLLGATE_CREDIT_HOLD_SECONDS",
        description="How long drawn credits serve calls before the account is checked again "
        "(a change made directly in the database, such as disabling an account, takes effect "
        "within this time); credits unused this long go back to the balance.",
    )
    chat_max_steps: int = Field(
        default=8,
        ge=1,
        le=50,
        validation_alias="TOLLGATE_CHAT_MAX_STEPS",
        description="Model calls one chat turn may make at most (each may ask for tools); "
        "a turn that reaches it ends with what the model said last.",
    )
    chat_tool_result_chars: int = Field(
        default=20_000,
        ge=100,
        validation_alias="TOLLGATE_CHAT_TOOL_RESULT_CHARS",
        description="Characters of one tool result the chat puts into the conversation; "
        "the rest is cut, saying so.",
    )
    chat_session_ttl_seconds: float = Field(
        default=3600.0,
        gt=0,
        validation_alias="TOLLGATE_CHAT_SESSION_TTL_SECONDS",
        description="A chat session unused this long is forgotten (its history too).",
    )
    chat_history_messages: int = Field(
        default=50,
        ge=2,
        validation_alias="TOLLGATE_CHAT_HISTORY_MESSAGES",
        description="Messages of a chat session's history kept (and sent to the model).",
    )
    chat_allow_external_servers: bool = Field(
        default=False,
        validation_alias="TOLLGATE_CHAT_ALLOW_EXTERNAL_SERVERS",
        description="Let /llmchat/connect name an MCP server other than Tollgate itself "
        "(its address is checked like an upstream's). By default the chat's tools are "
        "Tollgate's own /mcp or one of its virtual servers.",
    )
    hide_tools_without_credential: bool = Field(
        default=False,
        validation_alias="TOLLGATE_HIDE_TOOLS_WITHOUT_CREDENTIAL",
        description="Leave out of a caller's tools/list the tools of broker-auth upstreams "
        "whose credential the caller has not connected (by default they are listed, marked "
        'in their description and in _meta["tollgate/credential"]).',
    )
    list_page_size: int = Field(
        default=1000,
        ge=1,
        validation_alias="TOLLGATE_LIST_PAGE_SIZE",
        description="Items per page of the tools, resources, resource templates and prompts "
        "lists served on /mcp; longer lists continue behind nextCursor.",
    )
    settle_before_answer: bool = Field(
        default=True,
        validation_alias="TOLLGATE_SETTLE_BEFORE_ANSWER",
        description="Commit each tool call's record and charge before its answer is sent "
        "(a few milliseconds per call). false: the answer goes at once and the record follows "
        "in the next group commit; a process killed in between loses those calls' records "
        "and charges (never charging twice, never past the balance).",
    )
    forward_tool_calls: bool = Field(
        default=True,
        validation_alias="TOLLGATE_FORWARD_TOOL_CALLS",
        description="Relay tools/call to HTTP upstreams as raw JSON-RPC (the fast path: same "
        "metering, records and relays, a fraction of the time). false: every call takes the "
        "MCP SDK's server and client, as other requests do.",
    )
    max_body_bytes: int = Field(
        default=DEFAULT_MAX_BODY_BYTES,
        ge=1,
        validation_alias="TOLLGATE_MAX_BODY_BYTES",
        description="Largest HTTP request body accepted; larger ones are answered 413 "
        "`body_too_large` as soon as the length is known or the count passes it.",
    )
    public_url: str = Field(
        default="",
        validation_alias="TOLLGATE_PUBLIC_URL",
        description="Base URL clients use, named in the `/mcp` 401 challenge and the OAuth "
        "resource metadata; empty: the request's `Host` when it is one of the allowed hosts, "
        "else `http://<host>:<port>`.",
    )
    internal_host: str = Field(
        default="127.0.0.1",
        validation_alias="TOLLGATE_INTERNAL_HOST",
        description="Address of the per-process listener that other processes forward MCP "
        "sessions to (with REDIS_URL only); 0.0.0.0 or a LAN address for several hosts.",
    )
    internal_port: int = Field(
        default=0,
        ge=0,
        le=65535,
        validation_alias="TOLLGATE_INTERNAL_PORT",
        description="Port of that listener; 0 picks a free one per process.",
    )
    internal_url: str = Field(
        default="",
        validation_alias="TOLLGATE_INTERNAL_URL",
        description="How other processes reach this one's listener (default "
        "`http://<internal host>:<bound port>`; `{port}` stands for the bound port); set it "
        "when they run on other hosts.",
    )
    allowed_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: list(DEFAULT_ALLOWED_HOSTS),
        validation_alias="TOLLGATE_ALLOWED_HOSTS",
        description="Comma-separated `Host` values `/mcp` answers (DNS rebinding "
        "protection) and may name as its public URL; `host:*` allows any port.",
    )
    allow_stdio_upstreams: bool = Field(
        default=False,
        validation_alias="TOLLGATE_ALLOW_STDIO_UPSTREAMS",
        description="Whether superusers may add or change stdio upstreams (commands run on "
        "this host) through the API; the host's `tollgate upstream add` may regardless.",
    )
    upstream_allowed_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        validation_alias="TOLLGATE_UPSTREAM_ALLOWED_HOSTS",
        description="When set, upstream URLs must name one of these hosts (`mcp.example.com`, "
        "`*.example.com`) or resolve into one of these networks (`10.0.0.0/8`, `127.0.0.1`).",
    )
    upstream_denied_networks: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: list(DEFAULT_DENIED_UPSTREAM_NETWORKS),
        validation_alias="TOLLGATE_UPSTREAM_DENIED_NETWORKS",
        description="Networks no upstream URL may resolve into (checked first, always; "
        "IPv4-mapped IPv6 counts as IPv4).",
    )
    upstream_sync_interval_seconds: float = Field(
        default=10,
        gt=0,
        validation_alias="TOLLGATE_UPSTREAM_SYNC_INTERVAL_SECONDS",
        description="How often a running server picks up upstreams added, changed or "
        "removed elsewhere (the CLI, another process).",
    )
    mcp_enabled: bool = Field(
        default=False,
        validation_alias=_env("MCP_ENABLED"),
        description="Serve read-only data access to agents (`/mcp/ws` and the `data__*` tools).",
    )
    mcp_token: str = Field(
        default="",
        validation_alias=_env("MCP_TOKEN"),
        description="Shared token for `/mcp/ws` (the operator's: its reads belong to no "
        "account and are free); empty: account keys only.",
    )
    mcp_allowed_models: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["users", "tickets", "change_log"],
        validation_alias=_env("MCP_ALLOWED_MODELS"),
        description="Comma-separated tables of the data source agents may read.",
    )
    mcp_readonly: bool = Field(
        default=True,
        validation_alias=_env("MCP_READONLY"),
        description="Refuse write actions on `/mcp/ws` (the data source is opened read-only "
        "regardless).",
    )
    mcp_rate_limit: int = Field(
        default=60,
        ge=1,
        validation_alias=_env("MCP_RATE_LIMIT"),
        description="Requests per 60 s one `/mcp/ws` connection may make before it is closed.",
    )
    data_url: str = Field(
        default="",
        validation_alias="TOLLGATE_DATA_URL",
        description="The data source agents read (any URL SQLAlchemy reaches); empty: the "
        "demo helpdesk `helpdesk.db` in the data directory.",
    )
    sensitive_field_patterns: list[str] = Field(
        default_factory=lambda: [
            r"(^|_)(password|passwd|secret|token|hash|salt)($|_)",
            r"api_?key",
            r"private_?key",
        ],
        validation_alias="TOLLGATE_SENSITIVE_FIELD_PATTERNS",
        description="JSON list of regular expressions; columns whose names match are never "
        "sent to agents (on top of seed 002's list).",
    )
    data_tool_price: int = Field(
        default=1,
        ge=0,
        validation_alias="TOLLGATE_DATA_TOOL_PRICE",
        description="Credits each data tool call costs, and each `/mcp/ws` read made with an "
        "account key; reads with the shared MCP_TOKEN (no account) are free.",
    )
    mcp_webhook_secret: str = Field(
        default="",
        validation_alias=_env("MCP_WEBHOOK_SECRET"),
        description="HMAC key of signed analytics posts (`X-Tollgate-Signature`); empty: "
        "signed posts are refused.",
    )
    analytics_retention_days: int = Field(
        default=30,
        ge=1,
        validation_alias="TOLLGATE_ANALYTICS_RETENTION_DAYS",
        description="Age after which raw analytics events are rolled up into hourly rows "
        "and pruned.",
    )
    stripe_webhook_secret: str = Field(
        default="",
        validation_alias=_env("STRIPE_WEBHOOK_SECRET"),
        description="Verifies `POST /api/v1/billing/stripe/webhook`; empty: billing is off.",
    )

    @field_validator("credit_tiers", mode="before")
    @classmethod
    def _parse_tiers(cls, value: Any) -> Any:
        return json.loads(value) if isinstance(value, str) else value

    @field_validator(
        "mcp_allowed_models",
        "allowed_hosts",
        "upstream_allowed_hosts",
        "upstream_denied_networks",
        mode="before",
    )
    @classmethod
    def _comma_list(cls, value: Any) -> Any:
        if isinstance(value, str) and not value.strip().startswith("["):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("upstream_denied_networks")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for entry in value:
            ipaddress.ip_network(entry, strict=False)  # a typo fails the start, loudly
        return value

    @property
    def resolved_data_url(self) -> str:
        """The data source agents read: ``TOLLGATE_DATA_URL`` or the demo helpdesk file."""
        if self.data_url:
            return normalise_database_url(self.data_url)
        return f"sqlite+aiosqlite:///{(self.data_dir / HELPDESK_FILE).resolve()}"

    @field_validator("database_url")
    @classmethod
    def _async_driver(cls, value: str) -> str:
        return normalise_database_url(value) if value else value

    @property
    def resolved_database_url(self) -> str:
        """The database URL, defaulting to SQLite inside the data directory."""
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'tollgate.db').resolve()}"

    @cached_property
    def secrets_file(self) -> Path:
        """Where generated secrets are kept (mode 0600)."""
        return self.data_dir / SECRETS_FILE_NAME

    def tier(self, name: str) -> CreditTier:
        """The tier called ``name``; unknown names fall back to the default tier."""
        return self.credit_tiers.get(name) or self.credit_tiers[self.default_tier]


def normalise_database_url(url: str) -> str:
    """Map plain driver URLs to the async drivers Tollgate uses."""
    for plain, async_form in (
        ("postgres://", "postgresql+asyncpg://"),
        ("postgresql://", "postgresql+asyncpg://"),
        ("postgresql+psycopg2://", "postgresql+asyncpg://"),
        ("sqlite://", "sqlite+aiosqlite://"),
    ):
        if url.startswith(plain):
            return async_form + url[len(plain) :]
    return url


def load_or_generate_secrets(settings: Settings) -> Settings:
    """Fill missing secrets from the data directory, generating them on first start.

    The generated file is written with mode 0600 and announced once, when it is created.
    """
    stored = read_secrets_file(settings.secrets_file)
    wanted = {
        "jwt_secret_key": lambda: secrets.token_urlsafe(GENERATED_KEY_BYTES),
        "secret_key": lambda: secrets.token_urlsafe(GENERATED_KEY_BYTES),
        "encryption_keys": generate_key_spec,
    }
    missing = [name for name in wanted if not getattr(settings, name) and not stored.get(name)]
    if missing:
        for name in missing:
            stored[name] = wanted[name]()
        write_secrets_file(settings.secrets_file, stored)
        logger.warning(
            "generated secrets %s into %s (mode 0600); keep this file private and backed up",
            ", ".join(missing),
            settings.secrets_file,
        )
    updates = {name: stored[name] for name in wanted if not getattr(settings, name)}
    return settings.model_copy(update=updates)


def read_secrets_file(path: Path) -> dict[str, str]:
    """The secrets stored in ``path``, or nothing when it does not exist."""
    if not path.exists():
        return {}
    data = json.loads(path.read_text())
    return {str(k): str(v) for k, v in data.items()}


def write_secrets_file(path: Path, values: dict[str, str]) -> None:
    """Write secrets atomically, readable by the owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(values, handle, indent=2)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def get_settings() -> Settings:
    """Settings from the environment, with secrets completed from the data directory."""
    return load_or_generate_secrets(Settings())
