"""The HTML pages through Quart's test client: redirects, what they render, and the headers that keep them safe."""

import re
from html.parser import HTMLParser

import pytest

from chat.blueprints.pages import content_security_policy
from testkit.servers import ROOT

STATIC = ROOT / "chat" / "static"


async def test_root_sends_visitors_to_sign_in_and_members_to_chat(client, signup):
    response = await client.get("/")
    assert response.status_code == 302
    assert response.headers["Location"] == "/login-page"

    alice, _ = await signup("alice")
    response = await alice.get("/")
    assert response.status_code == 302
    assert response.headers["Location"] == "/chat"


async def test_chat_without_a_session_goes_to_sign_in_and_remembers_the_conversation(client):
    response = await client.get("/chat?user_id=7")
    assert response.status_code == 302
    assert response.headers["Location"] == "/login-page?next=%2Fchat%3Fuser_id%3D7"

    response = await client.get("/chat")
    assert response.headers["Location"] == "/login-page?next=%2Fchat"


async def test_signed_in_people_skip_the_forms(signup):
    alice, _ = await signup("alice")
    for path in ("/login-page", "/register-page"):
        response = await alice.get(path)
        assert response.status_code == 302
        assert response.headers["Location"] == "/chat"


async def test_chat_page_carries_who_is_signed_in(signup):
    alice, me = await signup("alice")
    response = await alice.get("/chat?user_id=2")
    assert response.status_code == 200
    html = await response.get_data(as_text=True)
    assert f'data-me-id="{me["id"]}"' in html
    assert 'data-me-name="alice"' in html
    assert 'data-max-length="4000"' in html
    assert 'src="/static/js/chat.js"' in html


async def test_after_signing_out_the_chat_page_is_closed(signup):
    alice, _ = await signup("alice")
    assert (await alice.post("/logout")).status_code == 204
    response = await alice.get("/chat")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login-page")


def assert_page_headers(headers, host="localhost"):
    policy = headers["Content-Security-Policy"]
    directives = {part.split()[0]: part.split()[1:] for part in policy.split("; ")}
    assert directives["script-src"] == ["'self'"]
    assert directives["default-src"] == ["'none'"]
    assert directives["frame-ancestors"] == ["'none'"]
    assert directives["connect-src"] == ["'self'", f"ws://{host}", f"wss://{host}"]
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "same-origin"
    assert headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize("path", ["/login-page", "/register-page"])
async def test_forms_render_with_security_headers(client, path):
    response = await client.get(path)
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    assert_page_headers(response.headers)


async def test_chat_page_renders_with_security_headers(signup):
    alice, _ = await signup("alice")
    response = await alice.get("/chat")
    assert response.status_code == 200
    assert_page_headers(response.headers)


async def test_json_answers_carry_no_page_policy(client):
    response = await client.get("/get-users")
    assert response.status_code == 401
    assert "Content-Security-Policy" not in response.headers


def test_a_strange_host_header_cannot_add_directives():
    policy = content_security_policy("evil.example; script-src *")
    assert "evil" not in policy
    assert "connect-src 'self';" in policy
    assert "ws://[::1]:8000" in content_security_policy("[::1]:8000")


class MarkupAudit(HTMLParser):
    """What a script-src 'self' / style-src 'self' policy would block: inline scripts, handlers and styles."""

    def __init__(self):
        super().__init__()
        self.problems = []
        self.labels = set()
        self.fields = []
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        for name in attributes:
            if name.startswith("on") or name == "style":
                self.problems.append(f"<{tag} {name}=...>")
        if tag == "script":
            if "src" not in attributes:
                self.problems.append("inline <script>")
            if attributes.get("type") != "module":
                self.problems.append("<script> that is not a module")
        if tag == "style":
            self.problems.append("inline <style>")
        if tag == "label":
            self.labels.add(attributes.get("for"))
        if tag in ("input", "textarea") and attributes.get("type") != "hidden":
            self.fields.append(attributes.get("id"))


async def test_pages_have_nothing_inline_and_every_field_labelled(client, signup):
    alice, _ = await signup("alice")
    pages = [await client.get("/login-page"), await client.get("/register-page"), await alice.get("/chat")]
    for response in pages:
        audit = MarkupAudit()
        audit.feed(await response.get_data(as_text=True))
        assert audit.problems == []
        assert audit.fields, "a page without fields?"
        assert set(audit.fields) <= audit.labels, f"unlabelled: {set(audit.fields) - audit.labels}"


@pytest.mark.parametrize(
    ("path", "mimetype"), [("/static/js/chat.js", "text/javascript"), ("/static/css/app.css", "text/css")]
)
async def test_static_files_are_served_with_their_types(client, path, mimetype):
    response = await client.get(path)
    assert response.status_code == 200
    # module scripts are refused under nosniff unless the type is a JavaScript one
    assert response.mimetype in ({mimetype, "application/javascript"} if mimetype == "text/javascript" else {mimetype})
    assert response.headers["X-Content-Type-Options"] == "nosniff"


IMPORT = re.compile(r"""^import\s.*?from\s+["'](\./[\w.-]+)["'];?$""", re.MULTILINE)


def test_every_module_import_names_a_shipped_file():
    scripts = sorted((STATIC / "js").glob("*.js"))
    assert scripts
    for script in scripts:
        for target in IMPORT.findall(script.read_text()):
            assert (script.parent / target).is_file(), f"{script.name} imports missing {target}"


def test_no_script_writes_html():
    """User strings go in as text: no script may parse a string as HTML."""
    for script in (STATIC / "js").glob("*.js"):
        source = script.read_text()
        for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "DOMParser"):
            assert sink not in source, f"{script.name} uses {sink}"
