"""CHAT_ALLOWED_HOSTS: the host names this server answers for; a request for any other gets 400 invalid_host.

A Host header of the client's choosing reaches whatever builds an absolute address from it (the HTTPS redirect,
the pages' connect-src) and lets a DNS-rebinding page talk to a server on a private address under a name the
page's owner controls. Unset, every host is served, as before. An entry without a port allows its name on any
port; one with a port, only that port as the Host header spells it.
"""

from __future__ import annotations

import re

from quart import Quart, request, websocket

from .errors import APIError

# a DNS name or IPv4 address, or an IPv6 literal in brackets; then an optional port. Always fullmatch: a
# pattern ending in $ would also accept the name with a newline after it.
HOST = re.compile(r"(?P<name>[a-z0-9](?:[a-z0-9.\-]*[a-z0-9])?|\[[0-9a-f:.]+\])(?::(?P<port>[0-9]{1,5}))?")
# the same split, lenient: to normalise what a client sent before it is judged
NAME_AND_PORT = re.compile(r"(?P<name>\[[^\]]*\]|[^:]*)(?P<port>:[^:]*)?", re.DOTALL)


def normal_host(host: str) -> str:
    """Lower case, without the trailing dot of a fully qualified name ("Chat.Example.ORG." is chat.example.org)."""
    host = host.lower()
    match = NAME_AND_PORT.fullmatch(host)
    return host if match is None else match["name"].rstrip(".") + (match["port"] or "")


def host_allowed(host: str, allowed: tuple[str, ...]) -> bool:
    if not allowed:
        return True
    match = HOST.fullmatch(normal_host(host))
    if match is None:
        return False
    return match["name"] in allowed or match.group(0) in allowed


def refuse_unlisted_host(host: str, allowed: tuple[str, ...]) -> None:
    if not host_allowed(host, allowed):
        raise APIError(400, "invalid_host", "This server does not answer for the host name in the request.")


def install_host_check(app: Quart, allowed: tuple[str, ...]) -> None:
    """Check every request and websocket handshake (before the upgrade) against `allowed`, before anything else."""
    if not allowed:
        return

    @app.before_request
    async def check_request_host() -> None:
        refuse_unlisted_host(request.host, allowed)

    @app.before_websocket
    async def check_websocket_host() -> None:
        refuse_unlisted_host(websocket.host, allowed)
