"""Search: GET /search finds the messages the caller may see that match a query (chat/search.py)."""

from __future__ import annotations

from quart import Blueprint, Response
from quart_schema import validate_querystring

from .. import search
from ..errors import error_response
from ..openapi import documented
from ..schemas import SearchOut, SearchQuery
from ..security import login_required, signed_in

bp = Blueprint("search", __name__)


@bp.get("/search")
@login_required
@validate_querystring(SearchQuery)
@documented((SearchOut, 200), errors=(400, 401, 403, 404, 503), session=True)
async def search_messages(query_args: SearchQuery) -> dict | Response:
    """Messages of the caller's rooms (or of `room`) whose content matches q, newest first, each with the
    [start, end] character offsets of what matched. All words must match, any case; a word of 3 or more
    characters also matches words it begins; "quoted words" match as a phrase. Page with before=ID."""
    try:
        query = search.parse_query(query_args.q)
    except search.InvalidQuery as exc:
        return error_response(
            400, "validation_error", "Some fields are invalid.", fields=[{"field": "q", "message": str(exc)}]
        )
    me = (await signed_in()).user.id
    messages, has_more = await search.search(
        me, query, room=query_args.room, before=query_args.before, limit=query_args.limit
    )
    return {"messages": messages, "has_more": has_more}
