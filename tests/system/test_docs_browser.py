"""/docs in a real browser (issue 11): Debian's Chromium renders Swagger UI's operations with no policy violation,
and no request leaves the server's origin."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect, sync_playwright

from testkit.browser import CHROMIUM, CHROMIUM_ARGS

pytestmark = pytest.mark.browser


def test_docs_render_the_operations_from_this_origin_only(server):
    errors: list[str] = []
    requested: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(base_url=server.base_url)
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.on("console", lambda message: message.type == "error" and errors.append(message.text))
            page.on("request", lambda request: requested.append(request.url))
            page.goto("/docs")
            operation = page.locator(".opblock", has_text="/login").first
            expect(operation).to_be_visible(timeout=15_000)
            expect(page.locator(".opblock")).not_to_have_count(0)
            operation.locator(".opblock-summary").click()  # opened: its schema renders from the document too
            expect(operation.locator(".opblock-body")).to_be_visible()
        finally:
            browser.close()
    assert errors == [], errors
    foreign = [url for url in requested if not url.startswith(server.base_url + "/") and not url.startswith("data:")]
    assert foreign == [], foreign
    assert f"{server.base_url}/openapi.json" in requested
