"""The application's state: what ``create_app`` builds once per process, in one typed object.

Routes and WebSocket handlers read it through :func:`app_state` (or a part's dependency built
with :func:`component`), never through ``app.state`` attributes of their own. Components are
kept by their type, so ``core`` names no part while every read stays typed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, TypeVar

from fastapi import Depends
from starlette.applications import Starlette
from starlette.requests import HTTPConnection

from tollgate.core.runtime import Runtime

T = TypeVar("T")

STATE_ATTRIBUTE = "tollgate"
"""Where the :class:`AppState` is kept on the Starlette application's ``state``."""


class AppState:
    """Everything one process's application shares between requests: the runtime and one
    instance per component type (the gateway, the credentials resolver, data access...)."""

    def __init__(self, runtime: Runtime, *components: object) -> None:
        self.runtime = runtime
        self._components: dict[type, object] = {type(c): c for c in components}

    def find(self, kind: type[T]) -> T | None:
        """The component of type ``kind``, or None when this process runs without it."""
        found = self._components.get(kind)
        return found if isinstance(found, kind) else None

    def get(self, kind: type[T]) -> T:
        """The component of type ``kind``; RuntimeError when ``create_app`` did not build one."""
        found = self.find(kind)
        if found is None:
            raise RuntimeError(f"this application has no {kind.__name__}")
        return found


def install_state(app: Starlette, state: AppState) -> None:
    """Attach ``state`` to ``app`` (once, in ``create_app``).

    ``app.state.runtime`` stays readable for tests and benchmarks that hold the application
    object; Tollgate's own code reads :func:`app_state`.
    """
    setattr(app.state, STATE_ATTRIBUTE, state)
    app.state.runtime = state.runtime


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


def component(kind: type[T]) -> Callable[[HTTPConnection], T]:
    """A dependency returning the application's component of type ``kind``."""

    def dependency(connection: HTTPConnection) -> T:
        return app_state(connection.app).get(kind)

    dependency.__name__ = f"get_{kind.__name__.lower()}"
    return dependency
