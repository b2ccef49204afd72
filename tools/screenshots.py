"""Screenshots for the README: the sign-in page, a conversation and a channel, from a real server in Chromium.

.venv/bin/python -m tools.screenshots      (writes docs/screenshots/*.png)
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from playwright.sync_api import expect, sync_playwright

from testkit.browser import CHROMIUM, CHROMIUM_ARGS
from testkit.http import signed_in_client
from testkit.servers import Server

OUT = Path(__file__).resolve().parent.parent / "docs" / "screenshots"
LINES = [
    ("bob", "Morning! Did the deploy go out?"),
    ("alice", "Yes, 9:40. Metrics look calm so far."),
    ("bob", "Great. Can you share the rollback steps in the runbook?"),
    ("alice", "Done, section 4. Ping me if anything looks off."),
]
CHANNEL_LINES = [
    ("bob", "Release 2.4 is tagged."),
    ("carol", "Changelog is up, @alice can you check the migration notes?"),
    ("dave", "Staging looks green from here."),
]


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    server = Server(workdir=Path(tempfile.mkdtemp())).start()
    try:
        people = {name: signed_in_client(server.base_url, name) for name in ("alice", "bob", "carol", "dave")}
        for sender, text in LINES:
            other = "bob" if sender == "alice" else "alice"
            people[sender][0].post("/send-message", json={"receiver_id": people[other][1]["id"], "content": text})
        people["carol"][0].post("/send-message", json={"receiver_id": people["alice"][1]["id"], "content": "Lunch?"})
        members = [people[name][1]["id"] for name in ("bob", "carol", "dave")]
        alice = people["alice"][0]
        channel = alice.post("/rooms", json={"name": "releases", "topic": "What ships, when", "member_ids": members})
        alice.post("/rooms", json={"name": "random", "member_ids": members})
        for sender, text in CHANNEL_LINES:
            people[sender][0].post("/send-message", json={"room": channel.json()["room"], "content": text})
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1100, "height": 680})
            page.goto(server.base_url + "/login-page")
            page.screenshot(path=OUT / "sign-in.png")
            page.get_by_label("Email or username").fill("alice")
            page.get_by_label("Password").fill("correct horse battery")
            page.get_by_label("Password").press("Enter")
            page.wait_for_url("**/chat**")
            page.goto(f"{server.base_url}/chat?user_id={people['bob'][1]['id']}")
            expect(page.get_by_text(LINES[-1][1])).to_be_visible()
            page.get_by_label("Message", exact=True).fill("On it ")
            page.screenshot(path=OUT / "conversation.png")
            page.goto(f"{server.base_url}/chat?room={channel.json()['room']}")
            expect(page.get_by_text(CHANNEL_LINES[-1][1])).to_be_visible()
            page.get_by_role("button", name="members").click()
            page.get_by_label("Message", exact=True).press_sequentially("Checking now, @d")
            page.screenshot(path=OUT / "channel.png")
            browser.close()
    finally:
        server.stop()


if __name__ == "__main__":
    main()
