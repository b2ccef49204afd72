"""Prometheus metrics (`GET /metrics`, or a separate address): requests, websockets, messages, health.

Several hypercorn workers share one scrape through prometheus-client's multiprocess mode: each worker writes its
values into memory-mapped files of its own in one folder, and whichever process answers a scrape adds them all up
(docs/operations.md says why this mode rather than a label per worker). Recording is a few memory writes on the
request's path; nothing is computed until a scrape.

With `CHAT_METRICS=false` and no `CHAT_METRICS_BIND` (the default) nothing is recorded: AppState.metrics is a
`Metrics`, whose methods do nothing, and prometheus-client is never imported.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING

from quart import Quart, Response, g, request

from .db import ping
from .instance import private_folder

if TYPE_CHECKING:
    from .broker import Event
    from .state import AppState

log = logging.getLogger(__name__)

PROBE_SECONDS = 5.0  # how often each worker checks its database and broker for the *_up gauges
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# request latency buckets, in seconds: a send takes milliseconds, a login (bcrypt) a few hundred
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# fan-out buckets, in seconds: in one process a message reaches its sockets in well under a millisecond
FANOUT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
_PID_FILE = re.compile(r"_(\d+)\.db$")


class Metrics:
    """The disabled kind: every recording does nothing (no import, no cost)."""

    enabled = False

    def request_done(self, route: str, method: str, status: int, seconds: float) -> None:
        pass

    def sockets_changed(self, delta: int) -> None:
        pass

    def messages_stored(self, count: int) -> None:
        pass

    def message_published(self, seconds: float) -> None:
        pass

    def message_delivered(self, event: Event) -> None:
        pass

    def hash_gate_changed(self, lane: str, waiting: int, running: int) -> None:
        pass

    def hash_refused(self, lane: str) -> None:
        pass

    def probed(self, database_up: bool, broker_up: bool) -> None:
        pass


class PrometheusMetrics(Metrics):
    """Metrics written to prometheus-client's multiprocess files in `folder` (one folder per deployment)."""

    enabled = True

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        _use_multiprocess_files(folder)
        from prometheus_client import Counter, Gauge, Histogram

        # registry=None: in multiprocess mode the values live in the files; a scrape reads them all back
        self._requests = Counter(
            "chat_http_requests",
            "HTTP requests answered, by route (the URL rule), method and status.",
            ("route", "method", "status"),
            registry=None,
        )
        self._latency = Histogram(
            "chat_http_request_duration_seconds",
            "Time from a request's arrival to its answer, by route and method.",
            ("route", "method"),
            buckets=LATENCY_BUCKETS,
            registry=None,
        )
        self._sockets = Gauge(
            "chat_websockets_open",
            "Websockets open now, over every worker.",
            registry=None,
            multiprocess_mode="livesum",
        )
        self._messages = Counter(
            "chat_messages_stored", "Messages stored (new ones, not repeated client_ids).", registry=None
        )
        self._published = Histogram(
            "chat_fanout_publish_seconds",
            "Time from a message's commit to its publication on the broker (its room and its people's streams).",
            buckets=FANOUT_BUCKETS,
            registry=None,
        )
        self._delivered = Histogram(
            "chat_fanout_delivery_seconds",
            "Time from a message's commit to its frame's write to a socket, once for each socket that gets it live.",
            buckets=FANOUT_BUCKETS,
            registry=None,
        )
        self._hash_waiting = Gauge(
            "chat_hash_waiting",
            "Password hashes admitted and waiting for a thread of the hashing gate, by lane.",
            ("lane",),
            registry=None,
            multiprocess_mode="livesum",
        )
        self._hash_running = Gauge(
            "chat_hash_running",
            "Password hashes running now, by lane.",
            ("lane",),
            registry=None,
            multiprocess_mode="livesum",
        )
        self._hash_refused = Counter(
            "chat_hash_refused",
            "Sign-ins and sign-ups answered 503 busy because the hashing gate's lane was full, by lane.",
            ("lane",),
            registry=None,
        )
        # livemin: one worker that cannot reach the database makes the deployment's value 0
        self._database_up = Gauge(
            "chat_database_up",
            "1 while the database answers (every worker).",
            registry=None,
            multiprocess_mode="livemin",
        )
        self._broker_up = Gauge(
            "chat_broker_up",
            "1 while real-time delivery works (every worker).",
            registry=None,
            multiprocess_mode="livemin",
        )
        self._sockets.set(0)  # present (as 0) before the first socket opens

    def request_done(self, route: str, method: str, status: int, seconds: float) -> None:
        self._requests.labels(route, method, str(status)).inc()
        self._latency.labels(route, method).observe(seconds)

    def sockets_changed(self, delta: int) -> None:
        self._sockets.inc(delta)

    def messages_stored(self, count: int) -> None:
        self._messages.inc(count)

    def message_published(self, seconds: float) -> None:
        self._published.observe(seconds)

    def message_delivered(self, event: Event) -> None:
        if event.stored_at is not None:  # None: published by a worker that predates the field
            self._delivered.observe(max(0.0, time.time() - event.stored_at))

    def hash_gate_changed(self, lane: str, waiting: int, running: int) -> None:
        self._hash_waiting.labels(lane).set(waiting)
        self._hash_running.labels(lane).set(running)

    def hash_refused(self, lane: str) -> None:
        self._hash_refused.labels(lane).inc()

    def probed(self, database_up: bool, broker_up: bool) -> None:
        self._database_up.set(1 if database_up else 0)
        self._broker_up.set(1 if broker_up else 0)

    def render(self) -> bytes:
        """The text a scrape gets: every worker's values added up."""
        from prometheus_client import CollectorRegistry, generate_latest
        from prometheus_client.multiprocess import MultiProcessCollector

        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=str(self.folder))
        return generate_latest(registry)

    def serve_on(self, bind: str) -> Callable[[], None] | None:
        """Serve the scrape on `bind` (host:port) from a thread; the first worker to bind it serves it for all
        (they read the same files). Returns how to stop it, or None when another worker holds the address."""
        from prometheus_client import CollectorRegistry, start_http_server
        from prometheus_client.multiprocess import MultiProcessCollector

        host, _, port = bind.rpartition(":")
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=str(self.folder))
        try:
            server, thread = start_http_server(int(port), host.strip("[]"), registry=registry)
        except OSError as exc:  # EADDRINUSE: a sibling worker serves it
            log.debug("metrics address %s not bound here: %s", bind, exc)
            return None

        def stop() -> None:
            server.shutdown()
            server.server_close()
            thread.join(5)

        return stop

    def close(self) -> None:
        """This process stops: its live gauges (open sockets, *_up) no longer count."""
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(os.getpid(), str(self.folder))


