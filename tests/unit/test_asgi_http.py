"""chat.asgi_http's connection: a request whose body hypercorn has queued is handled in hypercorn's app task, and
the client leaving cancels it as Quart's receiver would; its headers read as Quart's own (uploads:
tests/unit/blueprints/test_files.py and tests/system/test_files.py; the whole server: the system tests)."""

from __future__ import annotations

import asyncio

import orjson
import pytest
from quart import Quart, request
from quart.asgi import ASGIHTTPConnection
from werkzeug.datastructures import Headers

from chat.asgi_http import BoundedHTTPConnection, RequestHeaders
from testkit.asgi import body_events, http_scope, queued


class Probe:
    """What the test app's handlers saw."""

    def __init__(self) -> None:
        self.tasks: list[asyncio.Task] = []
        self.waiting = asyncio.Event()
        self.cancelled = False


@pytest.fixture
def probe() -> Probe:
    return Probe()


@pytest.fixture
def echo_app(probe: Probe) -> Quart:
    app = Quart(__name__)
    app.asgi_http_class = BoundedHTTPConnection

    @app.post("/echo")
    async def echo() -> dict:
        probe.tasks.append(asyncio.current_task())
        return {"echo": (await request.get_json())["text"]}

    @app.get("/wait")
    async def wait() -> dict:
        probe.waiting.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            probe.cancelled = True
            raise
        return {}

    return app


BODY = b'{"text": "hello"}'
WHOLE_BODY = body_events(BODY)


class Answer:
    def __init__(self) -> None:
        self.events: list[dict] = []

    async def __call__(self, event: dict) -> None:
        self.events.append(event)

    @property
    def status(self) -> int | None:
        return next((event["status"] for event in self.events if event["type"] == "http.response.start"), None)

    @property
    def body(self) -> bytes:
        return b"".join(event.get("body", b"") for event in self.events if event["type"] == "http.response.body")


async def test_a_request_whose_body_is_queued_is_handled_in_the_servers_task(echo_app, probe):
    answer, events = Answer(), queued(*WHOLE_BODY)
    tasks_before = asyncio.all_tasks()

    async def served() -> None:
        await echo_app(http_scope("POST", "/echo", body=BODY), events.get, answer)
        assert asyncio.all_tasks() - tasks_before == {asyncio.current_task()}  # nothing left behind

    server_task = asyncio.ensure_future(served())
    await server_task

    assert answer.status == 200 and orjson.loads(answer.body) == {"echo": "hello"}
    assert probe.tasks == [server_task]  # no task of Quart's in between
    assert events.empty() and events.listener is None


async def test_a_body_still_arriving_is_awaited_as_quart_does(echo_app, probe):
    answer, events = Answer(), queued(WHOLE_BODY[0])
    server_task = asyncio.ensure_future(echo_app(http_scope("POST", "/echo", body=BODY), events.get, answer))
    await asyncio.sleep(0.01)
    assert answer.events == []  # the handler waits for the rest of the body
    await events.put(WHOLE_BODY[1])
    await asyncio.wait_for(server_task, 5)

    assert answer.status == 200 and orjson.loads(answer.body) == {"echo": "hello"}
    assert probe.tasks and probe.tasks[0] is not server_task  # Quart's handler task


async def test_the_client_leaving_cancels_the_handling_and_nothing_is_answered(echo_app, probe):
    answer, events = Answer(), queued(WHOLE_BODY[1])
    server_task = asyncio.ensure_future(echo_app(http_scope("GET", "/wait"), events.get, answer))
    await asyncio.wait_for(probe.waiting.wait(), 5)

    await events.put({"type": "http.disconnect"})  # as hypercorn does when the connection closes
    await asyncio.wait_for(server_task, 5)  # returns: the client's leaving is no error

    assert probe.cancelled and answer.events == []
    assert not server_task.cancelled() and server_task.cancelling() == 0
    assert events.listener is None


