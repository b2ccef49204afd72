"""Per-user send limits and password changes (which sign out every other session)."""

from __future__ import annotations

import json

import pytest

from .support import PASSWORD, api_login, api_register, started_app


@pytest.fixture
async def tight_app(tmp_path):
    async with started_app(tmp_path, send_limit=3, send_window_seconds=60) as application:
        yield application


async def test_sending_faster_than_the_limit_is_429_with_retry_after(tight_app):
    alice, bob = tight_app.test_client(), tight_app.test_client()
    await api_register(alice, "alice")
    b = await api_register(bob, "bob")
    await api_login(alice, "alice")
    for i in range(3):
        response = await alice.post(
            "/send-message", json={"receiver_id": b["id"], "content": f"m{i}", "client_id": f"c{i}"}
        )
        assert response.status_code == 201
    response = await alice.post("/send-message", json={"receiver_id": b["id"], "content": "too many"})
    assert response.status_code == 429
    assert (await response.get_json())["error"] == "too_many_messages"
    assert 1 <= int(response.headers["Retry-After"]) <= 60
    # a retry of something already stored is not a new message: it is still answered
    response = await alice.post("/send-message", json={"receiver_id": b["id"], "content": "m0", "client_id": "c0"})
    assert response.status_code == 200
    assert (await tight_app.test_client().get("/healthz")).status_code == 200


async def test_the_limit_is_per_user_over_websockets_too(tight_app):
    alice = tight_app.test_client()
    a = await api_register(alice, "alice")
    b = await api_register(tight_app.test_client(), "bob")
    await api_login(alice, "alice")
    room = f"dm-{min(a['id'], b['id'])}-{max(a['id'], b['id'])}"
    async with alice.websocket(f"/ws/rooms/{room}") as ws:
        frames = []
        for i in range(4):
            await ws.send(f'{{"type": "message", "content": "m{i}"}}')
        while not any(f.get("type") == "error" for f in frames):
            frames.append(json.loads(await ws.receive()))
        error = next(f for f in frames if f["type"] == "error")
        assert error["error"] == "too_many_messages"


async def test_change_password_signs_out_every_other_session(signup, make_client):
    phone, me = await signup("alice")
    laptop = make_client()
    await api_login(laptop, "alice")

    wrong = await phone.post(
        "/change-password", json={"current_password": "nope nope", "new_password": "brand new pass"}
    )
    assert wrong.status_code == 401 and (await wrong.get_json())["error"] == "invalid_credentials"

    response = await phone.post(
        "/change-password", json={"current_password": PASSWORD, "new_password": "brand new pass"}
    )
    assert response.status_code == 204
    assert (await phone.get("/me")).status_code == 200  # this session stays
    assert (await laptop.get("/me")).status_code == 401  # every other one is revoked
    old = await make_client().post("/login", json={"username": "alice", "password": PASSWORD})
    assert old.status_code == 401
    await api_login(make_client(), "alice", "brand new pass")


async def test_change_password_validates_the_new_one(signup):
    phone, _ = await signup("alice")
    response = await phone.post("/change-password", json={"current_password": PASSWORD, "new_password": "short"})
    assert response.status_code == 400
    assert "short" not in await response.get_data(as_text=True)
