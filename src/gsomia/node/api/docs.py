"""The user API's ``/docs`` page, served whole by the node itself.

FastAPI's own page loads Swagger UI's script and style from a CDN: on the air-gapped
networks nodes run on it stays blank. Here they come from the package (``static/swagger-ui``,
swagger-ui-dist from the npm registry, Apache-2.0: see its LICENSE and NOTICE there), and
the page names no other host. Swagger UI's validator badge, which sends the API's document
to a public validator, is switched off for the same reason.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html, swagger_ui_default_parameters
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

STATIC = Path(__file__).parent / "static" / "swagger-ui"
PREFIX = "/static/swagger-ui"
FILES = ("swagger-ui-bundle.js", "swagger-ui.css", "favicon-32x32.png")
# What a browser asks for before it can send a token: the page and the three files it loads, exactly.
OPEN_PATHS = ("/docs", *(f"{PREFIX}/{name}" for name in FILES))


def install(app: FastAPI) -> None:
    """``/docs`` and its files on ``app``, which must be made with ``docs_url=None, redoc_url=None``."""
    app.mount(PREFIX, StaticFiles(directory=STATIC), name="swagger-ui")

    @app.get("/docs", include_in_schema=False)
    async def docs(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "").rstrip("/")  # behind a proxy that mounts the API under a path
        return get_swagger_ui_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=f"{app.title}: documentation",
            swagger_js_url=f"{root}{PREFIX}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{PREFIX}/swagger-ui.css",
            swagger_favicon_url=f"{root}{PREFIX}/favicon-32x32.png",
            swagger_ui_parameters={**swagger_ui_default_parameters, "validatorUrl": None},
        )
