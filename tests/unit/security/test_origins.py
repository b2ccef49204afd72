"""Origin checks: which origins may change state or open a websocket."""

from __future__ import annotations

import pytest

from chat.security import (
    origin_allowed,
)


@pytest.mark.parametrize(
    ("origin", "host", "allowed", "expected"),
    [
        (None, "chat.example.org", (), True),  # curl, native clients
        ("https://chat.example.org", "chat.example.org", (), True),
        ("http://chat.example.org", "chat.example.org", (), True),  # behind a TLS-terminating proxy
        ("HTTPS://Chat.Example.org/", "chat.example.org", (), True),
        ("http://127.0.0.1:5000", "127.0.0.1:5000", (), True),
        ("http://127.0.0.1:5001", "127.0.0.1:5000", (), False),
        ("https://evil.example", "chat.example.org", (), False),
        ("https://chat.example.org.evil.example", "chat.example.org", (), False),
        ("null", "chat.example.org", (), False),  # sandboxed frames, file:// pages
        ("file://", "chat.example.org", (), False),
        ("https://app.example.org", "chat.example.org", ("https://app.example.org",), True),
    ],
)
def test_origin_allowed(origin, host, allowed, expected):
    assert origin_allowed(origin, host, allowed) is expected
