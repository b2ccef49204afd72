import httpx

from .support import signed_in_client


def test_real_server_flow(server):
    alice, a = signed_in_client(server.base_url, "alice")
    bob, b = signed_in_client(server.base_url, "bob")
    sent = alice.post("/send-message", json={"receiver_id": b["id"], "content": "hello"})
    assert sent.status_code == 201
    page = bob.get("/get-messages", params={"user_id": a["id"]}).json()
    assert [m["content"] for m in page["messages"]] == ["hello"]
    assert httpx.get(server.base_url + "/healthz").json() == {"status": "ok", "broker": "ok"}
