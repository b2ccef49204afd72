"""An HTTP request as hypercorn hands it to the app: its scope, and its events queued in the Mailbox that
lean_hypercorn makes the app's receive (tests/unit/test_asgi_http.py, bench/asgi_profile.py)."""

from __future__ import annotations

from chat.mailbox import Mailbox

MAX_APP_QUEUE_SIZE = 10  # hypercorn's default


def http_scope(method: str, path: str, query: bytes = b"", headers: list | None = None, body: bytes = b"") -> dict:
    headers = list(headers or [(b"host", b"chat.test")])
    if body:
        headers += [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query,
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 8000),
        "extensions": {},
    }


def body_events(body: bytes) -> list[dict]:
    """A body's events as hypercorn queues them: its bytes (if any), then its end."""
    end = {"type": "http.request", "body": b"", "more_body": False}
    return [{"type": "http.request", "body": body, "more_body": True}, end] if body else [end]


def queued(*events: dict) -> Mailbox:
    """The app's receive as lean_hypercorn makes it, these events waiting in it."""
    mailbox = Mailbox(MAX_APP_QUEUE_SIZE)
    for event in events:
        mailbox.put_nowait(event)
    return mailbox
