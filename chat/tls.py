"""What the application does when it is served over TLS (hypercorn.toml): send plain HTTP to HTTPS, and tell
browsers to stay on HTTPS (Strict-Transport-Security).

hypercorn serves the same application on its TLS `bind` and its plain `insecure_bind`; the ASGI scheme tells
the two apart. It cannot tell the application which port the TLS bind has, hence CHAT_HTTPS_PORT.
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

from quart import Quart, Response, redirect, request, websocket

from .config import Settings
from .errors import APIError


def https_url(url: str, port: int) -> str:
    """`url` (as the client asked for it) with the https scheme and `port`, keeping host, path and query."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:  # an IPv6 literal goes back in brackets
        host = f"[{host}]"
    netloc = host if port == 443 else f"{host}:{port}"
    return urlunsplit(("https", netloc, parts.path, parts.query, ""))


def install_https(app: Quart, settings: Settings) -> None:
    """Redirect plain HTTP (when CHAT_HTTPS_PORT is set) and send HSTS on every HTTPS response."""

    if settings.https_port is not None:
        port = settings.https_port

        @app.before_request
        async def redirect_to_https() -> Response | None:
            if request.is_secure:
                return None
            if not request.host:  # HTTP/1.0 without Host: there is no name to redirect to
                raise APIError(400, "https_required", f"This server answers over HTTPS only, on port {port}.")
            # 307, not 301: a browser does not cache it forever (HSTS is what keeps it on HTTPS), and a POST
            # stays a POST.
            return redirect(https_url(request.url, port), 307)

        @app.before_websocket
        async def refuse_plain_websocket() -> None:
            if not websocket.is_secure:  # a browser does not follow a redirect for a websocket: say why instead
                raise APIError(403, "https_required", f"Connect with wss:// on port {port}.")

    # RFC 6797: only a response that came over TLS may carry it (browsers ignore it on http:// anyway).
    hsts = f"max-age={settings.hsts_seconds}"

    @app.after_request
    async def strict_transport_security(response: Response) -> Response:
        if request.is_secure:
            response.headers.setdefault("Strict-Transport-Security", hsts)
        return response
