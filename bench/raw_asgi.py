"""The floor of any ASGI server on hypercorn: chat's endpoints written against the bare ASGI interface.

`hypercorn bench.raw_asgi:app`. Same work as bare_quart (cookie present, JSON parsed and checked, message kept
in memory), with orjson and no framework at all; and chat's websocket protocol at its simplest
(`/ws/rooms/<room>`: a message frame is numbered, kept and relayed to every socket of the room, as is a
message POSTed to /send-message), which is the floor for the real-time scenarios.
"""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import parse_qs

import orjson

from .memory_store import MemoryStore

store = MemoryStore()
rooms: dict[str, set] = {}  # room -> the ASGI send callables of its sockets
JSON_HEADERS = [(b"content-type", b"application/json")]


async def respond(send, status: int, body: object) -> None:
    payload = orjson.dumps(body)
    headers = [*JSON_HEADERS, (b"content-length", str(len(payload)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


async def read_body(receive) -> bytes:
    chunks = []
    while True:
        event = await receive()
        chunks.append(event.get("body", b""))
        if not event.get("more_body"):
            return b"".join(chunks)


def has_session(scope) -> bool:
    return any(name == b"cookie" and b"chat_session=" in value for name, value in scope["headers"])


async def app(scope, receive, send) -> None:
    if scope["type"] == "lifespan":
        while True:
            event = await receive()
            await send({"type": event["type"] + ".complete"})
            if event["type"] == "lifespan.shutdown":
                return
    if scope["type"] == "websocket":
        return await websocket(scope, receive, send)
    path, method = scope["path"], scope["method"]
    if path == "/healthz":
        return await respond(send, 200, {"status": "ok"})
    if path not in ("/send-message", "/get-messages"):
        return await respond(send, 404, {"error": "not_found", "message": "Nothing here."})
    if not has_session(scope):
        return await respond(send, 401, {"error": "unauthorized", "message": "Sign in first."})
    if path == "/send-message" and method == "POST":
        try:
            data = orjson.loads(await read_body(receive))
        except orjson.JSONDecodeError:
            return await respond(send, 400, {"error": "invalid_json", "message": "The body is not valid JSON."})
        receiver_id, content = data.get("receiver_id"), data.get("content")
        if not isinstance(receiver_id, int) or not isinstance(content, str) or not content.strip():
            return await respond(send, 400, {"error": "validation_error", "message": "Some fields are invalid."})
        message = store.add(1, receiver_id, content, data.get("client_id"), datetime.now(UTC))
        await publish(f"dm-1-{receiver_id}" if receiver_id > 1 else "dm-1-1", message)
        return await respond(send, 201, message)
    if path == "/get-messages" and method == "GET":
        before = parse_qs(scope["query_string"].decode()).get("before")
        messages, has_more = store.page(int(before[0]) if before else None)
        return await respond(send, 200, {"messages": messages, "has_more": has_more})
    return await respond(send, 405, {"error": "method_not_allowed", "message": "Not allowed here."})


async def publish(room: str, message: dict) -> None:
    frame = orjson.dumps({"type": "message", "message": message}).decode()
    for member in tuple(rooms.get(room, ())):
        await member({"type": "websocket.send", "text": frame})


async def websocket(scope, receive, send) -> None:
    room = scope["path"].removeprefix("/ws/rooms/")
    if not has_session(scope) or not room.startswith("dm-"):
        await send({"type": "websocket.close", "code": 1008})
        return
    await receive()  # websocket.connect
    await send({"type": "websocket.accept"})
    members = rooms.setdefault(room, set())
    members.add(send)
    try:
        while True:
            event = await receive()
            if event["type"] == "websocket.disconnect":
                return
            data = orjson.loads(event.get("text") or "{}")
            if data.get("type") == "message":
                low, high = (int(part) for part in room.split("-")[1:3])
                message = store.add(low, high, data.get("content", ""), data.get("client_id"), datetime.now(UTC))
                await publish(room, message)
    finally:
        members.discard(send)
