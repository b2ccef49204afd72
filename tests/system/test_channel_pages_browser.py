"""Channels in the pages, in a real browser (Debian's Chromium driven by Playwright) against a real hypercorn.

Two or three people, each in their own browser context, create, join, leave and talk in channels exactly as a
person would; the sidebar follows live through GET /ws/me (no reload), and every wait is one of Playwright's
auto-waiting expectations.
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Locator, Page, expect

from testkit.backends import BACKEND
from testkit.servers import Server

from . import test_pages_browser as pages
from .test_pages_browser import Person, assert_clean, sign_up

# the same Chromium and the same people as the direct-message pages' tests
browser = pages.browser
people = pages.people

pytestmark = pytest.mark.browser


@pytest.fixture
def server(tmp_path):
    """A real hypercorn; on PostgreSQL + Redis two workers, so that the people's sockets land on different ones."""
    srv = Server(workdir=tmp_path, workers=2 if BACKEND == "postgres" else 1).start()
    yield srv
    srv.stop()
    assert "Traceback" not in srv.log(), srv.log()


expect.set_options(timeout=15_000)


def channel_link(person: Person, name: str) -> Locator:
    return person.page.locator(
        "#channels .person", has=person.page.locator(".person-name", has_text=re.compile(f"^{re.escape(name)}$"))
    )


def message_box(page: Page) -> Locator:
    return page.get_by_label("Message", exact=True)


def create_channel(person: Person, name: str, *, topic: str = "", private: bool = False, members=()) -> None:
    page = person.page
    page.get_by_role("button", name="New channel").click()
    dialog = page.get_by_role("dialog", name="New channel")
    dialog.get_by_label("Name").fill(name)
    if topic:
        dialog.get_by_label("Topic").fill(topic)
    if private:
        dialog.get_by_role("checkbox", name=re.compile("^Private")).check()
    for member in members:
        dialog.get_by_role("checkbox", name=member, exact=True).check()
    dialog.get_by_role("button", name="Create channel").click()
    expect(dialog).to_be_hidden()
    expect(page.locator("#peer-name")).to_have_text(name)
    expect(page).to_have_url(re.compile(r"/chat\?room=ch-\d+$"))
    expect(page.locator("#history-status")).to_have_text(f"No messages in #{name} yet. Say hello!")


def open_channel(person: Person, name: str) -> None:
    channel_link(person, name).click()
    expect(person.page.locator("#peer-name")).to_have_text(name)
    expect(person.page.locator("#history-status")).to_have_text(re.compile(r"^(?!Loading)."))  # loaded


def open_panel(person: Person) -> Locator:
    person.page.locator("#members-toggle").click()
    panel = person.page.get_by_role("complementary", name=re.compile("^About #"))
    expect(panel).to_be_visible()
    return panel


def member_row(person: Person, name: str) -> Locator:
    return person.page.locator(
        "#member-list .member", has=person.page.locator(".member-name", has_text=re.compile(f"^{name}( \\(you\\))?$"))
    )


