"""Where a request comes from: Origin checks against CSRF, and cross-site navigations."""

from __future__ import annotations

from urllib.parse import urlsplit

from quart import request

from ..errors import APIError


def origin_allowed(origin: str | None, host: str, allowed: tuple[str, ...]) -> bool:
    """A request with no Origin (curl, a native client) passes; a browser's must be ours or allowed.

    "Ours" compares host and port only, so that the https:// origin of a server behind a TLS proxy passes.
    """
    if origin is None:
        return True
    origin = origin.strip().rstrip("/").lower()
    if origin in allowed:
        return True
    parts = urlsplit(origin)
    return parts.scheme in ("http", "https") and parts.netloc == host.lower()


def _origin_of(url: str) -> str | None:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else None


def cross_site_navigation(allowed: tuple[str, ...]) -> bool:
    """Did another site send this request (a link, an <img>, a redirect)? Only a browser says so.

    Sec-Fetch-Site is the browser's own verdict ("none": typed or bookmarked by the user); older browsers are
    judged by Origin, then Referer (our Referrer-Policy, same-origin, lets our own pages send it). A request
    with none of them (curl, a native client) is no navigation from another site.
    """
    fetch_site = request.headers.get("Sec-Fetch-Site")
    if fetch_site is not None:
        return fetch_site not in ("same-origin", "none")
    for claimed in (request.headers.get("Origin"), request.headers.get("Referer")):
        if claimed:
            origin = claimed if claimed == "null" else _origin_of(claimed)
            return origin is None or not origin_allowed(origin, request.host, allowed)
    return False


STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def foreign_origin(origin: str | None, host: str, allowed: tuple[str, ...]) -> APIError | None:
    if origin_allowed(origin, host, allowed):
        return None
    return APIError(403, "forbidden_origin", "Requests from this origin are not allowed.")


def check_request_origin(allowed: tuple[str, ...]) -> None:
    """CSRF defence for state-changing requests: a browser's Origin must be ours (cookies are SameSite=Lax
    too, and bodies must be JSON, which no cross-site form can send without a preflight)."""
    if request.method in STATE_CHANGING:
        problem = foreign_origin(request.headers.get("Origin"), request.host, allowed)
        if problem is not None:
            raise problem
