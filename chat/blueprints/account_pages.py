"""The operator's and the person's own pages: /admin (people, roles, deactivation) and /account (export my data,
delete my account). Their scripts are chat/static/js/admin.js and account.js; the API does the work."""

from __future__ import annotations

from quart import Blueprint, Response, redirect, render_template
from quart_schema import hide

from ..security import request_user
from ..state import state
from .pages import page_headers

bp = Blueprint("account_pages", __name__)
bp.after_request(page_headers)  # the pages' Content-Security-Policy and no-store, as for pages.py's own


async def _signed_in_user():
    found = await request_user().resolve(fresh=True)  # the role as stored now
    return None if found is None else found.user


@bp.get("/account")
@hide  # HTML for people: not part of the JSON API
async def account_page() -> Response | str:
    user = await _signed_in_user()
    if user is None:
        return redirect("/login-page")
    removed = state().settings.deleted_user_content == "remove"
    return await render_template("account.html", me=user, content_removed=removed)


@bp.get("/admin")
@hide
async def admin_page() -> Response | str | tuple[str, int]:
    user = await _signed_in_user()
    if user is None:
        return redirect("/login-page")
    if not user.is_admin:
        return await render_template("not_admin.html", me=user), 403
    return await render_template("admin.html", me=user)
