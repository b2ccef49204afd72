"""Changing messages on the pages, in a real browser (Debian's Chromium driven by Playwright) against a real
hypercorn process: edit in place (↑ edits the last one, Esc cancels), delete with confirmation, the reaction
picker and counts that say who reacted, a reply with its quoted preview: live between two people, and after a
reload."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Browser, Page, expect

from testkit.http import PASSWORD
from testkit.servers import Server

from . import test_pages_browser as pages

browser = pages.browser  # one Chromium for the module, as the other page tests launch it

pytestmark = pytest.mark.browser

expect.set_options(timeout=15_000)


@pytest.fixture
def open_page(browser: Browser, server: Server):
    contexts, errors = [], []

    def open_one() -> Page:
        context = browser.new_context(base_url=server.base_url, viewport={"width": 1100, "height": 720})
        contexts.append(context)
        page = context.new_page()
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.on("dialog", lambda dialog: dialog.accept())  # the delete confirmation: yes
        return page

    yield open_one
    for context in contexts:
        context.close()
    assert errors == []


def sign_up(page: Page, name: str) -> None:
    page.goto("/register-page")
    page.get_by_label("Username").fill(name)
    page.get_by_label("Email").fill(f"{name}@example.org")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Create account").click()
    expect(page).to_have_url(re.compile(r"/chat$"))


def open_conversation(page: Page, name: str) -> None:
    page.locator("#people .person", has=page.locator(".person-name", has_text=re.compile(f"^{name}$"))).click()
    expect(page.locator("#peer-name")).to_have_text(name)
    expect(page.locator("#history-status")).not_to_have_text("Loading messages…")


def send(page: Page, text: str) -> None:
    box = page.get_by_label("Message", exact=True)
    box.fill(text)
    box.press("Enter")
    expect(page.locator("#message-list .message.pending")).to_have_count(0)


def message(page: Page, text: str):
    return page.locator("#message-list .message", has=page.locator(".content", has_text=text))


def test_edit_delete_react_and_reply_between_two_people_live_and_after_a_reload(open_page):
    alice, bob = open_page(), open_page()
    sign_up(alice, "alice")
    sign_up(bob, "bob")
    alice.reload()
    open_conversation(alice, "bob")
    open_conversation(bob, "alice")
    send(alice, "helo bob")
    expect(message(bob, "helo bob")).to_have_count(1)

    # ↑ in the empty box edits my last message in place; Esc cancels, Enter saves
    box = alice.get_by_label("Message", exact=True)
    box.press("ArrowUp")
    editor = alice.get_by_label("Edit message")
    editor.fill("never mind")
    editor.press("Escape")
    expect(alice.get_by_label("Edit message")).to_have_count(0)
    expect(message(alice, "helo bob")).to_have_count(1)
    box.press("ArrowUp")
    alice.get_by_label("Edit message").fill("hello bob")
    alice.get_by_label("Edit message").press("Enter")
    expect(message(bob, "hello bob").locator(".edited")).to_have_text("(edited)")

    # bob reacts with the picker; alice sees the count, and who reacted
    original = message(bob, "hello bob")
    original.hover()
    original.get_by_role("button", name="React", exact=True).click()
    original.get_by_role("button", name="React with 👍").click()
    chip = message(alice, "hello bob").locator(".reaction")
    expect(chip).to_have_text("👍 1")
    expect(chip).to_have_attribute("title", "bob")
    chip.click()  # alice adds hers by clicking the count
    expect(message(bob, "hello bob").locator(".reaction")).to_have_text("👍 2")

    # bob replies: the reply shows the quoted message; the quote leads to the original
    original.hover()
    original.get_by_role("button", name="Reply", exact=True).click()
    expect(bob.locator("#reply-bar")).to_contain_text("hello bob")
    send(bob, "hi alice")
    reply = message(alice, "hi alice")
    expect(reply.locator(".reply-quote")).to_have_text("↪ You: hello bob")
    reply.locator(".reply-quote").click()
    expect(message(alice, "hello bob")).to_have_class(re.compile(r"\bfound\b"))

    # alice deletes hers (confirmed): a tombstone on both sides
    target = message(alice, "hello bob")
    target.hover()
    target.get_by_role("button", name="Delete", exact=True).click()
    expect(bob.locator("#message-list .message.deleted .content")).to_have_text("This message was deleted.")
    expect(bob.locator("#message-list .message.deleted .reaction")).to_have_count(0)

    # after a reload, the same: the tombstone, the reply and what it quotes
    for page in (alice, bob):
        page.reload()
        open_conversation(page, "bob" if page is alice else "alice")
        expect(page.locator("#message-list .message.deleted .content")).to_have_text("This message was deleted.")
        expect(message(page, "hi alice").locator(".reply-quote")).to_contain_text("a deleted message")


def test_a_channel_owner_deletes_a_members_message_and_the_member_sees_it_deleted_live(open_page):
    alice, bob = open_page(), open_page()
    sign_up(alice, "alice")
    sign_up(bob, "bob")
    alice.reload()
    asked = []
    alice.on("dialog", lambda dialog: asked.append(dialog.message))  # open_page's handler says yes

    # alice makes a channel with bob in it: she owns it, he is a member
    alice.get_by_role("button", name="New channel").click()
    dialog = alice.get_by_role("dialog", name="New channel")
    dialog.get_by_label("Name").fill("team")
    dialog.get_by_role("checkbox", name="bob", exact=True).check()
    dialog.get_by_role("button", name="Create channel").click()
    expect(alice.locator("#peer-name")).to_have_text("team")
    bob.locator("#channels .person", has=bob.locator(".person-name", has_text=re.compile("^team$"))).click()
    expect(bob.locator("#peer-name")).to_have_text("team")
    expect(bob.locator("#history-status")).to_have_text(re.compile(r"^(?!Loading)."))
    send(bob, "a member's message")
    send(alice, "the owner's message")

    # bob, a member, may delete only his own; alice, the owner, any message of the channel (but edit only hers)
    owners = message(bob, "the owner's message")
    owners.hover()
    expect(owners.get_by_role("button", name="React", exact=True)).to_be_visible()
    expect(owners.get_by_role("button", name="Delete", exact=True)).to_have_count(0)
    expect(message(bob, "a member's message").get_by_role("button", name="Delete", exact=True)).to_have_count(1)
    members = message(alice, "a member's message")
    members.hover()
    expect(members.get_by_role("button", name="Edit", exact=True)).to_have_count(0)
    members.get_by_role("button", name="Delete", exact=True).click()

    # the member sees it deleted live (and the owner too); the owner's own message stays
    for page in (bob, alice):
        expect(page.locator("#message-list .message.deleted .content")).to_have_text("This message was deleted.")
        expect(message(page, "a member's message")).to_have_count(0)
        expect(message(page, "the owner's message")).to_have_count(1)
    assert asked == ["Delete this message for everyone? This cannot be undone."]  # the same confirmation
