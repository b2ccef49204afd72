"""GET /metrics (and CHAT_METRICS_BIND) against real hypercorn processes: counters move by exactly the requests
made, with two workers the totals add up across processes, open websockets and stored messages are counted."""

from __future__ import annotations

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from testkit.probes import wait_until
from testkit.servers import Server, free_port
from testkit.ws import new_person, recv_until


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
