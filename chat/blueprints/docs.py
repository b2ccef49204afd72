"""/docs: Swagger UI for /openapi.json, served from this server's own files under the pages' CSP.

quart-schema's own page loads Swagger UI from a third-party CDN onto this origin, with no SRI and no policy: whoever
serves that script could act as any signed-in visitor. Here the bundle and its style come from the pinned
flask-swagger-ui package (Swagger UI's official dist files; Flask is installed with Quart anyway), and the page's
start-up script is a file of ours, since the policy allows no inline script.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from quart import Blueprint, Response, render_template, request, send_from_directory
from quart_schema import hide
from werkzeug.exceptions import NotFound

from .pages import content_security_policy

bp = Blueprint("docs", __name__)

SWAGGER_UI_DIST = Path(str(files("flask_swagger_ui") / "dist"))
# only what the page loads: the package also holds files (an OAuth redirect page, presets) nothing here uses
SWAGGER_UI_FILES = frozenset({"swagger-ui-bundle.js", "swagger-ui.css"})
ASSET_MAX_AGE = 24 * 3600


def swagger_ui_version() -> str:
    return (SWAGGER_UI_DIST / "VERSION").read_text().strip()


@bp.after_request
async def docs_headers(response: Response) -> Response:
    if response.mimetype == "text/html":
        response.headers["Content-Security-Policy"] = content_security_policy(request.host)
    return response


@bp.get("/docs")
@hide
async def swagger_ui() -> str:
    return await render_template("docs.html", version=swagger_ui_version())


@bp.get("/docs/swagger-ui/<name>")
@hide
async def swagger_ui_file(name: str) -> Response:
    if name not in SWAGGER_UI_FILES:
        raise NotFound()
    return await send_from_directory(SWAGGER_UI_DIST, name, cache_timeout=ASSET_MAX_AGE)
