"""What chat.asgi_websocket keeps of a websocket once it is accepted (its bounds and ends: test_hostile_websocket.py
and tests/unit/blueprints/test_realtime.py)."""

from __future__ import annotations

from werkzeug.datastructures import Headers

from chat.asgi_websocket import MAX_FRAME_BYTES, OVERSIZED, BoundedWebsocketConnection, client_gone, take_frame
from chat.mailbox import Mailbox

HANDSHAKE_HEADERS = [
    (b"host", b"chat.test"),
    (b"origin", b"http://chat.test"),
    (b"cookie", b"QUART_AUTH=token; theme=dark"),
    (b"user-agent", b"Mozilla/5.0 (X11; Linux x86_64) Chrome/131.0"),
]


def websocket_scope() -> dict:
    return {
        "type": "websocket",
        "asgi": {"spec_version": "2.3", "version": "3.0"},
        "scheme": "ws",
        "http_version": "1.1",
        "path": "/ws/activity",
        "raw_path": b"/ws/activity",
        "query_string": b"",
        "root_path": "",
        "headers": list(HANDSHAKE_HEADERS),
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "subprotocols": [],
        "extensions": {"websocket.http.response": {}},
    }


def connected(app, scope: dict) -> BoundedWebsocketConnection:
    connection = BoundedWebsocketConnection(app, scope)
    connection.queue = Mailbox(10)  # the socket's events, as __call__ sets them
    return connection


async def test_an_accepted_socket_lets_go_of_its_handshake_headers(app):
    scope, sent = websocket_scope(), []

    async def send(message: dict) -> None:
        sent.append(message)

    connection = connected(app, scope)
    websocket = connection._create_websocket_from_scope(send)
    # what the handshake's checks read, before the accept
    assert websocket.headers["Origin"] == "http://chat.test" and websocket.host == "chat.test"
    assert websocket.cookies["QUART_AUTH"] == "token"

    await connection.accept_connection(send, Headers(), None)

    assert [message["type"] for message in sent] == ["websocket.accept"]
    assert scope["headers"] == [] and websocket.scope is scope
    assert list(websocket.headers.items()) == [] and websocket.headers.get("Origin") is None
    assert dict(websocket.cookies) == {}
    assert websocket.host == "chat.test"  # read before the accept, as werkzeug keeps it


async def test_a_refused_handshake_keeps_its_headers_for_the_answer(app):
    scope = websocket_scope()
    websocket = connected(app, scope)._create_websocket_from_scope(None)
    assert scope["headers"] == HANDSHAKE_HEADERS and websocket.headers["User-Agent"].startswith("Mozilla")


def test_the_handler_takes_the_clients_frames_in_turn_and_then_its_going():
    inbox = Mailbox(10)
    inbox.put_nowait({"type": "websocket.connect"})
    inbox.put_nowait({"type": "websocket.receive", "text": "hello", "bytes": None})
    assert not client_gone(inbox)
    inbox.put_nowait({"type": "websocket.receive", "text": None, "bytes": b""})
    inbox.put_nowait({"type": "websocket.receive", "text": "x" * (MAX_FRAME_BYTES + 1), "bytes": None})
    inbox.put_nowait({"type": "websocket.disconnect", "code": 1001})
    assert client_gone(inbox)  # waiting behind the frames: a replay stops, the frames are still taken in turn
    taken = [take_frame(inbox) for _ in range(5)]
    assert taken == [None, "hello", b"", OVERSIZED, None]  # an empty binary frame is binary, not the text ""
    assert inbox.closed and client_gone(inbox) and inbox.empty()
