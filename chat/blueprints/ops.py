"""Operations: health and metrics."""

from __future__ import annotations

from quart import Blueprint, Response

from ..db import ping
from ..errors import APIError
from ..metrics import CONTENT_TYPE, PrometheusMetrics
from ..openapi import documented
from ..schemas import HealthOut, MetricsText
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


@bp.get("/metrics")
@documented((MetricsText, 200), errors=(404,))
async def metrics() -> Response:
    """Prometheus metrics, every worker's values added up.

    404 unless CHAT_METRICS=true (the monitoring system may have an address of its own, CHAT_METRICS_BIND)."""
    app_state = state()
    if not app_state.settings.metrics or not isinstance(app_state.metrics, PrometheusMetrics):
        raise APIError(404, "not_found", "Metrics are not served here.")
    app_state.metrics.probed(await ping(), app_state.broker.healthy())  # this worker's health as of now
    return Response(app_state.metrics.render(), content_type=CONTENT_TYPE)