def test_a_channel_created_with_someone_appears_live_and_its_messages_raise_their_badges(people):
    bob, alice = people("bob"), people("alice")
    sign_up(bob)
    sign_up(alice)  # alice's list holds bob; bob's learns of alice from her presence
    expect(bob.person_link("alice")).to_be_visible()
    bob.open_conversation("alice")  # bob looks at another room the whole time

    create_channel(alice, "general", topic="Everything and nothing", members=["bob"])
    expect(alice.page.locator("#room-topic")).to_have_text("Everything and nothing")
    expect(alice.page.locator("#member-count")).to_have_text("2 members")
    expect(alice.page).to_have_title("#general · chat")
    # bob's sidebar shows it at once, without a reload
    expect(channel_link(bob, "general")).to_be_visible()
    expect(channel_link(bob, "general").locator(".badge")).to_be_hidden()

    # @ offers the members; the keyboard picks one and inserts the name as text
    box = message_box(alice.page)
    box.press_sequentially("hello @b")
    options = alice.page.get_by_role("listbox", name="People to mention").get_by_role("option")
    expect(options).to_have_text(["@bob"])
    expect(options.first).to_have_attribute("aria-selected", "true")
    box.press("Enter")  # Enter picks the name, it does not send
    expect(box).to_have_value("hello @bob ")
    expect(options).to_have_count(0)
    box.press_sequentially("look <b>here</b>")
    box.press("Enter")
    expect(alice.messages.last).to_have_attribute("data-status", re.compile("sent|seen"))

    # bob, on another room: unread and mention badges, and the count in the tab's title
    link = channel_link(bob, "general")
    expect(link.locator(".badge")).to_have_text("1")
    expect(link.locator(".mention-badge")).to_have_text("@1")
    expect(link).to_contain_text("1 unread, 1 mention")
    expect(bob.page).to_have_title("(1) alice · chat")
    alice.type_and_send("and a second one, without a mention")
    expect(link.locator(".badge")).to_have_text("2")
    expect(link.locator(".mention-badge")).to_have_text("@1")
    # the badges are the server's counts
    (general,) = bob.page.request.get("/rooms").json()["rooms"]
    assert (general["name"], general["unread"], general["mentions"]) == ("general", 2, 1)

    # opening it: each message says who sent it, the one that mentions bob stands out, the badges go
    open_channel(bob, "general")
    expect(bob.contents()).to_have_text(["hello @bob look <b>here</b>", "and a second one, without a mention"])
    expect(bob.messages.locator(".sender")).to_have_text(["alice", "alice"])
    expect(bob.messages.first).to_have_class(re.compile(r"\bmentions-me\b"))
    expect(bob.messages.first.locator("mark.mention")).to_have_text("@bob")
    expect(bob.messages.nth(1)).not_to_have_class(re.compile(r"\bmentions-me\b"))
    expect(bob.page.locator("#message-list b")).to_have_count(0)
    expect(link.locator(".badge")).to_be_hidden()
    expect(link.locator(".mention-badge")).to_be_hidden()
    expect(bob.page).to_have_title("#general · chat")

    # both in the channel: live both ways, typing included; alice's messages turn "seen" when bob has read them
    expect(alice.messages.last).to_have_attribute("data-status", "seen")
    message_box(bob.page).press_sequentially("hi alice")
    expect(alice.page.locator("#typing")).to_have_text("bob is typing…")
    message_box(bob.page).press("Enter")
    expect(alice.contents().last).to_have_text("hi alice")
    expect(alice.messages.last.locator(".sender")).to_have_text("bob")

    # a reload opens the same channel from its address
    bob.reload()
    expect(bob.page.locator("#peer-name")).to_have_text("general")
    expect(bob.contents()).to_have_count(3)
    assert_clean(alice, bob)


