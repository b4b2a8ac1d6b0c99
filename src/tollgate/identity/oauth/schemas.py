"""What the OAuth management API reads and answers (the protocol's own shapes are the SDK's)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class GrantOut(BaseModel):
    """A connected client: one user's consent to one client for one resource."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    user_id: int
    client_id: str
    client_name: str | None
    resource: str
    scopes: list[str]
    created_at: datetime
    last_used_at: datetime | None


class ClientCreate(BaseModel):
    """A client an admin registers ahead of time (for clients without dynamic registration)."""

    client_name: str = Field(min_length=1, max_length=200)
    redirect_uris: list[str] = Field(min_length=1, max_length=20)
    confidential: bool = Field(
        default=False, description="Issue a client secret (shown once); else a public client."
    )
    application_type: Literal["web", "native"] = "web"


class ClientOut(BaseModel):
    """A registered client; ``client_secret`` only in the answer that created it."""

    client_id: str
    client_name: str | None
    redirect_uris: list[str]
    token_endpoint_auth_method: str | None
    client_secret: str | None = None