async def test_a_client_gone_before_its_request_was_handled_gets_nothing(echo_app, probe):
    for waiting in ((WHOLE_BODY[0], {"type": "http.disconnect"}), (*WHOLE_BODY, {"type": "http.disconnect"})):
        answer = Answer()
        await echo_app(http_scope("POST", "/echo", body=BODY), queued(*waiting).get, answer)
        assert answer.events == [] and probe.tasks == []


async def test_the_servers_own_cancellation_is_not_swallowed(echo_app, probe):
    answer, events = Answer(), queued(WHOLE_BODY[1])
    server_task = asyncio.ensure_future(echo_app(http_scope("GET", "/wait"), events.get, answer))
    await asyncio.wait_for(probe.waiting.wait(), 5)

    server_task.cancel()  # hypercorn stopping
    await events.put({"type": "http.disconnect"})  # and the client leaving, at the same moment
    with pytest.raises(asyncio.CancelledError):
        await server_task
    assert probe.cancelled and answer.events == []


async def test_an_answer_the_client_does_not_take_is_given_up_after_the_response_timeout(echo_app, probe):
    echo_app.config["RESPONSE_TIMEOUT"] = 0.05
    sent: list[dict] = []

    async def stuck(event: dict) -> None:  # a client that never reads: hypercorn's send waits for the socket
        sent.append(event)
        await asyncio.Event().wait()

    await asyncio.wait_for(echo_app(http_scope("POST", "/echo", body=BODY), queued(*WHOLE_BODY).get, stuck), 5)
    assert [event["type"] for event in sent] == ["http.response.start"]


def _quarts_headers(scope: dict) -> Headers:
    """The headers as Quart's own connection makes them (quart/asgi.py)."""
    return ASGIHTTPConnection(Quart(__name__), scope)._create_request_from_scope(Answer()).headers


SCOPE_HEADERS = [
    (b"host", b"chat.test"),
    (b"x-forwarded-for", b"10.0.0.1"),
    (b"X-Forwarded-For", b"10.0.0.2"),
    (b"cookie", b"chat_session=abc; theme=dark"),
    (b"content-length", b"17"),
]


def test_a_requests_headers_read_as_quarts_do_and_cannot_change():
    scope = http_scope("POST", "/echo", headers=SCOPE_HEADERS)
    headers = BoundedHTTPConnection(Quart(__name__), scope)._create_request_from_scope(Answer()).headers
    quarts = _quarts_headers(scope)

    assert isinstance(headers, RequestHeaders) and list(headers) == list(quarts)
    for name in ("Host", "x-forwarded-for", "COOKIE", "Remote-Addr", "Origin"):
        assert headers.get(name) == quarts.get(name) and (name in headers) == (name in quarts)
        assert headers.getlist(name) == quarts.getlist(name)
    assert headers["X-Forwarded-For"] == "10.0.0.1"  # the first of two, as werkzeug's
    assert headers.get("Content-Length", type=int) == 17 and headers.get("Host", type=int) is None
    assert headers.get("Origin", "none") == "none"
    with pytest.raises(KeyError):
        headers["Origin"]
    for change in (lambda: headers.add("Origin", "x"), lambda: headers.set("Host", "x"), headers.clear):
        with pytest.raises(TypeError):
            change()
    copy = headers.copy()
    copy.add("Origin", "http://chat.test")
    assert copy["Origin"] == "http://chat.test" and "Origin" not in headers


def test_an_http_1_0_request_without_a_host_gets_the_servers_name_as_quart_gives_it():
    app = Quart(__name__)
    app.config["SERVER_NAME"] = "chat.test"
    scope = {**http_scope("GET", "/echo", headers=[(b"accept", b"*/*")]), "http_version": "1.0"}
    assert BoundedHTTPConnection(app, scope)._create_request_from_scope(Answer()).headers["Host"] == "chat.test"
    scope["headers"] = [(b"host", b"other.test")]
    assert BoundedHTTPConnection(app, scope)._create_request_from_scope(Answer()).headers.getlist("Host") == [
        "other.test"
    ]
