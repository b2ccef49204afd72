"""Logs a client cannot forge (issue 11): control characters in anything logged are escaped, in hypercorn's access
and error logs and in the application's own, however the server is started."""

from __future__ import annotations

import importlib
import io
import json
import logging
import pkgutil
import re
import socket
import sys
import tomllib

import pytest

import chat
from chat import create_app
from chat.logs import LOGGER_FAMILIES, JsonFormatter, escape_client_text_in_logs, escape_control_characters
from testkit.probes import app_tracebacks, wait_until
from testkit.servers import ROOT, Server

FORGED = '[2026-12-03 10:00:00 +0000] [1] [INFO] 10.0.0.1:1 - - [03/Dec/2026:10:00:00 +0000] "POST /login 1.1" 200'
# the same, percent-encoded into a request target, after a newline; a line separator and a NEL (C1) follow
FORGED_TARGET = (
    "/healthz%0A"
    + FORGED.replace("%", "%25").replace(" ", "%20").replace('"', "%22").replace("[", "%5B").replace("]", "%5D")
    + "%E2%80%A8%C2%85%0D"
)


@pytest.mark.parametrize(
    ("raw", "escaped"),
    [
        ("plain text, ünïcödé and emoji 🙂", "plain text, ünïcödé and emoji 🙂"),
        ("a\nb\rc\td", "a\\nb\\rc\\td"),
        ("nul\x00 esc\x1b del\x7f", "nul\\x00 esc\\x1b del\\x7f"),
        ("nel\x85 csi\x9b", "nel\\x85 csi\\x9b"),
        ("line\u2028paragraph\u2029", "line\\u2028paragraph\\u2029"),
        ("a literal \\n stays told apart", "a literal \\\\n stays told apart"),
    ],
)
def test_control_characters_are_escaped(raw, escaped):
    assert escape_control_characters(raw) == escaped


def capture(logger_name: str) -> tuple[logging.Logger, io.StringIO, logging.Handler]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger = logging.getLogger(logger_name)
    logger.addHandler(handler)
    return logger, stream, handler


def test_every_logger_of_the_application_escapes_after_create_app(tmp_path):
    for module in pkgutil.walk_packages(chat.__path__, "chat."):
        importlib.import_module(module.name)
    create_app(instance_path=tmp_path / "instance")
    unfiltered = [
        name
        for name, logger in logging.root.manager.loggerDict.items()
        if name.split(".")[0] in LOGGER_FAMILIES
        and isinstance(logger, logging.Logger)
        and not any(type(f).__name__ == "EscapeControlCharacters" for f in logger.filters)
    ]
    assert unfiltered == []


@pytest.mark.parametrize("logger_name", ["chat", "chat.errors", "hypercorn.error"])
def test_an_app_log_line_stays_one_line_and_its_traceback_stays_whole(tmp_path, logger_name):
    create_app(instance_path=tmp_path / "instance")
    logger, stream, handler = capture(logger_name)
    try:
        try:
            raise ValueError("the server's own\nmulti-line error")
        except ValueError:
            # what Quart's log_exception writes: the request path inside the message itself
            logger.error(f"Exception on request GET /x\n{FORGED}", exc_info=True)
        logger.warning("user %s sent %r", "eve\n" + FORGED, "\u2028")
        escape_client_text_in_logs()  # twice: still escaped once
        logger.warning("%s", "again\n")
    finally:
        logger.removeHandler(handler)
    text = stream.getvalue()
    assert f"Exception on request GET /x\\n{FORGED}\n" in text
    assert "Traceback (most recent call last):" in text and "ValueError: the server's own\nmulti-line error" in text
    assert f"user eve\\n{FORGED} sent '\\\\u2028'\n" in text
    assert "again\\n\n" in text
    assert not any(line.startswith(FORGED[:20]) for line in text.splitlines())


def access_log_config(tmp_path):
    """hypercorn.toml's logging keys, as `hypercorn --config hypercorn.toml` applies them (no TLS: the test's bind)."""
    with open(ROOT / "hypercorn.toml", "rb") as handle:
        production = tomllib.load(handle)
    keys = ("accesslog", "errorlog", "loglevel", "access_log_format")
    path = tmp_path / "hypercorn-logs.toml"
    path.write_text("".join(f"{key} = {json.dumps(production[key])}\n" for key in keys))  # a JSON string is TOML
    return path


