"""The pages in a real browser: Debian's Chromium driven by Playwright, against a real hypercorn process.

Two people (two browser contexts, two cookie jars) sign up and chat through the pages exactly as a person
would; every wait is one of Playwright's auto-waiting expectations, never a fixed sleep.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import httpx
import pytest
from playwright.sync_api import Browser, Locator, Page, WebSocketRoute, expect, sync_playwright

from testkit.browser import CHROMIUM, CHROMIUM_ARGS
from testkit.http import PASSWORD, register, signed_in_client
from testkit.servers import Server

XSS = "<img src=x onerror=alert(1)>"

pytestmark = pytest.mark.browser

expect.set_options(timeout=15_000)


@pytest.fixture(scope="module")
def browser():
    """One Chromium for the module; each person gets a fresh context (cookie jar) of it."""
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@dataclass
class Person:
    name: str
    page: Page
    dialogs: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def messages(self) -> Locator:
        return self.page.locator("#message-list .message")

    def contents(self) -> Locator:
        return self.messages.locator(".content")

    def person_link(self, name: str) -> Locator:
        return self.page.locator(
            "#people .person", has=self.page.locator(".person-name", has_text=re.compile(f"^{name}$"))
        )

    def open_conversation(self, name: str) -> None:
        self.person_link(name).click()
        expect(self.page.locator("#peer-name")).to_have_text(name)
        expect(self.page.locator("#history-status")).not_to_have_text("Loading messages…")

    def reload(self) -> None:
        """Reload as a person does once what they typed is sent. With a message still sending the page rightly asks
        before dropping it (beforeunload), the fixture dismisses the question, and the page stays where it is: a
        message's echo can reach the other person's page before its sender's."""
        expect(self.page.locator("#message-list .message.pending")).to_have_count(0)
        self.page.reload()

    def type_and_send(self, text: str) -> None:
        box = self.page.get_by_label("Message", exact=True)
        box.fill(text)
        box.press("Enter")

    def sign_in(self, identifier: str, password: str = PASSWORD) -> None:
        self.page.get_by_label("Email or username").fill(identifier)
        self.page.get_by_label("Password").fill(password)
        self.page.get_by_role("button", name="Sign in").click()


@pytest.fixture
def people(browser: Browser, server: Server):
    """people("alice") -> a Person with a fresh browser context on the test's server."""
    contexts = []

    def open_person(name: str) -> Person:
        context = browser.new_context(base_url=server.base_url, viewport={"width": 1100, "height": 720})
        contexts.append(context)
        person = Person(name, context.new_page())

        def on_dialog(dialog):
            person.dialogs.append(f"{dialog.type}: {dialog.message}")
            dialog.dismiss()

        person.page.on("dialog", on_dialog)
        person.page.on("pageerror", lambda error: person.errors.append(str(error)))
        person.page.on(
            "console",
            lambda message: "Content Security Policy" in message.text and person.errors.append(message.text),
        )
        return person

    yield open_person
    for context in contexts:
        context.close()


def sign_up(person: Person, email: str | None = None) -> None:
    """Create the account through the sign-up form; it signs in and lands on the chat page."""
    page = person.page
    page.goto("/register-page")
    page.get_by_label("Username").fill(person.name)
    page.get_by_label("Email").fill(email or f"{person.name}@example.org")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Create account").click()
    expect(page).to_have_url(re.compile(r"/chat$"))
    expect(page.locator(".whoami")).to_have_text(f"Signed in as {person.name}")


def assert_clean(*persons: Person) -> None:
    for person in persons:
        assert person.dialogs == [], f"{person.name} saw dialogs {person.dialogs}"
        assert person.errors == [], f"{person.name}'s page threw or broke its own policy: {person.errors}"


