"""GET /metrics (and CHAT_METRICS_BIND) against real hypercorn processes: counters move by exactly the requests
made, with two workers the totals add up across processes, open websockets and stored messages are counted."""

from __future__ import annotations

import asyncio
import re

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from testkit.backends import BACKEND
from testkit.http import PASSWORD
from testkit.probes import wait_until
from testkit.servers import ROOT, Server, free_port
from testkit.ws import message_frame, new_person, recv_until

WORKERS = 2 if BACKEND == "postgres" else 1


def scrape(url: str) -> dict[tuple[str, tuple], float]:
    """Every sample of a scrape: (name, sorted labels) -> value."""
    response = httpx.get(url, timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def requests_of(samples: dict, route: str, method: str, status: str) -> float:
    key = ("chat_http_requests_total", (("method", method), ("route", route), ("status", status)))
    return samples.get(key, 0.0)


def value(samples: dict, name: str) -> float:
    return samples.get((name, ()), 0.0)


@pytest.fixture
def two_workers(tmp_path):
    server = Server(workdir=tmp_path, workers=2, env={"CHAT_METRICS": "true"}).start()
    yield server
    server.stop()
    assert "Traceback" not in server.log(), server.log()


def test_counters_move_by_exactly_the_requests_made_across_two_workers(two_workers, tmp_path):
    server = two_workers
    metrics_url = server.base_url + "/metrics"
    alice, bob = new_person(server), new_person(server)
    before = scrape(metrics_url)

    sends = 30
    for number in range(sends):
        # a new connection each time, so that both workers take some
        with httpx.Client(base_url=server.base_url, cookies=alice.http.cookies, timeout=10) as client:
            sent = client.post("/send-message", json={"receiver_id": bob.id, "content": f"m{number}"})
            assert sent.status_code == 201
    for _ in range(7):
        assert httpx.get(server.base_url + f"/get-messages?user_id={alice.id}&limit=3").status_code == 401
    assert httpx.get(server.base_url + "/no/such/page").status_code == 404

    after = scrape(metrics_url)
    moved = requests_of(after, "/send-message", "POST", "201") - requests_of(before, "/send-message", "POST", "201")
    assert moved == sends
    # by the URL rule, not the raw path with its query
    assert requests_of(after, "/get-messages", "GET", "401") - requests_of(before, "/get-messages", "GET", "401") == 7
    assert requests_of(after, "unmatched", "GET", "404") - requests_of(before, "unmatched", "GET", "404") == 1
    assert value(after, "chat_messages_stored_total") - value(before, "chat_messages_stored_total") == sends
    latency = ("chat_http_request_duration_seconds_count", (("method", "POST"), ("route", "/send-message")))
    assert after[latency] - before.get(latency, 0) == sends
    assert value(after, "chat_database_up") == 1 and value(after, "chat_broker_up") == 1
    # each worker writes files of its own; a scrape adds them up
    pids = {path.stem.rsplit("_", 1)[-1] for path in (tmp_path / "instance" / "metrics").glob("counter_*.db")}
    assert len(pids) == 2, pids


async def test_open_websockets_are_counted_and_uncounted(tmp_path):
    server = Server(workdir=tmp_path, env={"CHAT_METRICS": "true"}).start()
    try:
        metrics_url = server.base_url + "/metrics"
        alice, bob = new_person(server), new_person(server)
        assert value(scrape(metrics_url), "chat_websockets_open") == 0
        async with alice.connect(alice.room_with(bob)) as first, bob.connect(alice.room_with(bob)) as second:
            await recv_until(first, lambda frame: frame["type"] == "presence")
            await recv_until(second, lambda frame: frame["type"] == "presence")
            assert value(scrape(metrics_url), "chat_websockets_open") == 2
        wait_until(lambda: value(scrape(metrics_url), "chat_websockets_open") == 0, timeout=10)
    finally:
        server.stop()
    assert "Traceback" not in server.log(), server.log()


def test_metrics_are_off_by_default(server):
    response = httpx.get(server.base_url + "/metrics")
    assert response.status_code == 404 and response.json()["error"] == "not_found"
    assert not (server.workdir / "instance" / "metrics").exists()


def test_metrics_on_an_address_of_their_own(tmp_path):
    port = free_port()
    server = Server(workdir=tmp_path, workers=2, env={"CHAT_METRICS_BIND": f"127.0.0.1:{port}"}).start()
    try:
        assert httpx.get(server.base_url + "/metrics").status_code == 404  # not on the public address
        assert httpx.get(server.base_url + "/healthz").status_code == 200
        samples = {}

        def healthz_counted() -> bool:
            samples.update(scrape(f"http://127.0.0.1:{port}/metrics"))
            return requests_of(samples, "/healthz", "GET", "200") >= 1

        wait_until(healthz_counted, timeout=10)
    finally:
        server.stop()
    assert "Traceback" not in server.log(), server.log()


def test_a_wrong_metrics_address_names_the_variable(tmp_path):
    server = Server(workdir=tmp_path, env={"CHAT_METRICS_BIND": "nowhere"})
    with pytest.raises(RuntimeError, match="CHAT_METRICS_BIND"):
        server.start()


def histogram_count(samples: dict, name: str) -> float:
    return samples.get((f"{name}_count", ()), 0.0)


async def test_fan_out_latency_is_measured_from_the_commit_to_each_socket(tmp_path):
    """Each message stored is one publication; each socket that gets it live is one delivery (on whichever worker
    holds it: two workers over Redis in that configuration), and the times are plausible."""
    server = Server(workdir=tmp_path, workers=WORKERS, env={"CHAT_METRICS": "true"}).start()
    try:
        metrics_url = server.base_url + "/metrics"
        alice, bob = new_person(server), new_person(server)
        room = alice.room_with(bob)
        sends = 12
        async with alice.connect(room) as first, bob.connect(room) as second, bob.connect(room) as third:
            for ws in (first, second, third):
                await recv_until(ws, lambda frame: frame["type"] == "presence")
            before = scrape(metrics_url)
            for number in range(sends):
                sent = alice.http.post("/send-message", json={"receiver_id": bob.id, "content": f"fan {number}"})
                assert sent.status_code == 201
            for ws in (first, second, third):
                await recv_until(ws, message_frame(f"fan {sends - 1}"))
            after = scrape(metrics_url)
        published = histogram_count(after, "chat_fanout_publish_seconds")
        delivered = histogram_count(after, "chat_fanout_delivery_seconds")
        assert published - histogram_count(before, "chat_fanout_publish_seconds") == sends
        assert delivered - histogram_count(before, "chat_fanout_delivery_seconds") == 3 * sends
        took = after[("chat_fanout_delivery_seconds_sum", ())] - before.get(("chat_fanout_delivery_seconds_sum", ()), 0)
        assert 0 <= took / (3 * sends) < 5  # seconds on average: measured, and not from some other clock
        inf = ("chat_fanout_delivery_seconds_bucket", (("le", "+Inf"),))
        assert after[inf] == delivered
    finally:
        server.stop()
    assert "Traceback" not in server.log(), server.log()


def hash_gate(samples: dict, name: str, lane: str) -> float:
    return samples.get((name, (("lane", lane),)), 0.0)


async def test_the_hashing_gates_queue_and_its_refusals(tmp_path):
    """One hashing thread, one waiting place, real bcrypt cost: concurrent sign-ins queue (seen in a scrape
    while they run), the ones past the queue get 503 and are counted, and the gauges return to 0."""
    env = {"CHAT_METRICS": "true", "CHAT_HASH_CONCURRENCY": "1", "CHAT_HASH_QUEUE": "2", "CHAT_BCRYPT_ROUNDS": "12"}
    env["CHAT_LOGIN_ACCOUNT_FAILURES"] = "100"  # eight at once reserve eight places of the name's budget (attempts.py)
    server = Server(workdir=tmp_path, env=env).start()
    try:
        metrics_url = server.base_url + "/metrics"
        person = new_person(server)
        idle = scrape(metrics_url)
        for lane in ("sign-in", "sign-up"):
            assert hash_gate(idle, "chat_hash_waiting", lane) == 0 and hash_gate(idle, "chat_hash_running", lane) == 0
        body = {"username": person.user["username"], "password": PASSWORD}
        seen_waiting = []

        async def watch() -> None:
            while True:
                samples = await asyncio.to_thread(scrape, metrics_url)
                seen_waiting.append(hash_gate(samples, "chat_hash_waiting", "sign-in"))
                await asyncio.sleep(0.02)

        watcher = asyncio.create_task(watch())
        async with httpx.AsyncClient(base_url=server.base_url, timeout=60) as client:
            answers = await asyncio.gather(*(client.post("/login", json=body) for _ in range(8)))
        watcher.cancel()
        statuses = sorted(answer.status_code for answer in answers)
        refused = statuses.count(503)
        assert set(statuses) == {200, 503} and refused >= 1, statuses
        assert max(seen_waiting) >= 1, seen_waiting
        after = scrape(metrics_url)
        assert (
            hash_gate(after, "chat_hash_refused_total", "sign-in")
            - hash_gate(idle, "chat_hash_refused_total", "sign-in")
            == refused
        )
        assert hash_gate(after, "chat_hash_waiting", "sign-in") == 0
        assert hash_gate(after, "chat_hash_running", "sign-in") == 0
        # every series the sample dashboard draws exists (after a refusal, the one labelled series that needs one)
        dashboard = (ROOT / "docs" / "grafana-dashboard.json").read_text(encoding="utf-8")
        assert set(re.findall(r"chat_[a-z_]+", dashboard)) - {name for name, _ in after} == set()
    finally:
        server.stop()
    assert "Traceback" not in server.log(), server.log()
