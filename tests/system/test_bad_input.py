"""Table-driven bad input over every field of every JSON endpoint and query: never a 5xx, always the JSON
error shape, nothing stored. Run through Quart's test client and against a real hypercorn process."""

from __future__ import annotations

import json
import socket
import struct
from dataclasses import dataclass

import httpx

from testkit.backends import database_rows
from testkit.http import PASSWORD, signed_in_client
from testkit.probes import app_tracebacks

MEGABYTE = "x" * 1_000_000
LONG = "x" * 10_000

# Raw JSON text of each value (json.dumps with ensure_ascii writes "\ud800" as that escape, as a client could).
BAD_ANYWHERE = {
    "nul": "nul\x00byte",
    "lone high surrogate": "\ud800",
    "lone low surrogate": "ab\udfffcd",
    "10 000 characters": LONG,
    "array": ["a"],
    "empty array": [],
    "nested object": {"a": {"b": {"c": 1}}},
    "true": True,
    "false": False,
    "1 MB": MEGABYTE,
}
BAD_FOR_TEXT = {**BAD_ANYWHERE, "number": 12345, "float": 1.5, "null": None, "empty": ""}
BAD_FOR_ID = {
    **BAD_ANYWHERE,
    "numeric string": "2",
    "float": 2.5,
    "negative": -1,
    "past 32 bits": 2**31,
    "past 64 bits": 2**64,
    "huge float": 1e300,
    "null": None,
    "empty": "",
}
# Query strings carry text: percent-encoded raw values.
BAD_QUERY = {
    "nul": "%00",
    "lone surrogate (CESU-8)": "%ED%A0%80",
    "invalid UTF-8": "%FF",
    "10 000 characters": LONG,
    "true": "true",
    "array": "[1]",
    "object": "%7B%22a%22%3A1%7D",
    "float": "1.5",
    "negative": "-1",
    "past 32 bits": str(2**31),
    "past 64 bits": str(2**64),
    "null": "null",
    "empty": "",
}


@dataclass(frozen=True)
class Case:
    name: str
    method: str
    path: str
    body: bytes | None = None  # raw JSON text
    query: str = ""


def json_cases(path: str, base: dict, text_fields: set[str], id_fields: set[str], optional: set[str]) -> list[Case]:
    cases = []
    for field in sorted(text_fields | id_fields):
        bad = BAD_FOR_TEXT if field in text_fields else BAD_FOR_ID
        for label, value in bad.items():
            if value is None and field in optional:
                continue  # null is how an optional field says "not given"
            body = json.dumps({**base, field: value}, ensure_ascii=True).encode()
            cases.append(Case(f"{path} {field}={label}", "POST", path, body=body))
    return cases


def all_cases(bob_id: int, message_id: int) -> list[Case]:
    register = {"username": "newcomer", "email": "newcomer@example.org", "password": PASSWORD}
    cases = json_cases("/register", register, {"username", "email", "password"}, set(), set())
    # one identifier per login body, so that a bad value is never rescued by the other one
    cases += json_cases("/login", {"username": "alice", "password": PASSWORD}, {"username", "password"}, set(), set())
    cases += json_cases("/login", {"email": "alice@example.org", "password": PASSWORD}, {"email"}, set(), set())
    send = {"receiver_id": bob_id, "content": "hello", "client_id": "bad-input-case"}
    cases += json_cases("/send-message", send, {"content", "client_id"}, {"receiver_id"}, {"client_id"})
    cases += json_cases("/mark-read", {"user_id": bob_id, "up_to": message_id}, set(), {"user_id", "up_to"}, set())
    for field in ("user_id", "before", "after", "limit"):
        for label, raw in BAD_QUERY.items():
            query = f"{field}={raw}" if field == "user_id" else f"user_id={bob_id}&{field}={raw}"
            cases.append(Case(f"/get-messages {field}={label}", "GET", "/get-messages", query=query))
    cases.append(Case("/get-messages user_id twice", "GET", "/get-messages", query=f"user_id={bob_id}&user_id=x"))
    return cases


COUNTED = ("users", "sessions", "messages", "read_markers")


