"""The application's state: what ``create_app`` builds once per process, in one typed object.

Routes and WebSocket handlers read it through :func:`app_state` (or ``AppStateDep``), never
through ``app.state`` attributes of their own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated

from fastapi import Depends
from starlette.applications import Starlette
from starlette.requests import HTTPConnection

from tollgate.core.encrypted import EncryptedColumn
from tollgate.core.runtime import Runtime

if TYPE_CHECKING:  # named for typing only: core imports no part at run time
    from tollgate.accounts.keys import KeyStore
    from tollgate.accounts.settlement import Settler
    from tollgate.analytics.recorder import Recorder
    from tollgate.data.service import DataAccess
    from tollgate.gateway.hub import Gateway
    from tollgate.gateway.server import McpEndpoint
    from tollgate.identity.credentials import Credentials

STATE_ATTRIBUTE = "tollgate"
"""Where the :class:`AppState` is kept on the Starlette application's ``state``."""


@dataclass(frozen=True)
class AppState:
    """Everything one process's application shares between requests."""

    runtime: Runtime
    settler: Settler
    gateway: Gateway
    endpoint: McpEndpoint
    recorder: Recorder
    keys: KeyStore
    credentials: Credentials
    data: DataAccess | None
    encrypted_columns: tuple[EncryptedColumn, ...]


def install_state(app: Starlette, state: AppState) -> None:
    """Attach ``state`` to ``app`` (once, in ``create_app``).

    ``app.state.runtime`` and ``app.state.gateway`` stay readable for tests and benchmarks
    that hold the application object; Tollgate's own code reads :func:`app_state`.
    """
    setattr(app.state, STATE_ATTRIBUTE, state)
    app.state.runtime = state.runtime
    app.state.gateway = state.gateway


def app_state(app: Starlette) -> AppState:
    """The state ``create_app`` attached to ``app``."""
    state = getattr(app.state, STATE_ATTRIBUTE, None)
    if not isinstance(state, AppState):
        raise RuntimeError("this application was not built by create_app")
    return state


def get_app_state(connection: HTTPConnection) -> AppState:
    """Dependency form of :func:`app_state` (HTTP requests and WebSockets alike)."""
    return app_state(connection.app)


AppStateDep = Annotated[AppState, Depends(get_app_state)]
