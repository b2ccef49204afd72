"""The floor of any Quart server: the same two endpoints as chat, doing the least comparable work.

No database and no session store: the cookie must be present, the body is parsed and checked, the message is
kept in a list in memory and returned. `hypercorn bench.bare_quart:app`.
"""

from __future__ import annotations

from datetime import UTC, datetime

from quart import Quart, request

from .memory_store import MemoryStore

app = Quart(__name__)
store = MemoryStore()


@app.get("/healthz")
async def healthz() -> dict:
    return {"status": "ok"}


@app.post("/send-message")
async def send_message() -> tuple[dict, int]:
    if "chat_session" not in request.cookies:
        return {"error": "unauthorized", "message": "Sign in first."}, 401
    data = await request.get_json()
    receiver_id, content = data.get("receiver_id"), data.get("content")
    if not isinstance(receiver_id, int) or not isinstance(content, str) or not content.strip():
        return {"error": "validation_error", "message": "Some fields are invalid."}, 400
    message = store.add(1, receiver_id, content, data.get("client_id"), datetime.now(UTC))
    return message, 201


@app.get("/get-messages")
async def get_messages() -> dict | tuple[dict, int]:
    if "chat_session" not in request.cookies:
        return {"error": "unauthorized", "message": "Sign in first."}, 401
    before = request.args.get("before", type=int)
    messages, has_more = store.page(before)
    return {"messages": messages, "has_more": has_more}
