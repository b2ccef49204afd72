"""The admin and account pages in a real Chromium against a real hypercorn process: an admin deactivates a user who
is chatting and that user's page goes to the sign-in page; a person exports their data and deletes their account."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from testkit.http import PASSWORD, login, register
from testkit.servers import Server

from .test_admin import _promote
from .test_pages_browser import browser  # noqa: F401 - the module's one Chromium, a fixture

pytestmark = pytest.mark.browser

expect.set_options(timeout=15_000)


@pytest.fixture
def open_page(browser: Browser, server: Server):  # noqa: F811 - pytest passes the imported fixture
    """open_page(name) -> a page of a fresh browser context signed in as that (existing) account.

    Confirmation dialogs are accepted and recorded; script errors and CSP violations are collected."""
    contexts, problems = [], []

    def signed_in(name: str) -> tuple[Page, list[str]]:
        context = browser.new_context(base_url=server.base_url, viewport={"width": 1100, "height": 720})
        contexts.append(context)
        page = context.new_page()
        dialogs: list[str] = []

        def on_dialog(dialog):
            dialogs.append(dialog.message)
            dialog.accept()

        page.on("dialog", on_dialog)
        page.on("pageerror", lambda error: problems.append(f"{name}: {error}"))
        page.on("console", lambda m: "Content Security Policy" in m.text and problems.append(f"{name}: {m.text}"))
        page.goto("/login-page")
        page.get_by_label("Email or username").fill(name)
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        expect(page).to_have_url(re.compile(r"/chat$"))
        return page, dialogs

    yield signed_in
    for context in contexts:
        context.close()
    assert problems == []


def make_admin(server: Server, name: str) -> None:
    """On the configuration under test (SQLite, or PostgreSQL)."""
    with httpx.Client(base_url=server.base_url) as client:
        login(client, name)
        user_id = client.get("/me").json()["id"]
    _promote(server.workdir, user_id)


def test_an_admin_deactivates_a_user_who_is_chatting(open_page, server):
    for name in ("root", "alice", "bob"):
        register(httpx.Client(base_url=server.base_url), name)
    make_admin(server, "root")
    alice_page, _ = open_page("alice")
    alice_page.locator("#people .person", has_text="bob").click()
    expect(alice_page.locator("#peer-name")).to_have_text("bob")
    expect(alice_page.locator("body")).to_have_attribute("data-connection", "open")

    root_page, dialogs = open_page("root")
    root_page.get_by_role("link", name="Admin").click()
    expect(root_page).to_have_url(re.compile(r"/admin$"))
    alice_row = root_page.locator("#admin-people tr", has_text="alice")
    expect(alice_row.locator("td").nth(3)).to_have_text("active")
    expect(root_page.locator("#admin-people tr", has_text="root").locator("td").nth(2)).to_have_text("admin")
    root_page.get_by_role("button", name="Deactivate alice").click()
    expect(alice_row.locator("td").nth(3)).to_have_text("deactivated")
    assert dialogs and dialogs[0].startswith("Deactivate alice?")

    # alice's page notices at once (her socket closes with 1008) and goes to the sign-in page
    expect(alice_page).to_have_url(re.compile(r"/login-page"))
    alice_page.get_by_label("Email or username").fill("alice")
    alice_page.get_by_label("Password").fill(PASSWORD)
    alice_page.get_by_role("button", name="Sign in").click()
    expect(alice_page.get_by_text("deactivated by an administrator")).to_be_visible()

    root_page.get_by_role("button", name="Reactivate alice").click()
    expect(alice_row.locator("td").nth(3)).to_have_text("active")
    with httpx.Client(base_url=server.base_url) as client:
        login(client, "alice")


def test_an_admin_takes_over_and_archives_a_private_channel_from_the_admin_page(open_page, server):
    for name in ("chief", "frank", "grace"):
        register(httpx.Client(base_url=server.base_url), name)
    make_admin(server, "chief")
    with httpx.Client(base_url=server.base_url) as frank:
        login(frank, "frank")
        grace_id = next(u["id"] for u in frank.get("/get-users").json()["users"] if u["username"] == "grace")
        room = frank.post("/rooms", json={"name": "backroom", "private": True, "member_ids": [grace_id]}).json()["room"]
    page, dialogs = open_page("chief")
    page.goto("/admin")
    row = page.locator("#admin-channels tr", has_text="backroom")
    expect(row.locator("td").nth(1)).to_have_text("private")
    expect(row.locator("td").nth(4)).to_have_text("")
    page.get_by_role("button", name="Take over backroom").click()
    expect(row.locator("td").nth(4)).to_have_text("owner")
    expect(row.locator("td").nth(2)).to_have_text("3")
    page.get_by_role("button", name="Archive backroom").click()
    expect(row.locator("td").nth(3)).to_have_text("archived")
    assert dialogs == ["Archive backroom? It becomes read-only for everyone in it, and cannot be undone."]
    with httpx.Client(base_url=server.base_url) as grace:
        login(grace, "grace")
        refused = grace.post("/send-message", json={"room": room, "content": "still open?"})
        assert refused.status_code == 409 and refused.json()["error"] == "room_archived"
    page.get_by_role("link", name="Open backroom").click()
    expect(page).to_have_url(re.compile(rf"/chat\?room={room}$"))


def test_a_member_sees_no_admin_page(open_page, server):
    register(httpx.Client(base_url=server.base_url), "carol")
    page, _ = open_page("carol")
    expect(page.get_by_role("link", name="Admin")).to_have_count(0)
    response = page.goto("/admin")
    assert response.status == 403
    expect(page.get_by_text("not an administrator")).to_be_visible()


def test_a_person_exports_their_data_and_deletes_their_account(open_page, server):
    dave = register(httpx.Client(base_url=server.base_url), "dave")
    erin = register(httpx.Client(base_url=server.base_url), "erin")
    with httpx.Client(base_url=server.base_url) as client:
        login(client, "dave")
        assert client.post("/send-message", json={"receiver_id": erin["id"], "content": "hi erin"}).status_code == 201
    page, _ = open_page("dave")
    page.get_by_role("link", name="dave").click()
    expect(page).to_have_url(re.compile(r"/account$"))

    with page.expect_download() as download:
        page.get_by_role("link", name="Download my data").click()
    exported = json.loads(Path(download.value.path()).read_text(encoding="utf-8"))
    assert exported["users"][0]["id"] == dave["id"]
    assert [m["content"] for m in exported["messages"]] == ["hi erin"]

    page.get_by_label("Your password").fill("not my password")
    page.get_by_label("I want to delete my account").check()
    page.get_by_role("button", name="Delete my account").click()
    expect(page.get_by_text("That password is wrong.")).to_be_visible()
    page.get_by_label("Your password").fill(PASSWORD)
    page.get_by_role("button", name="Delete my account").click()
    expect(page).to_have_url(re.compile(r"/login-page$"))
    with httpx.Client(base_url=server.base_url) as client:
        assert client.post("/login", json={"username": "dave", "password": PASSWORD}).status_code == 401


def test_a_person_changes_their_password_from_the_account_page(open_page, server):
    register(httpx.Client(base_url=server.base_url), "hank")
    other_device = httpx.Client(base_url=server.base_url)
    login(other_device, "hank")
    page, _ = open_page("hank")
    page.get_by_role("link", name="hank").click()
    expect(page).to_have_url(re.compile(r"/account$"))
    form = page.locator("#change-password")
    new_password = "a new one, with spaces ✓"

    form.get_by_label("Current password").fill("not my password")
    form.get_by_label("New password", exact=True).fill(new_password)
    form.get_by_label("New password, again").fill(new_password)
    form.get_by_role("button", name="Change password").click()
    expect(page.locator("#current_password-error")).to_have_text("That password is wrong.")

    form.get_by_label("Current password").fill(PASSWORD)
    form.get_by_label("New password, again").fill(new_password + "x")
    form.get_by_role("button", name="Change password").click()
    expect(page.locator("#new_password_again-error")).to_have_text("The two new passwords are not the same.")

    form.get_by_label("New password", exact=True).fill("short")
    form.get_by_label("New password, again").fill("short")
    form.get_by_role("button", name="Change password").click()
    expect(page.locator("#new_password-error")).not_to_be_empty()  # the server's rule, beside the field

    form.get_by_label("New password", exact=True).fill(new_password)
    form.get_by_label("New password, again").fill(new_password)
    form.get_by_role("button", name="Change password").click()
    expect(page.locator("#password-changed")).to_have_text(
        "Your password is changed. Your other sessions are signed out."
    )
    expect(form.get_by_label("Current password")).to_have_value("")
    assert other_device.get("/me").status_code == 401  # the other session ended
    assert page.request.get("/me").status == 200  # this one stays
    with httpx.Client(base_url=server.base_url) as client:
        assert client.post("/login", json={"username": "hank", "password": PASSWORD}).status_code == 401
        login(client, "hank", new_password)
    other_device.close()
