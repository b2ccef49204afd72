"""The browser pages: sign-in, sign-up and the chat page (templates in chat/templates, scripts in chat/static)."""

from __future__ import annotations

import re
from urllib.parse import quote

from quart import Blueprint, Response, redirect, render_template, request
from quart_schema import hide

from ..schemas import MAX_CONTENT
from ..security import request_user

bp = Blueprint("pages", __name__)

# A Host header that could smuggle a directive into the policy (";", spaces, quotes) is left out of it.
PLAIN_HOST = re.compile(r"^[A-Za-z0-9.\-]+(:[0-9]{1,5})?$|^\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?$")


def content_security_policy(host: str) -> str:
    """Scripts, styles and connections from this origin only; nothing inline, no framing.

    CSP Level 3 lets 'self' match ws:/wss: of the same host, but older browsers need the socket origins spelled out.
    """
    sockets = f" ws://{host} wss://{host}" if PLAIN_HOST.match(host) else ""
    return "; ".join(
        (
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            "img-src 'self' data:",
            "font-src 'self'",
            f"connect-src 'self'{sockets}",
            "manifest-src 'self'",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        )
    )


@bp.after_request
async def page_headers(response: Response) -> Response:
    """The policy for pages (create_app adds nosniff, Referrer-Policy and X-Frame-Options to every response)."""
    if response.mimetype == "text/html":
        response.headers["Content-Security-Policy"] = content_security_policy(request.host)
        # a page names who is signed in: never kept for the back button after signing out
        response.headers["Cache-Control"] = "no-store"
    return response


async def _signed_in_user():
    found = await request_user().resolve()
    return None if found is None else found.user


@bp.get("/")
@hide  # HTML for people: not part of the JSON API that /openapi.json describes
async def index() -> Response:
    return redirect("/chat" if await _signed_in_user() else "/login-page")


@bp.get("/login-page")
@hide
async def login_page() -> Response | str:
    if await _signed_in_user():
        return redirect("/chat")
    return await render_template("login.html")


@bp.get("/register-page")
@hide
async def register_page() -> Response | str:
    if await _signed_in_user():
        return redirect("/chat")
    return await render_template("register.html")


@bp.get("/logout-page")
@hide
async def logout_page() -> str:
    """Where a sign-out link from another site lands (GET /logout): only this page's own button signs out."""
    return await render_template("logout.html", me=await _signed_in_user())


@bp.get("/chat")
@hide
async def chat_page() -> Response | str:
    user = await _signed_in_user()
    if user is None:
        # come back to the same conversation after signing in (the login page accepts only /chat paths)
        return redirect("/login-page?next=" + quote(request.full_path.rstrip("?"), safe=""))
    return await render_template("chat.html", me=user, max_length=MAX_CONTENT)