def assert_conversation(person: Person, expected: list[str]) -> None:
    """Exactly these messages, in this order, each once, all stored (ids ascending) and none still sending."""
    expect(person.contents()).to_have_text(expected)
    ids = [int(value) for value in person.messages.evaluate_all("items => items.map(item => item.dataset.id)")]
    assert ids == sorted(set(ids)) and len(ids) == len(expected)
    expect(person.page.locator("#message-list .message.pending")).to_have_count(0)


# ---------------------------------------------------------------- forms


def test_forms_show_the_servers_errors_next_to_the_right_field(people, server):
    register(httpx.Client(base_url=server.base_url), "bob")
    alice = people("alice")
    sign_up(alice)

    # signing out ends the session; asking for a conversation signs in first, then opens it
    alice.page.get_by_role("button", name="Sign out").click()
    expect(alice.page).to_have_url(re.compile(r"/login-page$"))
    alice.page.goto("/chat?user_id=1")
    expect(alice.page).to_have_url(re.compile(r"/login-page\?next=%2Fchat%3Fuser_id%3D1$"))
    # keyboard only: the first field has focus, Tab moves on, Enter submits
    expect(alice.page.get_by_label("Email or username")).to_be_focused()
    alice.page.keyboard.type("alice@example.org")
    alice.page.keyboard.press("Tab")
    alice.page.keyboard.type(PASSWORD)
    alice.page.keyboard.press("Enter")
    expect(alice.page).to_have_url(re.compile(r"/chat\?user_id=1$"))
    expect(alice.page.locator("#peer-name")).to_have_text("bob")
    expect(alice.page.locator("#history-status")).to_have_text("No messages yet. Say hello to bob!")

    visitor = people("visitor")
    page = visitor.page
    page.goto("/register-page")
    username, email, password = (page.get_by_label(label) for label in ("Username", "Email", "Password"))
    create = page.get_by_role("button", name="Create account")
    create.click()
    expect(page.locator("#username-error")).to_have_text("Choose a username.")

    username.fill("alice")
    email.fill("not an address")
    password.fill("short")
    create.click()
    expect(page.locator("#email-error")).to_contain_text("valid email")
    expect(page.locator("#password-error")).to_contain_text("at least 8")
    expect(password).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#username-error")).to_be_empty()

    email.fill("someone@example.org")
    password.fill(PASSWORD)
    create.click()
    expect(page.locator("#username-error")).to_have_text("This username is taken.")
    expect(page.locator("#password-error")).to_be_empty()

    username.fill("carol")
    email.fill("ALICE@example.org")
    create.click()
    expect(page.locator("#email-error")).to_have_text("This email is already registered.")

    page.get_by_role("link", name="Sign in").click()
    wrong = page.locator("#form-error")
    for attempt in range(5):  # CHAT_LOGIN_ACCOUNT_FAILURES; each submit clears the last answer at once
        visitor.sign_in("bob", f"not the password {attempt}")
        expect(wrong).to_have_text("Wrong email, username or password.")
    visitor.sign_in("bob")  # the right password, but the account is throttled now
    expect(wrong).to_have_text(re.compile(r"^Too many attempts\. Try again in 1[45] minutes\.$"))
    expect(page.get_by_role("button", name="Sign in")).to_be_disabled()
    assert_clean(alice, visitor)


# ---------------------------------------------------------------- chatting