def _use_multiprocess_files(folder: Path) -> None:
    """Point prometheus-client at `folder` and make its values multiprocess ones.

    prometheus-client picks its value class when first imported, from PROMETHEUS_MULTIPROC_DIR; chat decides
    when the application is built, so it sets the variable (read again by each value) and the class itself.
    Files of processes that no longer run are removed first: a restarted deployment starts its counters afresh
    (Prometheus reads a drop as a counter reset), and their gauges stop counting.
    """
    private_folder(folder)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(folder)
    for path in folder.glob("*.db"):
        match = _PID_FILE.search(path.name)
        if match and not _process_alive(int(match.group(1))):
            with contextlib.suppress(FileNotFoundError):  # a sibling worker removed it first
                path.unlink()
    from prometheus_client import values

    if not getattr(values.ValueClass, "_multiprocess", False):
        values.ValueClass = values.MultiProcessValue()


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, someone else's
        return True
    return True


async def probe_forever(metrics: Metrics, database_up: Callable[[], Awaitable[bool]], broker_up: Callable[[], bool]):
    """Refresh this worker's *_up gauges every few seconds until cancelled."""
    while True:
        metrics.probed(await database_up(), broker_up())
        await asyncio.sleep(PROBE_SECONDS)


def install_metrics(app: Quart, app_state: AppState) -> None:
    """Time every HTTP request, probe the database and broker, and serve the scrape on CHAT_METRICS_BIND.

    GET /metrics itself is blueprints/ops.py's (404 unless CHAT_METRICS=true).
    """
    metrics = app_state.metrics
    if not isinstance(metrics, PrometheusMetrics):
        return

    @app.before_request
    async def start_timer() -> None:
        g.metrics_started = time.perf_counter()

    @app.after_request
    async def record_request(response: Response) -> Response:
        started = g.get("metrics_started")
        if started is not None:  # None: a guard answered before the timer started
            rule = request.url_rule
            seconds = time.perf_counter() - started
            metrics.request_done(rule.rule if rule else "unmatched", request.method, response.status_code, seconds)
        return response

    @app.while_serving
    async def probe_and_serve() -> AsyncIterator[None]:
        # while_serving: after the database opens (before_serving), and ended before it closes (after_serving)
        probe = asyncio.create_task(probe_forever(metrics, ping, app_state.broker.healthy), name="metrics-probe")
        bind = app_state.settings.metrics_bind
        stop = metrics.serve_on(bind) if bind else None
        yield
        probe.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await probe
        if stop is not None:
            await asyncio.to_thread(stop)
        metrics.close()
