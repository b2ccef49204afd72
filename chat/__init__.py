"""chat: a self-hosted async chat server. `chat:create_app()` builds the application."""

from __future__ import annotations

from typing import Any

from quart import Quart, Response
from quart_schema import Info, QuartSchema

from . import lean_hypercorn
from .asgi_http import BoundedHTTPConnection
from .asgi_websocket import BoundedWebsocketConnection
from .blueprints import account_pages, admin, auth, docs, messaging, my_data, ops, pages, realtime, users
from .blueprints import changes as change_routes  # chat.changes is the domain module
from .blueprints import files as file_routes  # chat.files is the domain module
from .blueprints import rooms as room_routes  # not "rooms": chat.rooms is the domain module
from .blueprints import search as search_routes  # chat.search is the domain module
from .config import Settings, instance_secret_key, load_settings
from .errors import register_error_handlers
from .hosts import install_host_check
from .instance import secure_instance_folder
from .json_io import ChatQuart, ChatRequest, OrjsonProvider, cache_validation_adapters, json_responses_first
from .lifecycle import install_lifecycle
from .logs import escape_client_text_in_logs, install_request_log, use_json_logs
from .metrics import install_metrics
from .openapi import SECURITY_SCHEMES, ChatOpenAPIProvider
from .security import SESSION_COOKIE, ChatAuth, SessionUser, check_request_origin
from .services import build_state
from .socketio_clients import install_socketio
from .tls import install_https

__version__ = "0.1.0"

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}

# the JSON API's, then the pages'
BLUEPRINTS = (
    auth.bp,
    users.bp,
    messaging.bp,
    change_routes.bp,
    room_routes.bp,
    search_routes.bp,
    file_routes.bp,
    realtime.bp,
    ops.bp,
    admin.bp,
    my_data.bp,
    pages.bp,
    account_pages.bp,
)
BLUEPRINTS += (docs.bp,)


def create_app(**overrides: Any) -> Quart:
    """A new, independent application. Keyword arguments override the CHAT_* environment (see config.Settings)."""
    settings = load_settings(**overrides)
    app = _application(settings)
    _install_sessions(app, settings)
    _install_json_api(app)
    install_request_log(app, settings.log_format)  # before the guards: their answers carry a request id too
    app_state = app.extensions["chat"] = build_state(settings)
    _install_guards(app, settings)
    install_lifecycle(app, settings, app_state)  # the database and the services start and stop with serving
    install_metrics(app, app_state)  # after the lifecycle: its probe needs the database open
    for blueprint in BLUEPRINTS:
        app.register_blueprint(blueprint)
    if settings.socketio:
        install_socketio(app, app_state)  # /socket.io/ for the original application's clients, beside Quart
    return app


def _application(settings: Settings) -> Quart:
    """The Quart application in its own instance folder, with its secret key and chat's request classes."""
    escape_client_text_in_logs()
    lean_hypercorn.install()  # per connection: no asyncio.Queue, no h11 after an upgrade, no permessage-deflate
    if settings.log_format == "json":
        use_json_logs()  # before Quart's logger exists: it then adds no text handler of its own
    instance_path = settings.instance_path.resolve()
    secure_instance_folder(instance_path)
    app = ChatQuart(__name__, instance_path=str(instance_path))
    app.request_class = ChatRequest
    app.asgi_websocket_class = BoundedWebsocketConnection  # incoming frames bounded (asgi_websocket.py)
    app.asgi_http_class = BoundedHTTPConnection  # an upload's body streamed and bounded (asgi_http.py)
    app.secret_key = settings.secret_key or instance_secret_key(instance_path)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    # "//" in a path is a 404 like any unknown path, not a 308 to the merged one with an HTML body (a reaction's
    # emoji is a path segment: "/" in it, percent-encoded or not, must not move the request elsewhere)
    app.url_map.merge_slashes = False
    return app


def _install_sessions(app: Quart, settings: Settings) -> None:
    """quart-auth's signed cookie carries the session token, verified once per worker (security/sessions.py)."""
    app.config.update(
        QUART_AUTH_COOKIE_NAME=SESSION_COOKIE,
        QUART_AUTH_COOKIE_SECURE=settings.cookie_secure,
        QUART_AUTH_COOKIE_SAMESITE="Lax",
        QUART_AUTH_COOKIE_HTTP_ONLY=True,
        QUART_AUTH_DURATION=settings.session_days * 24 * 3600,
        QUART_AUTH_SALT="chat session",
    )
    ChatAuth(app, user_class=SessionUser, cookie_blueprints=(auth.bp.name,))  # only auth.py signs in and out


def _install_json_api(app: Quart) -> None:
    """quart-schema's validation and /openapi.json, then orjson for every JSON body (json_io.py)."""
    QuartSchema(
        app,
        info=Info(title="chat", version=__version__, description="The chat server's JSON API (see API.md)."),
        openapi_path="/openapi.json",
        swagger_ui_path=None,  # /docs is blueprints/docs.py: Swagger UI from this server's own files
        redoc_ui_path=None,
        scalar_ui_path=None,
        security_schemes=SECURITY_SCHEMES,
        openapi_provider_class=ChatOpenAPIProvider,
    )
    app.json = OrjsonProvider(app)  # after QuartSchema, which installs a provider of its own (the stdlib's json)
    json_responses_first(app)
    cache_validation_adapters()


def _install_guards(app: Quart, settings: Settings) -> None:
    """What every request passes: API errors as JSON, the Host check, HTTPS, the Origin check, security headers."""
    register_error_handlers(app)
    install_host_check(app, settings.allowed_hosts)  # first: nothing else should act on a foreign Host
    install_https(app, settings)

    @app.before_request
    async def guard_origin() -> None:
        check_request_origin(settings.allowed_origins)

    json_headers = {**SECURITY_HEADERS, "Cache-Control": "no-store"}

    @app.after_request
    async def security_headers(response: Response) -> Response:
        # the names present read once (a setdefault per header scans them all, lower-casing each, every time)
        headers = response.headers
        present = {name.lower() for name in headers.keys()}  # noqa: SIM118 - Headers iterates as (name, value)
        for name, value in (json_headers if response.mimetype == "application/json" else SECURITY_HEADERS).items():
            if name.lower() not in present:
                headers.add(name, value)
        return response