def test_two_people_chat_live(people):
    alice, bob = people("alice"), people("bob")
    sign_up(alice)
    sign_up(bob)
    alice.reload()  # bob exists now
    alice.open_conversation("bob")
    bob.open_conversation("alice")

    # each sees the other online (presence frames on the room's socket)
    expect(alice.page.locator("#peer-status")).to_have_text("online")
    expect(bob.page.locator("#peer-status")).to_have_text("online")
    expect(bob.person_link("alice").locator(".presence-dot")).to_have_class(re.compile(r"\bonline\b"))

    # typing shows on the other side; the message appears there live and turns "sent" here
    alice.page.get_by_label("Message", exact=True).press_sequentially("Hi bob")
    expect(bob.page.locator("#typing")).to_have_text("alice is typing…")
    alice.page.get_by_label("Message", exact=True).press("Enter")
    expect(alice.messages.last).to_have_attribute("data-status", re.compile("sent|seen"))
    expect(bob.contents()).to_have_text(["Hi bob"])
    expect(bob.page.locator("#typing")).to_be_empty()
    # bob has the conversation open: he has read it, and alice sees that
    expect(alice.messages.last).to_have_attribute("data-status", "seen")

    # Shift+Enter is a new line; a blank message is not sent; markup is shown as text
    box = bob.page.get_by_label("Message", exact=True)
    box.press_sequentially("Hello alice")
    box.press("Shift+Enter")
    box.press_sequentially("second line")
    box.press("Enter")
    box.fill("   \n ")
    box.press("Enter")
    expect(box).to_have_value("   \n ")
    box.fill(XSS)
    box.press("Enter")
    expect(alice.contents()).to_have_text(["Hi bob", "Hello alice\nsecond line", XSS])
    expect(alice.page.locator("#message-list img")).to_have_count(0)

    # the limit is shown, and a message over it is not sent
    box.fill("x" * 4001)
    expect(bob.page.locator("#char-count")).to_have_text("4001 / 4000")
    expect(bob.page.locator("#composer-error")).to_contain_text("Too long by 1")
    box.press("Enter")
    expect(box).to_have_value("x" * 4001)
    box.fill("")

    # times are the viewer's local time
    stamp = alice.messages.first.locator("time")
    assert re.fullmatch(r"\d{1,2}:\d{2}( [AP]M)?", stamp.inner_text())

    # a message while alice looks elsewhere waits as unread, and is cleared when she opens the conversation
    alice.page.goto("/chat")
    bob.type_and_send("are you there?")
    expect(bob.messages.last).to_have_attribute("data-status", "sent")
    alice.reload()
    expect(alice.person_link("bob").locator(".badge")).to_have_text("1")
    alice.open_conversation("bob")
    expect(alice.person_link("bob").locator(".badge")).to_be_hidden()
    expect(bob.messages.last).to_have_attribute("data-status", "seen")
    alice.reload()
    expect(alice.contents()).to_have_text(["Hi bob", "Hello alice\nsecond line", XSS, "are you there?"])
    expect(alice.person_link("bob").locator(".badge")).to_be_hidden()

    # reloading keeps the history; closing the page takes alice offline for bob
    bob.reload()
    assert_conversation(bob, ["Hi bob", "Hello alice\nsecond line", XSS, "are you there?"])
    alice.page.close()
    expect(bob.page.locator("#peer-status")).to_have_text("offline")
    assert_clean(alice, bob)


def test_scrolling_up_loads_older_pages(people, server):
    alice_api, alice = signed_in_client(server.base_url, "alice")
    bob_api, bob = signed_in_client(server.base_url, "bob")
    expected = [f"message {n:03}" for n in range(1, 151)]
    for n, text in enumerate(expected):
        sender, receiver = (alice_api, bob) if n % 2 == 0 else (bob_api, alice)
        assert sender.post("/send-message", json={"receiver_id": receiver["id"], "content": text}).status_code == 201

    reader = people("bob")
    reader.page.goto("/login-page")
    reader.sign_in("bob")
    reader.open_conversation("alice")
    expect(reader.contents()).to_have_count(50)
    expect(reader.contents().last).to_have_text("message 150")
    scroller = reader.page.locator("#messages")
    assert scroller.evaluate("el => el.scrollHeight - el.scrollTop - el.clientHeight") < 5  # at the newest

    for shown in (100, 150):
        scroller.evaluate("el => { el.scrollTop = 0 }")
        expect(reader.contents()).to_have_count(shown)
        # the page grew above what was on screen: the view stays where it was instead of jumping to the top
        assert scroller.evaluate("el => el.scrollTop") > 0
    expect(reader.page.locator("#history-status")).to_have_text("This is the start of your conversation with alice.")
    assert_conversation(reader, expected)

    # keyboard only: the message pane takes focus and scrolls with the keys
    scroller.focus()
    reader.page.keyboard.press("End")
    expect(reader.contents().last).to_be_in_viewport()

    # phone width: one pane at a time, nothing wider than the screen
    page = reader.page
    page.set_viewport_size({"width": 375, "height": 740})
    expect(page.locator("#people")).to_be_hidden()
    expect(reader.contents().last).to_be_in_viewport()
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    page.get_by_role("link", name="Back to people").click()
    expect(page.locator("#thread")).to_be_hidden()
    expect(reader.person_link("alice")).to_be_visible()
    reader.person_link("alice").focus()
    page.keyboard.press("Enter")
    expect(page.locator("#peer-name")).to_have_text("alice")
    expect(page.get_by_label("Message", exact=True)).to_be_focused()
    assert_clean(reader)


