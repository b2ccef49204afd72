"""Logs a client cannot forge (issue 11): control characters in anything logged are escaped, in hypercorn's access
and error logs and in the application's own, however the server is started."""

from __future__ import annotations

import importlib
import io
import json
import logging
import pkgutil
import socket
import tomllib

import pytest

import chat
from chat import create_app
from chat.logs import LOGGER_FAMILIES, escape_client_text_in_logs, escape_control_characters
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
