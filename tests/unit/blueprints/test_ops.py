"""GET /healthz, /openapi.json and /docs."""

from __future__ import annotations

import pytest

from testkit.app import MESSAGE_FIELDS

# Every JSON endpoint of API.md (but the websocket), with the method and the statuses it documents.
ENDPOINTS = {
    ("/register", "post"): {"201", "400", "409", "503"},
    ("/login", "post"): {"200", "400", "401", "429", "503"},
    ("/logout", "post"): {"204"},
    ("/logout", "get"): {"204"},
    ("/me", "get"): {"200", "401", "503"},
    ("/get-users", "get"): {"200", "401", "503"},
    ("/send-message", "post"): {"201", "200", "400", "401", "403", "404", "409", "429", "503"},
    ("/files", "post"): {"201", "400", "401", "403", "404", "409", "413", "429", "503"},
    ("/get-messages", "get"): {"200", "400", "401", "403", "404", "503"},
    ("/mark-read", "post"): {"204", "400", "401", "403", "404", "503"},
    ("/change-password", "post"): {"204", "400", "401", "429", "503"},
    ("/healthz", "get"): {"200", "503"},
    ("/rooms", "post"): {"201", "400", "401", "404", "409", "503"},
    ("/rooms", "get"): {"200", "400", "401", "503"},
    ("/rooms/{name}", "get"): {"200", "401", "404", "503"},
    ("/rooms/{name}", "patch"): {"200", "400", "401", "403", "404", "409", "503"},
    ("/rooms/{name}/join", "post"): {"200", "401", "403", "404", "409", "503"},
    ("/rooms/{name}/leave", "post"): {"204", "401", "404", "409", "503"},
    ("/rooms/{name}/members", "post"): {"204", "400", "401", "403", "404", "409", "503"},
    ("/rooms/{name}/members/{user_id}", "delete"): {"204", "401", "403", "404", "409", "503"},
    ("/rooms/{name}/archive", "post"): {"204", "401", "403", "404", "503"},
    ("/messages/{message_id}", "patch"): {"200", "400", "401", "403", "404", "409", "503"},
    ("/messages/{message_id}", "delete"): {"204", "401", "403", "404", "409", "503"},
    ("/messages/{message_id}/reactions/{emoji}", "put"): {"204", "400", "401", "404", "409", "503"},
    ("/messages/{message_id}/reactions/{emoji}", "delete"): {"204", "400", "401", "404", "503"},
}
REQUEST_FIELDS = {
    "/register": {"username", "email", "password"},
    "/login": {"email", "username", "password"},
    "/send-message": {"receiver_id", "room", "content", "client_id", "reply_to", "file_ids"},
    "/mark-read": {"user_id", "room", "up_to"},
}


async def test_healthz(client):
    response = await client.get("/healthz")
    assert response.status_code == 200
    assert await response.get_json() == {"status": "ok", "broker": "ok"}
    assert response.headers["Cache-Control"] == "no-store"


@pytest.fixture
async def openapi(client) -> dict:
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    return await response.get_json()


def resolve(spec: dict, schema: dict) -> dict:
    while "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        schema = spec["components"]["schemas"][name]
    return schema


async def test_openapi_lists_every_endpoint_with_its_shapes(openapi):
    paths = openapi["paths"]
    for (path, method), statuses in ENDPOINTS.items():
        assert method in paths.get(path, {}), f"{method.upper()} {path} is missing"
        operation = paths[path][method]
        assert statuses <= set(operation["responses"]), (path, set(operation["responses"]))
        for status, response in operation["responses"].items():
            if status == "204" or status.startswith("3"):  # no content, or a redirect (GET /logout cross-site)
                assert "empty body" in response["description"], (path, response)
                continue
            schema = resolve(openapi, response["content"]["application/json"]["schema"])
            assert schema.get("properties"), (path, status)
            if status.startswith(("4", "5")):
                assert {"error", "message"} <= set(schema["properties"]), (path, status)
    for path, fields in REQUEST_FIELDS.items():
        body = paths[path]["post"]["requestBody"]["content"]["application/json"]["schema"]
        assert set(resolve(openapi, body)["properties"]) == fields, path
    parameters = {p["name"]: p for p in paths["/get-messages"]["get"]["parameters"] if p["in"] == "query"}
    # a room is named by user_id (a direct room) or by room (any room): exactly one of them
    assert set(parameters) == {"conversation", "cursor", "limit"} and parameters["conversation"]["required"] is True
    assert set(parameters["conversation"]["schema"]["properties"]) == {"user_id", "room"}
    # before and after exclude each other: one form-exploded object parameter that holds at most one of them
    cursor = parameters["cursor"]
    assert (cursor["style"], cursor["explode"], cursor["schema"]["maxProperties"]) == ("form", True, 1)
    assert set(cursor["schema"]["properties"]) == {"before", "after"}
    message = resolve(
        openapi, paths["/send-message"]["post"]["responses"]["201"]["content"]["application/json"]["schema"]
    )
    assert set(message["properties"]) == MESSAGE_FIELDS
    validation = paths["/register"]["post"]["responses"]["400"]["content"]["application/json"]["schema"]
    assert "fields" in resolve(openapi, validation)["properties"]


async def test_docs_render_html(client):
    response = await client.get("/docs")
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    page = await response.get_data(as_text=True)
    assert "swagger" in page.lower() and "/openapi.json" in page
