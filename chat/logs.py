"""Log lines that a client cannot forge: control characters in a logged message are escaped.

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

import logging

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