def send_raw(server: Server, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(request)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


@pytest.mark.parametrize("started", ["make-run", "config-file", "two-workers"])
def test_a_forged_access_log_line_stays_inside_its_own_line(tmp_path, started):
    """The reproduction of issue 11: the path is logged percent-decoded; its newline must not start a line."""
    args = {"make-run": ["--access-logfile", "-"], "two-workers": ["--access-logfile", "-"]}.get(started)
    if args is None:
        args = ["--config", str(access_log_config(tmp_path))]
    server = Server(workdir=tmp_path, extra_args=args, workers=2 if started == "two-workers" else 1)
    server.start()
    try:
        answer = send_raw(
            server,
            f"GET {FORGED_TARGET} HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: ua\x7f\x1b[2J\r\n"
            "Connection: close\r\n\r\n".encode("latin-1"),
        )
        assert answer.startswith(b"HTTP/1.1 404"), answer[:200]
        wait_until(lambda: '"GET /healthz\\n' in server.log(), timeout=10, what=server.log)
    finally:
        server.stop()
    log = server.log()
    assert not [line for line in log.splitlines() if line.startswith(FORGED[:20])], log
    assert f'"GET /healthz\\n{FORGED}\\u2028\\x85\\r' in log, log
    assert "\u2028" not in log and "\x85" not in log and "\r" not in log and "\x1b" not in log
    assert '"ua\\x7f\\x1b[2J"' in log, log
    assert app_tracebacks(log) == [] and "Traceback" not in log, log


# ---------------------------------------------------------------- CHAT_LOG_FORMAT=json and request ids

SECRET_PASSWORD = "correct horse battery staple 7f3a"
SECRET_CONTENT = "the launch code is 0451-zebra"


def json_log_lines(log: str) -> list[dict]:
    """Every line of the log as a JSON object (a line that is not one fails the test)."""
    entries = []
    for line in log.splitlines():
        try:
            entries.append(json.loads(line))
        except json.JSONDecodeError:
            raise AssertionError(f"not a JSON line: {line!r}\n{log}") from None
    return entries


@pytest.mark.parametrize("workers", [1, 2])
async def test_json_logs_one_object_a_line_with_request_ids_and_no_secrets(tmp_path, workers):
    """A real server with CHAT_LOG_FORMAT=json (and hypercorn's access log on, as `make run` has it): sign-up,
    sign-in, a message, a websocket, bad input and a forged request id; every line parses, each request is one
    access line with its id, route, status, duration and user, and no password, cookie or message text is logged."""
    import httpx

    from testkit.ws import COOKIE, message_frame, recv_until, ws_connect

    server = Server(
        workdir=tmp_path, workers=workers, extra_args=["--access-logfile", "-"], env={"CHAT_LOG_FORMAT": "json"}
    )
    server.start()
    try:
        with httpx.Client(base_url=server.base_url) as client:
            body = {"username": "logan", "email": "logan@example.com", "password": SECRET_PASSWORD}
            assert client.post("/register", json=body).status_code == 201
            signed_in = client.post("/login", json={"username": "logan", "password": SECRET_PASSWORD})
            me = signed_in.json()
            cookie = client.cookies[COOKIE]
            chosen = client.get("/me", headers={"X-Request-Id": "proxy-7f3a:42"})
            assert chosen.headers["X-Request-Id"] == "proxy-7f3a:42"  # a well-formed incoming id is kept
            forged = client.get("/me", headers={"X-Request-Id": "bad id <script>"})
            assert WELL_FORMED.fullmatch(forged.headers["X-Request-Id"])  # replaced by one of ours
            overlong = client.get("/me", headers={"X-Request-Id": "x" * 200})
            assert overlong.headers["X-Request-Id"] != "x" * 200
            wrong = client.post("/login", json={"username": "logan", "password": SECRET_PASSWORD + "-wrong"})
            assert wrong.status_code == 401 and "X-Request-Id" in wrong.headers
            bad = client.post("/register", json={"username": "x", "email": "no", "password": SECRET_PASSWORD[:5]})
            assert bad.status_code == 400
            assert client.get("/no/such/page").status_code == 404
            room = f"dm-{me['id']}-{me['id']}"
            async with ws_connect(server, cookie, room) as ws:
                sent = client.post("/send-message", json={"receiver_id": me["id"], "content": SECRET_CONTENT})
                assert sent.status_code == 201
                # a frame sent on the socket comes back on it whichever worker holds it (with the memory broker, an
                # HTTP send on the other worker would not reach it)
                await ws.send(json.dumps({"type": "message", "content": SECRET_CONTENT + " again"}))
                await recv_until(ws, message_frame(SECRET_CONTENT + " again"))
            ids = {sent.headers["X-Request-Id"], signed_in.headers["X-Request-Id"], chosen.headers["X-Request-Id"]}
            assert len(ids) == 3
        wait_until(lambda: '"/ws/rooms/<name>"' in server.log(), timeout=10, what=server.log)
    finally:
        server.stop()
    log = server.log()
    for secret in (SECRET_PASSWORD, SECRET_PASSWORD[:5], SECRET_CONTENT, cookie, "launch code", "bad id"):
        assert secret not in log, secret
    entries = json_log_lines(log)
    requests = [entry for entry in entries if entry["logger"] == "chat.access"]
    by_id = {entry["request_id"]: entry for entry in requests}
    assert set(requests[0]) == {
        "time", "level", "logger", "pid", "request_id", "message", "method", "route", "status", "duration_ms",
        "user_id",
    }  # fmt: skip
    assert by_id["proxy-7f3a:42"] | {"duration_ms": 0, "time": 0, "pid": 0} == {
        "time": 0, "level": "INFO", "logger": "chat.access", "pid": 0, "request_id": "proxy-7f3a:42",
        "message": "request", "method": "GET", "route": "/me", "status": 200, "duration_ms": 0, "user_id": me["id"],
    }  # fmt: skip
    assert by_id[signed_in.headers["X-Request-Id"]]["route"] == "/login"
    assert by_id[sent.headers["X-Request-Id"]]["route"] == "/send-message"
    assert by_id[sent.headers["X-Request-Id"]]["user_id"] == me["id"]
    assert (
        by_id[wrong.headers["X-Request-Id"]]["user_id"] is None
        and by_id[wrong.headers["X-Request-Id"]]["status"] == 401
    )
    assert by_id[bad.headers["X-Request-Id"]]["status"] == 400
    assert ("unmatched", 404) in {(entry["route"], entry["status"]) for entry in requests}
    assert all(entry["duration_ms"] >= 0 for entry in requests)
    sockets = [entry for entry in requests if entry["route"] == "/ws/rooms/<name>"]
    assert [(s["method"], s["status"], s["user_id"]) for s in sockets] == [("WEBSOCKET", 101, me["id"])]
    # one line per request and socket (besides the start's readiness polls): hypercorn's own lines are left out
    assert len([entry for entry in requests if entry["route"] != "/healthz"]) == 10
    assert not [entry for entry in entries if entry["logger"] == "hypercorn.access"]
    assert any("Running on" in entry.get("message", "") for entry in entries)  # hypercorn's error log, as JSON
    assert app_tracebacks(log) == [] and "Traceback" not in log, log


WELL_FORMED = re.compile(r"[0-9a-f]{32}")


async def test_every_answer_carries_a_request_id_guards_answers_too(client):
    """In process, in the default (text) format: the header is there whatever answered."""
    plain = await client.get("/healthz")
    assert WELL_FORMED.fullmatch(plain.headers["X-Request-Id"])
    kept = await client.get("/healthz", headers={"X-Request-Id": "b6f1e2c4-0a1d-4c1b-9f5e-3d2a1c0b9e8f"})
    assert kept.headers["X-Request-Id"] == "b6f1e2c4-0a1d-4c1b-9f5e-3d2a1c0b9e8f"
    refused = await client.post("/login", json={}, headers={"Origin": "https://evil.example"})
    assert refused.status_code == 403 and WELL_FORMED.fullmatch(refused.headers["X-Request-Id"])
    assert plain.headers["X-Request-Id"] != refused.headers["X-Request-Id"]


def test_a_json_record_is_one_line_with_its_traceback_inside():
    formatter = JsonFormatter()
    try:
        raise ValueError("two\nlines")
    except ValueError:
        problem = sys.exc_info()
        record = logging.LogRecord("chat.x", logging.ERROR, __file__, 1, "user %s\u2028said", ("eve\n",), problem)
    line = formatter.format(record)
    assert len(line.splitlines()) == 1
    entry = json.loads(line)
    assert entry["message"] == "user eve\n\u2028said" and entry["level"] == "ERROR" and entry["logger"] == "chat.x"
    assert entry["exception"].startswith("Traceback") and "ValueError: two\nlines" in entry["exception"]
    assert "request_id" not in entry  # outside a request