class Network:
    """A person's network connection, which the test can pull out and plug back in.

    Chromium's offline emulation refuses new connections but leaves open websockets alone, so the page's
    sockets pass through Playwright, which closes them when the network goes.
    """

    def __init__(self, page: Page) -> None:
        self.page = page
        self.sockets: list[tuple[WebSocketRoute, WebSocketRoute]] = []
        page.route_web_socket(re.compile(r"/ws/rooms/"), self._route)

    def _route(self, page_side: WebSocketRoute) -> None:
        self.sockets.append((page_side, page_side.connect_to_server()))

    def unplug(self) -> None:
        self.page.context.set_offline(True)
        while self.sockets:
            page_side, server_side = self.sockets.pop()
            server_side.close()
            page_side.close()

    def plug_in(self) -> None:
        self.page.context.set_offline(False)  # the page hears "online" and reconnects at once


def test_connection_loss_catches_up_with_nothing_missing_or_doubled(people, server):
    alice, bob = people("alice"), people("bob")
    network = Network(alice.page)
    sign_up(bob)
    sign_up(alice)
    alice.open_conversation("bob")
    bob.reload()
    bob.open_conversation("alice")
    expect(bob.page.locator("#peer-status")).to_have_text("online")
    alice.type_and_send("before the cut")
    expect(bob.contents()).to_have_text(["before the cut"])

    # alice's socket drops while bob writes; what alice types meanwhile waits as "sending"
    network.unplug()
    expect(alice.page.locator("#connection")).to_have_text("Reconnecting…")
    for n in range(1, 4):
        bob.type_and_send(f"while alice is away {n}")
    expect(bob.contents()).to_have_count(4)
    alice.type_and_send("written offline")
    expect(alice.messages.last).to_have_attribute("data-status", "sending")
    expect(alice.contents()).to_have_text(["before the cut", "written offline"])

    network.plug_in()  # alice resumes from the last id she saw, and sends what she wrote
    after_cut = ["before the cut", *(f"while alice is away {n}" for n in range(1, 4)), "written offline"]
    expect(alice.page.locator("#connection")).to_be_hidden()
    assert_conversation(alice, after_cut)
    assert_conversation(bob, after_cut)

    # the server restarts: both lose their sockets, both write meanwhile, both catch up
    server.stop()
    expect(alice.page.locator("#connection")).to_have_text("Reconnecting…")
    expect(bob.page.locator("#connection")).to_have_text("Reconnecting…")
    alice.type_and_send("during the restart, from alice")
    bob.type_and_send("during the restart, from bob")
    server.start()
    expect(alice.page.locator("#connection")).to_be_hidden()
    expect(bob.page.locator("#connection")).to_be_hidden()
    expect(alice.contents()).to_have_count(len(after_cut) + 2)
    final = bob.contents().all_inner_texts()
    assert final[: len(after_cut)] == after_cut
    assert sorted(final[len(after_cut) :]) == ["during the restart, from alice", "during the restart, from bob"]
    assert_conversation(alice, final)
    assert_conversation(bob, final)
    alice.reload()
    assert_conversation(alice, final)
    assert_clean(alice, bob)
