from .support import api_login, api_register


async def test_register_login_me_logout(client):
    user = await api_register(client, "alice")
    assert user == {"id": user["id"], "username": "alice", "email": "alice@example.org"}
    assert (await client.get("/me")).status_code == 401
    await api_login(client, "alice")
    assert (await (await client.get("/me")).get_json())["username"] == "alice"
    assert (await client.post("/logout")).status_code == 204
    assert (await client.get("/me")).status_code == 401
