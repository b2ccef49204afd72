"""The original application's own chat page (../shared/reference/flask-seed/templates/chat.html, its script
unchanged) chats with this server in Chromium over /socket.io/, with the Socket.IO client it loads from a CDN
served from a local copy (tests/system/assets: socket.io-client 4.7.5's dist/socket.io.min.js, MIT).

Playwright answers the two requests that this server does not serve - the page itself, rendered from the original
template, and the CDN's script - and everything else (the session, /get-users, /get-messages, /socket.io/) goes to
the real server.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from jinja2 import Environment, FileSystemLoader
from playwright.sync_api import expect, sync_playwright

from testkit.browser import CHROMIUM, CHROMIUM_ARGS
from testkit.http import PASSWORD, signed_in_client
from testkit.servers import ROOT, Server

pytestmark = pytest.mark.browser

ORIGINAL_TEMPLATES = ROOT.parent / "shared" / "reference" / "flask-seed" / "templates"
SOCKETIO_CLIENT = Path(__file__).parent / "assets" / "socket.io-4.7.5.min.js"
CDN_SCRIPT = "https://cdn.socket.io/4.7.5/socket.io.min.js"


@pytest.mark.skipif(not ORIGINAL_TEMPLATES.is_dir(), reason="the shared reference folder is not beside the project")
def test_the_original_chat_page_chats_with_this_server(tmp_path):
    server = Server(workdir=tmp_path).start()
    try:
        alice_http, alice = signed_in_client(server.base_url, "original-alice")
        bob_http, bob = signed_in_client(server.base_url, "original-bob")
        page_html = Environment(loader=FileSystemLoader(ORIGINAL_TEMPLATES), autoescape=True)
        page_html = page_html.get_template("chat.html").render(user_id=alice["id"])

        with sync_playwright() as playwright:
            chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            context = chromium.new_context(base_url=server.base_url)
            signed_in = context.request.post("/login", data={"username": "original-alice", "password": PASSWORD})
            assert signed_in.status == 200
            context.route(CDN_SCRIPT, lambda route: route.fulfill(path=SOCKETIO_CLIENT))
            context.route(
                f"{server.base_url}/original-chat*",
                lambda route: route.fulfill(body=page_html, content_type="text/html; charset=utf-8"),
            )
            page = context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(f"/original-chat?user_id={bob['id']}")
            messages = page.locator("#messages p")

            # bob sends over HTTP: the page shows it, delivered as the Socket.IO event `message`
            expect(page.locator("#users a", has_text="original-bob")).to_be_visible(timeout=15_000)
            # the page joins once it has loaded the history: wait until the join is acknowledged server-side,
            # i.e. until a message sent now reaches it
            for attempt in range(50):
                sent = bob_http.post("/send-message", json={"receiver_id": alice["id"], "content": f"hi {attempt}"})
                assert sent.status_code == 201
                try:
                    expect(messages.filter(has_text=f"hi {attempt}")).to_have_count(1, timeout=300)
                    break
                except AssertionError:
                    continue
            else:
                raise AssertionError("the page never showed a message sent to it")

            # alice types in the original form: the page emits `message`, the server stores it and emits it back
            page.fill("#content", "hello from the original page")
            page.press("#content", "Enter")
            expect(messages.filter(has_text="hello from the original page")).to_have_count(1)
            expect(messages.last).to_have_class("mine")
            history = bob_http.get("/get-messages", params={"user_id": alice["id"]}).json()["messages"]
            assert history[-1]["content"] == "hello from the original page"
            assert history[-1]["sender_id"] == alice["id"] and history[-1]["client_id"]

            # and the live part carries on: bob's next message arrives once
            bob_http.post("/send-message", json={"receiver_id": alice["id"], "content": "seen it"})
            expect(messages.filter(has_text="seen it")).to_have_count(1)
            assert errors == []
            chromium.close()
        alice_http.close()
        bob_http.close()
    finally:
        server.stop()
    assert "Traceback" not in server.log(), server.log()
