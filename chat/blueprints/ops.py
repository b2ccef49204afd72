"""Operations: health."""

from __future__ import annotations

from quart import Blueprint

from ..db import ping
from ..errors import APIError
from ..openapi import documented
from ..schemas import HealthOut
from ..state import state

bp = Blueprint("ops", __name__)


@bp.get("/healthz")
@documented((HealthOut, 200), errors=(503,))
async def healthz() -> dict:
    """200 while the database answers; `broker` says whether real-time delivery works (it can be down
    while messages are still stored and served)."""
    if not await ping():
        raise APIError(503, "unavailable", "The database does not answer.", {"Retry-After": "1"})
    return {"status": "ok", "broker": "ok" if state().broker.healthy() else "unavailable"}
