"""CHAT_ALLOWED_HOSTS on a real hypercorn process: a request or a websocket handshake for a host not listed gets
400 invalid_host."""

from __future__ import annotations

import json
import socket

import httpx

from testkit.servers import Server


def handshake(server: Server, host: str) -> tuple[int, dict]:
    """A websocket handshake with the given Host header, over a raw socket: the status and JSON body it gets."""
    request = (
        f"GET /ws/rooms/dm-1-2 HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(request.encode())
        answer = b""
        while b"\r\n\r\n" not in answer or len(answer.split(b"\r\n\r\n", 1)[1]) < content_length(answer):
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


def content_length(answer: bytes) -> int:
    for line in answer.split(b"\r\n\r\n", 1)[0].split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 1 << 30  # not known yet: read on


def test_a_real_server_refuses_unlisted_hosts(tmp_path):
    server = Server(workdir=tmp_path, env={"CHAT_ALLOWED_HOSTS": "127.0.0.1,chat.test:8443"}).start()
    try:
        with httpx.Client(base_url=server.base_url, timeout=10) as client:
            assert client.get("/healthz").status_code == 200  # Host: 127.0.0.1:<port>
            assert client.get("/healthz", headers={"Host": "chat.test:8443"}).status_code == 200
            for host in ("evil.example", "chat.test", "localhost:" + str(server.port)):
                refused = client.get("/login-page", headers={"Host": host})
                assert refused.status_code == 400, host
                assert refused.json()["error"] == "invalid_host"
        assert handshake(server, "evil.example")[0] == 400
        assert handshake(server, "evil.example")[1]["error"] == "invalid_host"
        # a listed host goes on to the next check: no session, so 401 (still before the upgrade)
        assert handshake(server, f"127.0.0.1:{server.port}")[0] == 401
    finally:
        server.stop()
    assert "Traceback" not in server.log(), server.log()
