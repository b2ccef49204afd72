"""Logs: lines that a client cannot forge, request ids, and the JSON format (CHAT_LOG_FORMAT=json).

Control characters in a logged message are escaped.

hypercorn's access log writes the request path percent-decoded, so `GET /healthz%0A[...] "POST /login 1.1" 200`
put a line of the client's choosing into the log, and the same holds for any message of the application that
carries client input. Every record of the loggers below is rewritten, once, as its formatted message with each
C0 and C1 control character, DEL, U+2028 and U+2029 escaped (and the backslash, so that a client cannot write
an escape that looks like one of ours). A record's traceback (exc_info) is left as it is: it is the server's.

The escaping is a filter on the loggers themselves, not on a handler: it then holds however hypercorn was started
(--access-logfile, a --config file, a log configuration of its own) and in every worker, since each worker
builds the application.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import re
import sys
import time
from datetime import UTC, datetime

from quart import Quart, Response, g, has_request_context, has_websocket_context, request, websocket
from quart.logging import default_handler as quart_default_handler
from quart_auth import current_user
from werkzeug.datastructures import Headers

# hypercorn's Logger uses logging.getLogger with these names for its access and error logs
HYPERCORN_LOGGERS = ("hypercorn.access", "hypercorn.error")
# the application's (Quart's app.logger is named after the app: "chat") and the libraries that log client input
LOGGER_FAMILIES = ("chat", "hypercorn", "quart", "tortoise")

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\\": "\\\\"}


def _escape_table() -> dict[int, str]:
    table = {code: f"\\x{code:02x}" for code in (*range(0x20), 0x7F, *range(0x80, 0xA0))}
    table.update({0x2028: "\\u2028", 0x2029: "\\u2029"})  # line and paragraph separators: new lines to some
    table.update({ord(char): escaped for char, escaped in _NAMED.items()})
    return table


ESCAPES = _escape_table()


def escape_control_characters(text: str) -> str:
    """`text` on one line, every control character written as a Python-style escape."""
    return text.translate(ESCAPES)


class EscapeControlCharacters(logging.Filter):
    """Replaces a record's message by its escaped, formatted text (its args are merged in and dropped)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "chat_escaped", False):  # escaping twice would double every backslash
            return True
        try:
            message = record.getMessage()
        except Exception:  # a broken format: leave it for logging's own error report
            return True
        record.msg = escape_control_characters(message)
        record.args = None
        record.chat_escaped = True
        return True


_FILTER = EscapeControlCharacters()


def escape_client_text_in_logs() -> None:
    """Attach the filter to hypercorn's loggers and to every logger of the families above that exists now.

    A logger's filters see only the records logged through that very logger, not those its children pass up,
    so each child needs it too. The application's modules are all imported by the time create_app calls this.
    Idempotent: a logger never holds the filter twice.
    """
    for name in HYPERCORN_LOGGERS:
        logging.getLogger(name).addFilter(_FILTER)
    existing = list(logging.root.manager.loggerDict)
    for name in existing:
        if name.split(".", 1)[0] in LOGGER_FAMILIES:
            logger = logging.root.manager.loggerDict[name]
            if isinstance(logger, logging.Logger):  # not a PlaceHolder (a name only its children made)
                logger.addFilter(_FILTER)
    for family in LOGGER_FAMILIES:
        logging.getLogger(family).addFilter(_FILTER)


# ---------------------------------------------------------------- request ids and CHAT_LOG_FORMAT=json

REQUEST_ID_HEADER = "X-Request-Id"
# what proxies and clients send as a request id (UUIDs, hex, base64url, "host:counter"); anything else is replaced
WELL_FORMED_REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:+=/-]{0,127}")
access_log = logging.getLogger("chat.access")
# New request ids: 128 random bits, not a secret (they follow a request through the logs), so drawn from a
# generator seeded once from os.urandom rather than a system call per request as uuid4 makes (~2 % of a send's
# samples under py-spy). Its own generator: a seed given to the random module elsewhere cannot repeat ids.
_request_ids = random.Random()
os.register_at_fork(after_in_child=_request_ids.seed)  # a forked worker draws its own ids


