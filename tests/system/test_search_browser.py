"""The search box in a real browser (Debian's Chromium through Playwright) against a real hypercorn process:
Ctrl+K and / focus it, results are grouped by room with the matched words marked, and a click opens the
conversation at that message, far back in its history, and marks it."""

from __future__ import annotations

import re

import httpx
import pytest
from playwright.sync_api import expect

from testkit.http import login, register
from testkit.servers import Server

from . import test_pages_browser as pages
from .test_pages_browser import Person, assert_clean, sign_up

# the browser and its people, as the page tests make them
browser = pages.browser
people = pages.people

pytestmark = pytest.mark.browser

XSS = "<img src=x onerror=alert(1)>"


def test_search_finds_marks_and_opens_the_message(people, server: Server):
    api = httpx.Client(base_url=server.base_url, timeout=30)
    bob = register(api, "bob")
    carol = register(httpx.Client(base_url=server.base_url), "carol")
    alice: Person = people("alice")
    sign_up(alice)
    login(api, "alice")

    def send(receiver: dict, content: str) -> int:
        answer = api.post("/send-message", json={"receiver_id": receiver["id"], "content": content})
        assert answer.status_code == 201, answer.text
        return answer.json()["id"]

    target = send(bob, f"The STAGING password is in the vault {XSS}")
    for n in range(70):  # the message is far older than the conversation's latest page
        send(bob, f"filler {n}")
    send(carol, "staging is down, no password needed")
    api.close()

    page = alice.page
    box = page.get_by_label("Search messages")
    page.locator("body").click()
    page.keyboard.press("/")
    expect(box).to_be_focused()
    page.keyboard.press("Escape")
    page.locator("body").click()
    page.keyboard.press("Control+k")
    expect(box).to_be_focused()
    page.keyboard.type("stag passw")

    panel = page.locator("#search-panel")
    groups = panel.locator(".search-group")
    expect(groups).to_have_count(2)
    expect(groups.locator("h3")).to_have_text(["With carol", "With bob"])  # newest result first
    result = groups.nth(1).locator(".search-result")
    expect(result).to_have_count(1)
    expect(result.locator("mark")).to_have_text(["STAGING", "password"])
    expect(result.locator(".search-text")).to_have_text(f"The STAGING password is in the vault {XSS}")

    result.click()
    expect(page.locator("#peer-name")).to_have_text("bob")
    found = page.locator(f'#message-list .message[data-id="{target}"]')
    expect(found).to_have_class(re.compile(r"\bfound\b"))
    expect(found).to_be_in_viewport()
    expect(found.locator(".content")).to_have_text(f"The STAGING password is in the vault {XSS}")
    expect(panel).to_be_hidden()
    # the messages after it are there too, up to the newest (the page after it, then the socket's replay)
    expect(page.locator("#message-list .message .content").last).to_have_text("filler 69")
    assert_clean(alice)