def problems_with(case: Case, status: int, content_type: str, body: bytes) -> str | None:
    """Why this answer breaks the rule (a 4xx JSON error body), or None."""
    if not 400 <= status < 500:
        return f"{case.name}: status {status}"
    if not content_type.startswith("application/json"):
        return f"{case.name}: {status} with Content-Type {content_type!r}"
    try:
        error = json.loads(body)
    except ValueError:
        return f"{case.name}: {status} with a body that is not JSON"
    if not (isinstance(error.get("error"), str) and isinstance(error.get("message"), str)):
        return f"{case.name}: {status} {error!r} is not the error shape"
    return None


async def test_bad_input_through_the_test_client(app, signup):
    alice, _ = await signup("alice")
    bob, b = await signup("bob")
    sent = await alice.post("/send-message", json={"receiver_id": b["id"], "content": "the only message"})
    message_id = (await sent.get_json())["id"]

    from tortoise.connection import get_connection

    async def counts() -> dict[str, int]:
        connection = get_connection("default")
        return {t: (await connection.execute_query_dict(f"SELECT COUNT(*) AS n FROM {t}"))[0]["n"] for t in COUNTED}  # noqa: S608

    before = await counts()
    failures = []
    for case in all_cases(b["id"], message_id):
        if case.method == "POST":
            headers = {"Content-Type": "application/json"}
            response = await alice.post(case.path, data=case.body, headers=headers)
        else:
            response = await alice.get(f"{case.path}?{case.query}")
        body = await response.get_data()
        if problem := problems_with(case, response.status_code, response.headers.get("Content-Type", ""), body):
            failures.append(problem)
    assert not failures, "\n".join(failures)
    assert await counts() == before
    assert (await alice.get("/me")).status_code == 200  # alice is still signed in, nothing broke


def test_bad_input_against_the_real_server(server):
    alice, _ = signed_in_client(server.base_url, "alice")
    bob, b = signed_in_client(server.base_url, "bob")
    message_id = alice.post("/send-message", json={"receiver_id": b["id"], "content": "the only message"}).json()["id"]

    def counts() -> dict[str, int]:
        return {t: database_rows(server.workdir, f"SELECT COUNT(*) FROM {t}")[0][0] for t in COUNTED}  # noqa: S608

    before = counts()
    failures = []
    for case in all_cases(b["id"], message_id):
        try:
            if case.method == "POST":
                response = alice.post(case.path, content=case.body, headers={"Content-Type": "application/json"})
            else:
                response = alice.get(f"{case.path}?{case.query}")
        except httpx.HTTPError as exc:
            failures.append(f"{case.name}: {exc!r}")
            continue
        if problem := problems_with(
            case, response.status_code, response.headers.get("content-type", ""), response.content
        ):
            failures.append(problem)
    assert not failures, "\n".join(failures)
    assert counts() == before
    assert alice.get("/me").status_code == 200
    assert PASSWORD not in server.log()


def test_clients_that_leave_in_the_middle_of_a_request_leave_nothing_behind(server):
    """A request whose body came whole is handled in hypercorn's own task (asgi_http.py), one whose body is
    still coming the way Quart does: either way a client that resets the connection before its answer costs
    no traceback, no duplicate and no stuck connection."""
    alice, a = signed_in_client(server.base_url, "alice")
    bob, b = signed_in_client(server.base_url, "bob")
    cookie = f"chat_session={alice.cookies['chat_session']}"
    body = json.dumps({"receiver_id": b["id"], "content": "sent, then gone"}).encode()
    whole = (
        f"POST /send-message HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nCookie: {cookie}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body

    def page() -> list[dict]:
        return bob.get("/get-messages", params={"user_id": a["id"], "limit": 100}).json()["messages"]

    def send_and_reset(data: bytes) -> None:
        with socket.create_connection(("127.0.0.1", server.port)) as client:
            client.sendall(data)
            client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close with a reset

    for cut_short in (whole[: whole.index(b"\r\n\r\n")], whole[:-10]):  # in the headers; in the body
        for _ in range(20):
            send_and_reset(cut_short)
    assert page() == []
    for _ in range(20):  # whole: each stored once or not at all, as far as the handler got
        send_and_reset(whole)
    gone = page()
    assert len(gone) <= 20 and len({message["id"] for message in gone}) == len(gone)
    sent = alice.post("/send-message", json={"receiver_id": b["id"], "content": "still here"})
    assert sent.status_code == 201 and sent.json()["id"] in {message["id"] for message in page()}
    assert app_tracebacks(server.log()) == []
