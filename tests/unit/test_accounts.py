"""Password changes (which sign out every other session)."""

from __future__ import annotations

from testkit.app import api_login
from testkit.http import PASSWORD


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
