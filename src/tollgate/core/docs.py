"""The API's documentation pages, served with their scripts by Tollgate itself (the Swagger
UI and ReDoc bundles come with the ``fastapi-offline`` package): they render without
internet access, where FastAPI's defaults load them from a CDN."""

from __future__ import annotations

from pathlib import Path

import fastapi_offline
from fastapi import FastAPI
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

DOCS_PATH = "/api/v1/docs"
REDOC_PATH = "/api/v1/redoc"
ASSETS_PATH = "/api/v1/docs-assets"
"""Where the Swagger UI and ReDoc scripts, style sheet and icon are served."""

ASSETS_DIRECTORY = Path(fastapi_offline.__file__).parent / "static"

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self' 'unsafe-inline' blob:; worker-src 'self' blob:; "
    "style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; connect-src 'self'"
)
"""The pages' scripts are inline or ours; this also keeps the ReDoc bundle from fetching its
logo from its CDN."""


def _own_assets_only(page: HTMLResponse) -> HTMLResponse:
    page.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    return page


def install_docs(app: FastAPI, openapi_url: str) -> None:
    """Serve ``/api/v1/docs`` (Swagger UI, with an Authorize button for a bearer token) and
    ``/api/v1/redoc`` from local assets. Public, like the OpenAPI document they read."""
    app.mount(ASSETS_PATH, StaticFiles(directory=ASSETS_DIRECTORY), name="docs-assets")
    title = f"{app.title} API"

    @app.get(DOCS_PATH, include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return _own_assets_only(
            get_swagger_ui_html(
                openapi_url=openapi_url,
                title=title,
                swagger_js_url=f"{ASSETS_PATH}/swagger-ui-bundle.js",
                swagger_css_url=f"{ASSETS_PATH}/swagger-ui.css",
                swagger_favicon_url=f"{ASSETS_PATH}/favicon.png",
                oauth2_redirect_url=f"{DOCS_PATH}/oauth2-redirect",
                swagger_ui_parameters={"persistAuthorization": True},
            )
        )

    @app.get(f"{DOCS_PATH}/oauth2-redirect", include_in_schema=False)
    async def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get(REDOC_PATH, include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return _own_assets_only(
            get_redoc_html(
                openapi_url=openapi_url,
                title=title,
                redoc_js_url=f"{ASSETS_PATH}/redoc.standalone.js",
                redoc_favicon_url=f"{ASSETS_PATH}/favicon.png",
                with_google_fonts=False,
            )
        )
