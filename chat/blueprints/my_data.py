"""A person's own data: GET /me/export (docs/operations.md, "Export format")."""

from __future__ import annotations

from quart import Blueprint, Response

from .. import exports
from ..openapi import documented
from ..schemas import ExportOut
from ..security import login_required, signed_in

bp = Blueprint("my_data", __name__)


@bp.get("/me/export")
@login_required
@documented((ExportOut, 200), errors=(401, 503), session=True)
async def export_my_data() -> Response:
    """The caller's account and every message they sent or received, as one JSON document, streamed (a
    download: Content-Disposition attachment). No password hash is in it."""
    me = (await signed_in()).user
    response = Response(exports.export_stream(exports.USER, me), content_type="application/json")
    response.headers["Content-Disposition"] = f'attachment; filename="chat-export-{me.username}.json"'
    return response
