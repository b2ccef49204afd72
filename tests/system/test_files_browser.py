"""Files on the pages, in a real browser (Debian's Chromium driven by Playwright) against a real hypercorn process:
an image pasted into the message box reaches the other person live as a preview (its thumbnail, a link to the
full size); a PDF attached with the attach button is a chip with its name and size, and downloads."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect

from testkit.files import pdf, png
from testkit.servers import Server

from . import test_message_changes_browser as changes_pages
from . import test_pages_browser as pages

browser = pages.browser  # one Chromium for the module, as the other page tests launch it
open_page = changes_pages.open_page
sign_up, open_conversation = changes_pages.sign_up, changes_pages.open_conversation

pytestmark = pytest.mark.browser

expect.set_options(timeout=15_000)


@pytest.fixture
def server(tmp_path):
    """conftest's server, given longer to start (the shared machine is slow at times)."""
    srv = Server(workdir=tmp_path).start(timeout=90)
    yield srv
    srv.stop()
    assert "Traceback" not in srv.log(), srv.log()


PASTE = """([data, name, type]) => {
  const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
  const transfer = new DataTransfer();
  transfer.items.add(new File([bytes], name, { type }));
  const box = document.getElementById("message-input");
  box.focus();
  box.dispatchEvent(new ClipboardEvent("paste", { clipboardData: transfer, bubbles: true, cancelable: true }));
}"""


def test_a_pasted_image_is_seen_live_and_a_pdf_downloads(open_page, browser: Browser, server: Server, tmp_path):
    alice, bob = open_page(), open_page()
    sign_up(alice, "alice")
    sign_up(bob, "bob")
    alice.reload()
    open_conversation(alice, "bob")
    open_conversation(bob, "alice")

    alice.evaluate(PASTE, [base64.b64encode(png(400, 200)).decode(), "image.png", "image/png"])
    expect(alice.locator("#attachments .attachment.uploaded")).to_have_count(1)
    alice.get_by_label("Message", exact=True).press("Enter")  # empty content: the image is the message
    preview = bob.locator("#message-list .message .file-preview img")
    expect(preview).to_have_count(1)
    expect(preview).to_have_attribute("alt", "image.png")
    assert preview.evaluate("(image) => image.complete && image.naturalWidth") == 320  # the thumbnail loaded
    link = bob.locator("#message-list .message .file-preview")
    assert link.get_attribute("href").endswith("/image.png")
    expect(alice.locator("#attachments .attachment")).to_have_count(0)

    document = tmp_path / "Plan 2026.pdf"
    document.write_bytes(pdf())
    alice.locator("#file-input").set_input_files(str(document))
    expect(alice.locator("#attachments .attachment.uploaded")).to_have_count(1)
    box = alice.get_by_label("Message", exact=True)
    box.fill("the plan")
    box.press("Enter")
    chip = bob.locator("#message-list .message .file-chip")
    expect(chip).to_have_count(1)
    expect(chip.locator(".file-name")).to_have_text("Plan 2026.pdf")
    expect(chip.locator(".file-size")).to_have_text(f"{len(pdf())} B")
    with bob.expect_download() as download_info:
        chip.click()
    download = download_info.value
    assert download.suggested_filename == "Plan 2026.pdf"
    assert Path(download.path()).read_bytes() == pdf()