def request_id_from(headers: Headers) -> str:
    """The caller's own request id when it is well formed (a proxy's, to follow one request through both logs),
    else a new one."""
    incoming = headers.get(REQUEST_ID_HEADER, "")
    return incoming if WELL_FORMED_REQUEST_ID.fullmatch(incoming) else f"{_request_ids.getrandbits(128):032x}"


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line: time, level, logger, process, the request id of the request being
    served (if any), then a request line's fields or the message, and a traceback as one string."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "pid": record.process,
        }
        request_id = _current_request_id()
        if request_id is not None:
            entry["request_id"] = request_id
        entry.update(getattr(record, "chat_fields", None) or {"message": record.getMessage()})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        # ensure_ascii: every control character and line separator is a \u escape, so a record is one line
        return json.dumps(entry, ensure_ascii=True, default=str)


def _current_request_id() -> str | None:
    if has_request_context() or has_websocket_context():
        return g.get("request_id")
    return None


class _JsonHandlers(logging.Filter):
    """hypercorn builds its loggers' handlers (with a text format) when it builds its Logger, which is after the
    application: so this filter gives the handlers in place the JSON format when a record passes. The access
    log's records are dropped: the application writes the access log itself (install_request_log), with the
    request id, the route and the user that hypercorn does not know."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == "hypercorn.access":
            return False
        logger = logging.getLogger(record.name)
        for handler in logger.handlers:
            if not isinstance(handler.formatter, JsonFormatter):
                handler.setFormatter(_JSON_FORMATTER)
        if logger.handlers:
            logger.propagate = False  # its own handlers write it; the root's would write it twice
        return True


_JSON_FORMATTER = JsonFormatter()
_JSON_HANDLERS = _JsonHandlers()


def use_json_logs() -> None:
    """CHAT_LOG_FORMAT=json: every record of this process is written as JSON, to standard error (or to hypercorn's
    error log file for its own records), and the application's access lines go out at INFO. Idempotent."""
    root = logging.getLogger()
    if not root.handlers:
        root.addHandler(logging.StreamHandler(sys.stderr))
    for handler in root.handlers:
        handler.setFormatter(_JSON_FORMATTER)
    logging.getLogger("chat").removeHandler(quart_default_handler)  # an earlier application's, in this process
    for name in HYPERCORN_LOGGERS:
        if _JSON_HANDLERS not in logging.getLogger(name).filters:
            logging.getLogger(name).addFilter(_JSON_HANDLERS)
    access_log.setLevel(logging.INFO)


def install_request_log(app: Quart, log_format: str) -> None:
    """Every answer carries its request id in X-Request-Id; with the JSON format each request (and each websocket,
    when it ends) is one access line: request id, method, route (the URL rule, never the path or the query),
    status, duration and the signed-in user's id. Never a body, a header or a cookie."""
    json_lines = log_format == "json"

    @app.before_request
    async def start_request() -> None:
        g.request_id = request_id_from(request.headers)
        g.request_started = time.perf_counter()

    @app.after_request
    async def answer_with_request_id(response: Response) -> Response:
        if g.get("request_id") is None:  # a guard answered before start_request ran
            g.request_id = request_id_from(request.headers)
        response.headers[REQUEST_ID_HEADER] = g.request_id
        if json_lines:
            started = g.get("request_started", time.perf_counter())
            _log_access(g.request_id, request.method, request.url_rule, response.status_code, started, current_user)
        return response

    @app.before_websocket
    async def start_websocket() -> None:
        g.request_id = request_id_from(websocket.headers)
        if not json_lines:
            return
        # A websocket's handler is cancelled when its client goes, and then no after_websocket runs: the line is
        # written when the handler's task ends, however it ends. A refusal (an HTTP answer) sets its status.
        line = {"status": 101, "args": (g.request_id, "WEBSOCKET", websocket.url_rule)}
        g.websocket_line = line
        started, user = time.perf_counter(), current_user._get_current_object()
        asyncio.current_task().add_done_callback(lambda _: _log_access(*line["args"], line["status"], started, user))

    @app.after_websocket
    async def websocket_refused(response: Response | None) -> Response | None:
        line = g.get("websocket_line")
        if line is not None and response is not None:
            line["status"] = response.status_code
        return response


def _log_access(request_id: str, method: str, rule, status: int, started: float, user) -> None:
    signed_in = getattr(user, "known", None)
    fields = {
        "request_id": request_id,
        "message": "request",
        "method": method,
        "route": rule.rule if rule is not None else "unmatched",
        "status": status,
        "duration_ms": round((time.perf_counter() - started) * 1000, 3),
        "user_id": signed_in.user.id if signed_in is not None else None,
    }
    access_log.info("request", extra={"chat_fields": fields})
