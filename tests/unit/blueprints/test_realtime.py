"""The websocket handler in process (Quart's test client): races a real client cannot time."""

from __future__ import annotations

import asyncio

import pytest
from quart.testing.connections import WebsocketDisconnectError, WebsocketResponseError
from quart_auth import current_user

from chat import accounts, rooms
from chat.rooms import room_for


async def test_a_logout_racing_the_handshake_still_ends_the_socket(app, signup, monkeypatch):
    """In process: the session is revoked after the handshake checked it, but before the socket listened
    for revocations. The socket must not live on with a revoked session."""
    alice_client, alice = await signup("alice")
    _, bob = await signup("bob")
    check_other = rooms.require_user

    async def logout_meanwhile(user_id: int, **kwargs: bool) -> None:
        await check_other(user_id, **kwargs)
        await accounts.end_session(current_user.auth_id)  # what a concurrent POST /logout does

    monkeypatch.setattr(rooms, "require_user", logout_meanwhile)
    async with alice_client.websocket(f"/ws/rooms/{room_for(alice['id'], bob['id'])}") as ws:
        with pytest.raises((WebsocketResponseError, WebsocketDisconnectError)) as ended:
            await asyncio.wait_for(ws.receive(), 5)
    if isinstance(ended.value, WebsocketResponseError):
        assert ended.value.response.status_code == 401
    else:
        assert ended.value.args == (1008,)
