"""/docs (issue 11): Swagger UI from this server's own files, under the pages' Content-Security-Policy."""

from __future__ import annotations

import re

from chat.blueprints.docs import SWAGGER_UI_DIST, swagger_ui_version


async def test_docs_load_only_this_servers_files_under_a_policy(client):
    response = await client.get("/docs")
    assert response.status_code == 200 and response.mimetype == "text/html"
    policy = response.headers["Content-Security-Policy"]
    assert "script-src 'self';" in policy and "default-src 'none'" in policy and "unsafe" not in policy
    page = await response.get_data(as_text=True)
    assert "/openapi.json" in page
    assert "<script>" not in page  # the start-up script is a file: the policy runs no inline script
    sources = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert sources and all(source.startswith("/") and not source.startswith("//") for source in sources), sources
    for source in sources:
        loaded = await client.get(source)
        assert loaded.status_code == 200, source


async def test_the_swagger_ui_files_are_the_pinned_packages_and_nothing_else(client):
    bundle = await client.get(f"/docs/swagger-ui/swagger-ui-bundle.js?v={swagger_ui_version()}")
    assert bundle.status_code == 200 and bundle.mimetype in {"text/javascript", "application/javascript"}
    assert await bundle.get_data() == (SWAGGER_UI_DIST / "swagger-ui-bundle.js").read_bytes()
    assert "max-age" in bundle.headers["Cache-Control"]
    for name in ("oauth2-redirect.html", "index.css", "../__init__.py", "VERSION"):
        assert (await client.get(f"/docs/swagger-ui/{name}")).status_code == 404, name


async def test_the_api_document_stays_at_openapi_json_and_does_not_list_docs(client):
    document = await (await client.get("/openapi.json")).get_json()
    assert document["paths"] and not any(path.startswith("/docs") for path in document["paths"])
