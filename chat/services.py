"""Building the services one application owns (state.AppState) from its settings.

Apart from state.py because the services' modules (security's sessions) call state.state(): state.py imports
none of them.
"""

from __future__ import annotations

from .broker import MemoryBroker, RedisBroker
from .config import Settings
from .metrics import Metrics, PrometheusMetrics
from .presence import MemoryPresence, RedisPresence
from .security import HashGate, MemoryThrottle, RedisThrottle, SessionCache
from .sockets import SocketLimits
from .state import AppState

REDIS_WAIT_SECONDS = 5  # a call that finds every connection of the pool busy waits this long, then fails


def build_state(settings: Settings) -> AppState:
    """memory:// keeps everything in this process; redis:// shares events, presence and throttling."""
    app_state = _build_state(settings)
    metrics = PrometheusMetrics(settings.resolved_metrics_dir) if settings.metrics_enabled else Metrics()
    app_state.metrics = metrics
    app_state.sockets.on_change = metrics.sockets_changed
    app_state.hash_gate.report_to(metrics.hash_gate_changed, metrics.hash_refused)
    return app_state


def _build_state(settings: Settings) -> AppState:
    hash_gate = HashGate(settings.bcrypt_rounds, settings.hash_concurrency, settings.hash_queue)
    sockets = SocketLimits(
        settings.ws_per_session, settings.ws_per_user, settings.ws_frame_rate, settings.ws_frame_burst
    )
    if settings.broker_url.startswith("memory://"):
        return AppState(
            settings, MemoryBroker(), MemoryPresence(), MemoryThrottle(), hash_gate, sockets, SessionCache()
        )
    from redis.asyncio import BlockingConnectionPool, Redis
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff

    # No silent retries inside redis-py: an outage must surface at once so that sockets resume from the database.
    # A pool whose calls wait for a free connection: redis-py's default pool raises "Too many connections" past
    # 100 calls at once, and a publish that failed so would leave the sockets without their event (a burst of
    # sends, each checking its limit in Redis, can take them all).
    pool = BlockingConnectionPool.from_url(
        settings.broker_url,
        max_connections=settings.redis_pool_size,
        timeout=REDIS_WAIT_SECONDS,
        socket_connect_timeout=2,
        socket_timeout=5,
        socket_keepalive=True,
        retry=Retry(NoBackoff(), 0),
    )
    client = Redis.from_pool(pool)  # the client owns the pool: closing it closes the connections
    prefix = settings.redis_prefix
    broker = RedisBroker(client, prefix)
    presence = RedisPresence(client, prefix, settings.presence_ttl_seconds, broker)
    throttle = RedisThrottle(client, prefix)
    return AppState(settings, broker, presence, throttle, hash_gate, sockets, SessionCache(), redis=client)
