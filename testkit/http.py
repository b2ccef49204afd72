"""Sign-up and sign-in over real HTTP (httpx), against a running server."""

from __future__ import annotations

import httpx

PASSWORD = "correct horse battery"


def register(client: httpx.Client, name: str, password: str = PASSWORD) -> dict:
    response = client.post("/register", json={"username": name, "email": f"{name}@example.org", "password": password})
    assert response.status_code == 201, response.text
    return response.json()


def login(client: httpx.Client, name: str, password: str = PASSWORD) -> dict:
    response = client.post("/login", json={"username": name, "password": password})
    assert response.status_code == 200, response.text
    return response.json()


def signed_in_client(base_url: str, name: str, **kwargs) -> tuple[httpx.Client, dict]:
    """A new httpx client with a fresh account signed in."""
    client = httpx.Client(base_url=base_url, timeout=30, **kwargs)
    register(client, name)
    user = login(client, name)
    return client, user