class ActivityNetwork(pages.Network):
    """The network under a person's activity stream (GET /ws/me) only, which the test pulls out and plugs back."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.sockets = []
        page.route_web_socket(re.compile(r"/ws/me"), self._route)


def test_three_people_chat_live_and_a_reconnected_sidebar_takes_the_snapshot_as_the_truth(people):
    bob, carol, alice = people("bob"), people("carol"), people("alice")
    network = ActivityNetwork(bob.page)
    sign_up(bob)
    sign_up(carol)
    sign_up(alice)
    expect(bob.person_link("alice")).to_be_visible()
    bob.open_conversation("carol")
    create_channel(alice, "team", members=["bob", "carol"])
    expect(alice.page.locator("#member-count")).to_have_text("3 members")
    # the @-list by keyboard: arrows move, Tab takes, Esc closes and leaves the text as typed
    box = message_box(alice.page)
    box.press_sequentially("@")
    options = alice.page.get_by_role("listbox", name="People to mention").get_by_role("option")
    expect(options).to_have_text(["@bob", "@carol"])
    box.press("ArrowDown")
    expect(options.nth(1)).to_have_attribute("aria-selected", "true")
    box.press("Tab")
    expect(box).to_have_value("@carol ")
    expect(box).to_be_focused()
    box.press_sequentially("@b")
    expect(options).to_have_text(["@bob"])
    box.press("Escape")
    expect(options).to_have_count(0)
    expect(box).to_have_value("@carol @b")
    box.fill("")
    open_channel(carol, "team")
    expect(channel_link(bob, "team")).to_be_visible()

    # bob's activity stream drops; alice and carol talk meanwhile, live for each other
    network.unplug()
    alice.type_and_send("@bob standup in 5")
    carol.type_and_send("coming")
    expect(carol.contents()).to_have_text(["@bob standup in 5", "coming"])
    expect(alice.contents()).to_have_text(["@bob standup in 5", "coming"])
    expect(alice.messages.locator(".sender")).to_have_text(["carol"])  # alice's own message needs no name
    expect(channel_link(bob, "team").locator(".badge")).to_be_hidden()  # nothing reached bob's sidebar

    # back online: the new snapshot is the truth
    network.plug_in()
    expect(channel_link(bob, "team").locator(".badge")).to_have_text("2")
    expect(channel_link(bob, "team").locator(".mention-badge")).to_have_text("@1")
    open_channel(bob, "team")
    bob.type_and_send("on my way")
    for person in (alice, carol, bob):
        expect(person.contents()).to_have_text(["@bob standup in 5", "coming", "on my way"])
    expect(channel_link(bob, "team").locator(".badge")).to_be_hidden()
    assert_clean(alice, bob, carol)


def test_browsing_joining_and_leaving_public_channels(people):
    alice, bob = people("alice"), people("bob")
    sign_up(alice)
    sign_up(bob)
    create_channel(alice, "random", topic="Off topic")
    panel = open_panel(alice)
    expect(member_row(alice, "alice").locator(".role")).to_have_text("owner")
    expect(panel.get_by_label("Topic")).to_have_value("Off topic")

    # bob finds it among the public channels and joins it; alice's members panel follows live
    bob.page.get_by_role("button", name="Browse public channels").click()
    dialog = bob.page.get_by_role("dialog", name="Public channels")
    expect(dialog.get_by_role("listitem")).to_have_count(1)
    expect(dialog).to_contain_text("Off topic · 1 member")
    dialog.get_by_role("button", name="Join #random").click()
    expect(bob.page.locator("#peer-name")).to_have_text("random")
    expect(channel_link(bob, "random")).to_be_visible()
    expect(member_row(alice, "bob")).to_be_visible()
    expect(alice.page.locator("#member-count")).to_have_text("2 members")

    # the only owner cannot leave: the page says why and what to do
    panel.get_by_role("button", name="Leave channel").click()
    expect(alice.page.locator("#panel-error")).to_contain_text("last owner")
    expect(channel_link(alice, "random")).to_be_visible()

    # the owner renames it and sets the topic: everyone's header and sidebar follow
    panel.get_by_label("Name").fill("watercooler")
    panel.get_by_label("Topic").fill("Say anything")
    panel.get_by_role("button", name="Save").click()
    expect(bob.page.locator("#peer-name")).to_have_text("watercooler")
    expect(bob.page.locator("#room-topic")).to_have_text("Say anything")
    expect(channel_link(bob, "watercooler")).to_be_visible()

    # after handing over to bob, alice can leave; the channel leaves her sidebar
    panel.get_by_role("button", name="Make bob an owner").click()
    expect(member_row(alice, "bob").locator(".role")).to_have_text("owner")
    panel.get_by_role("button", name="Leave channel").click()
    expect(alice.page.locator("#no-conversation")).to_contain_text("You left the channel.")
    expect(channel_link(alice, "watercooler")).to_have_count(0)
    expect(bob.page.locator("#member-count")).to_have_text("1 member")
    assert_clean(alice, bob)


def test_a_removed_member_is_told_and_an_archived_channel_is_read_only(people):
    bob, carol, alice = people("bob"), people("carol"), people("alice")
    sign_up(bob)
    sign_up(carol)
    sign_up(alice)
    create_channel(alice, "ops", private=True, members=["bob"])
    channel_address = alice.page.url
    opened = []  # bob's sockets on the channel
    bob.page.on("websocket", lambda socket: "/ws/rooms/ch-" in socket.url and opened.append(socket.url))
    open_channel(bob, "ops")
    alice.type_and_send("deploy at noon")
    expect(bob.contents()).to_have_text(["deploy at noon"])

    # a private channel is not offered to others, and its address tells them nothing
    carol.page.goto(channel_address)
    expect(carol.page.locator("#no-conversation")).to_contain_text("no such channel")
    expect(carol.page.locator("#thread")).to_be_hidden()

    # alice removes bob: his socket closes with 4403, he is told, and it does not reconnect
    panel = open_panel(alice)
    panel.get_by_role("button", name="Remove bob from the channel").click()
    expect(member_row(alice, "bob")).to_have_count(0)
    note = bob.page.locator("#composer-note")
    expect(note).to_have_text("You are no longer a member of this channel.")
    expect(message_box(bob.page)).to_be_disabled()
    expect(bob.page.locator("#connection")).to_be_hidden()
    expect(channel_link(bob, "ops")).to_have_count(0)
    expect(bob.contents()).to_have_text(["deploy at noon"])  # what he saw stays on screen
    # proving that no reconnect comes takes a wait: three times the first backoff delay (at most 500 ms)
    bob.page.wait_for_timeout(1_500)
    assert len(opened) == 1, opened

    # archiving asks first, then makes the channel read-only
    panel.get_by_role("button", name="Archive channel").click()
    confirm = alice.page.get_by_role("dialog", name="Archive #ops?")
    confirm.get_by_role("button", name="Cancel").click()
    expect(message_box(alice.page)).to_be_enabled()
    panel.get_by_role("button", name="Archive channel").click()
    confirm.get_by_role("button", name="Archive channel").click()
    expect(alice.page.locator("#composer-note")).to_have_text("This channel is archived: it is read-only.")
    expect(message_box(alice.page)).to_be_disabled()

    # phone width: the panel covers the screen, nothing is wider than it
    page = alice.page
    page.set_viewport_size({"width": 375, "height": 740})
    expect(page.locator("#people")).to_be_hidden()
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    assert_clean(alice, bob, carol)


# Observes the page's notifications (the real Notification API still shows them) and lets the test hide the tab.
WATCH_NOTIFICATIONS = """
window.shown = [];
window.tabHidden = false;
const Real = window.Notification;
window.Notification = class extends Real {
  constructor(title, options) { super(title, options); window.shown.push(title); }
};
Object.defineProperty(document, "visibilityState", { get: () => (window.tabHidden ? "hidden" : "visible") });
"""


def test_mentions_and_direct_messages_notify_while_the_tab_is_hidden(people, browser, server):
    bob, alice = people("bob"), people("alice")
    sign_up(bob)
    sign_up(alice)
    expect(bob.page.get_by_role("button", name="Notify me of mentions and direct messages")).to_be_visible()
    bob.page.context.grant_permissions(["notifications"], origin=server.base_url)
    bob.page.add_init_script(WATCH_NOTIFICATIONS)
    bob.reload()
    expect(bob.person_link("alice")).to_be_visible()
    # permission given: nothing more to offer
    expect(bob.page.get_by_role("button", name="Notify me of mentions and direct messages")).to_be_hidden()
    create_channel(alice, "general", members=["bob"])
    expect(channel_link(bob, "general")).to_be_visible()

    bob.page.evaluate("window.tabHidden = true")
    alice.type_and_send("no mention here")
    expect(channel_link(bob, "general").locator(".badge")).to_have_text("1")
    alice.type_and_send("@bob the build is red")
    expect(channel_link(bob, "general").locator(".mention-badge")).to_have_text("@1")
    alice.open_conversation("bob")
    alice.type_and_send("ping")
    expect(bob.person_link("alice").locator(".badge")).to_have_text("1")
    assert bob.page.evaluate("window.shown") == ["You were mentioned in #general", "New message from alice"]

    # on screen, nothing pops up
    bob.page.evaluate("window.tabHidden = false")
    alice.type_and_send("pong")
    expect(bob.person_link("alice").locator(".badge")).to_have_text("2")
    assert bob.page.evaluate("window.shown") == ["You were mentioned in #general", "New message from alice"]
    assert_clean(alice, bob)
