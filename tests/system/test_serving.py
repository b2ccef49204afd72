"""Production shape: hypercorn started with the SHIPPED hypercorn.toml (only its ports moved to free ones, and the
documented opt-in flags added), on certificates made by `chat certs`: TLS, HTTP/2, HTTP/1.1, HTTP/3, the plain-HTTP
redirect, HSTS, client certificates, and a real Chromium that trusts the generated authority."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import ssl
import subprocess
import threading
import tomllib
import uuid
from contextlib import asynccontextmanager, closing
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from hypercorn.config import Config
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import InvalidStatus

from chat import SESSION_COOKIE, cli
from chat.tls import https_url
from testkit.browser import CHROMIUM, CHROMIUM_ARGS
from testkit.http import signed_in_client
from testkit.servers import ROOT, Server, free_port
from testkit.tls import H2Client, WebSocketRefused, client_context, h3_client

SHIPPED_CONFIG = ROOT / "hypercorn.toml"
ONE_YEAR = 365 * 24 * 3600
# `make serve CLIENT_CERTS=1` adds these (a test below checks that the Makefile still does)
CLIENT_CERT_FLAGS = ("--ca-certs", "certs/ca.crt", "--verify-mode", "CERT_REQUIRED")


@dataclass
class Deployment:
    """A hypercorn process started from the shipped configuration, and what a client needs to reach it."""

    server: Server
    certs: Path
    plain_port: int

    @property
    def base_url(self) -> str:
        return self.server.base_url

    @property
    def plain_url(self) -> str:
        return f"http://127.0.0.1:{self.plain_port}"

    def context(self, client_cert: bool = False) -> ssl.SSLContext:
        return client_context(self.certs, client_cert)

    def client(self, http2: bool = True, client_cert: bool = False) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, http2=http2, verify=self.context(client_cert), timeout=30)

    def sign_up(self, prefix: str, http2: bool = True, client_cert: bool = False) -> tuple[httpx.Client, dict]:
        return signed_in_client(
            self.base_url, unique(prefix), http2=http2, verify=self.context(client_cert), trust_env=False
        )


def unique(prefix: str) -> str:
    """A fresh username: the servers below live for a whole module."""
    return f"{prefix}{uuid.uuid4().hex[:10]}"


def generate_certs(workdir: Path) -> Path:
    """`chat certs --dir`, as `make certs` runs it, into the folder hypercorn will run in."""
    assert cli.main(["certs", "--dir", str(workdir / "certs")]) == 0
    return workdir / "certs"


def deploy(workdir: Path, *flags: str, client_cert: bool = False) -> Deployment:
    """hypercorn --config hypercorn.toml with its binds moved to free ports on 127.0.0.1.

    It runs in `workdir`, so the configuration's relative certs/server.crt and certs/server.key are the ones
    generated there. The database is this folder's SQLite file whatever backend the suite runs on: this module's
    servers outlive single tests, and what is tested here is the transport.
    """
    certs = generate_certs(workdir)
    port, plain_port = free_port(), free_port()
    flags = tuple(flag.replace("{port}", str(port)) for flag in flags)
    server = Server(
        workdir=workdir,
        cwd=workdir,
        port=port,
        tls=client_context(certs, client_cert),
        extra_args=["--config", str(SHIPPED_CONFIG), "--insecure-bind", f"127.0.0.1:{plain_port}", *flags],
        env={
            "CHAT_HTTPS_PORT": str(port),
            "CHAT_COOKIE_SECURE": "true",
            "CHAT_DATABASE_URL": f"sqlite://{workdir / 'chat.sqlite3'}",
            "CHAT_BROKER_URL": "memory://",
        },
    )
    return Deployment(server.start(), certs, plain_port)


def shut_down(deployment: Deployment) -> None:
    deployment.server.stop()
    log = deployment.server.log()
    assert "Traceback" not in log, log


def shut_down_quic(deployment: Deployment) -> None:
    """hypercorn 0.18's QUIC server looks at its shutdown flag only when a datagram arrives (udp_server.run), so a
    stop waits out the whole graceful_timeout; datagrams while it stops let it see the flag at once."""
    stopping = threading.Thread(target=shut_down, args=(deployment,))
    stopping.start()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as nudge:
        while stopping.is_alive():
            nudge.sendto(b"\0", ("127.0.0.1", deployment.server.port))  # not a QUIC packet: dropped unanswered
            stopping.join(0.05)


@pytest.fixture(scope="module")
def tls(tmp_path_factory):
    """The shipped configuration, as `make serve` runs it."""
    deployment = deploy(tmp_path_factory.mktemp("tls"))
    yield deployment
    shut_down(deployment)


@pytest.fixture(scope="module")
def h3(tmp_path_factory):
    """The shipped configuration with the HTTP/3 opt-in (`make serve HTTP3=1`'s --quic-bind)."""
    deployment = deploy(tmp_path_factory.mktemp("h3"), "--quic-bind", "127.0.0.1:{port}")
    yield deployment
    shut_down_quic(deployment)


@pytest.fixture(scope="module")
def mtls(tmp_path_factory):
    """The shipped configuration with client certificates required (`make serve CLIENT_CERTS=1`'s flags)."""
    deployment = deploy(tmp_path_factory.mktemp("mtls"), *CLIENT_CERT_FLAGS, client_cert=True)
    yield deployment
    shut_down(deployment)


# ---------------------------------------------------------------- the shipped configuration


def test_every_key_of_the_shipped_config_is_a_hypercorn_setting_that_takes(tmp_path, monkeypatch):
    raw = tomllib.loads(SHIPPED_CONFIG.read_text())
    config = Config.from_toml(SHIPPED_CONFIG)
    for key, value in raw.items():
        assert hasattr(Config, key), f"hypercorn.toml: {key!r} is not a hypercorn setting (hypercorn ignores it)"
        assert getattr(config, key) == value, key
    assert config.bind == ["0.0.0.0:8443"]
    assert config.insecure_bind == ["0.0.0.0:8080"]
    assert (config.certfile, config.keyfile) == ("certs/server.crt", "certs/server.key")
    assert config.alpn_protocols == ["h2", "http/1.1"]
    assert config.ssl_enabled
    assert config.workers == 1
    assert config.worker_class == "uvloop"  # the event loop `make bench` measures with
    assert config.graceful_timeout == 10
    assert config.keep_alive_timeout == 30
    assert config.h11_max_incomplete_size == config.h2_max_header_list_size == 16 * 1024
    assert config.accesslog == "-"
    assert config.include_server_header is False
    # the largest frame the contract allows (4000 characters, each escaped to 6 bytes) fits in one websocket message
    largest = {"type": "message", "content": "\x01" * 4000, "client_id": "c" * 64}
    assert len(json.dumps(largest).encode()) < config.websocket_max_message_size <= 64 * 1024
    # and the TLS context it describes builds from `chat certs`' files
    generate_certs(tmp_path)
    monkeypatch.chdir(tmp_path)
    context = config.create_ssl_context()
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert context.verify_mode == ssl.CERT_NONE  # server-only TLS unless the client-certificate switch is on


def make_serve_dry_run(*variables: str) -> subprocess.CompletedProcess:
    """`make serve` as the Makefile would run it (-n), without installing or making certificates first."""
    command = ["make", "--no-print-directory", "-n", "-o", "install", "-o", "certs/server.crt", "serve", *variables]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True)


def test_make_serve_runs_the_shipped_config_with_the_switches_these_tests_use():
    port = Config.from_toml(SHIPPED_CONFIG).bind[0].rsplit(":", 1)[1]
    plain = make_serve_dry_run().stdout
    # the redirect target follows hypercorn.toml's bind
    assert f"CHAT_HTTPS_PORT={port} .venv/bin/hypercorn --config hypercorn.toml" in plain
    assert plain.rstrip().endswith('"chat:create_app()"')
    assert " ".join(CLIENT_CERT_FLAGS) in make_serve_dry_run("CLIENT_CERTS=1").stdout
    assert f"--quic-bind 0.0.0.0:{port}" in make_serve_dry_run("HTTP3=1").stdout
    both = subprocess.run(
        ["make", "-o", "install", "-o", "certs/server.crt", "serve", "CLIENT_CERTS=1", "HTTP3=1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert both.returncode != 0 and "exclude each other" in both.stderr


def test_make_run_serves_with_the_worker_class_of_the_bench_and_the_shipped_config():
    command = ["make", "--no-print-directory", "-n", "-o", "install", "run"]
    run = subprocess.run(command, cwd=ROOT, capture_output=True, text=True).stdout
    assert "--worker-class uvloop" in run
    assert Config.from_toml(SHIPPED_CONFIG).worker_class == "uvloop"


@pytest.mark.parametrize(
    ("url", "port", "expected"),
    [
        ("http://chat.example.org/login-page", 443, "https://chat.example.org/login-page"),
        ("http://chat.example.org:8080/get-messages?user_id=2&after=9", 8443, None),
        ("http://[::1]:8080/healthz", 8443, "https://[::1]:8443/healthz"),
        ("http://127.0.0.1:8080/a%20b", 8443, "https://127.0.0.1:8443/a%20b"),
    ],
)
def test_https_url_keeps_host_path_and_query(url, port, expected):
    expected = expected or "https://chat.example.org:8443/get-messages?user_id=2&after=9"
    assert https_url(url, port) == expected


# ---------------------------------------------------------------- HTTPS, HTTP/2, HTTP/1.1


def test_http2_with_the_generated_authority_register_login_send_get(tls):
    versions: list[str] = []
    hooks = {"response": [lambda response: versions.append(response.http_version)]}
    alice, a = signed_in_client(
        tls.base_url, unique("alice"), http2=True, verify=tls.context(), event_hooks=hooks, trust_env=False
    )
    bob, b = signed_in_client(
        tls.base_url, unique("bob"), http2=True, verify=tls.context(), event_hooks=hooks, trust_env=False
    )
    with closing(alice), closing(bob):
        sent = alice.post("/send-message", json={"receiver_id": b["id"], "content": "over h2"})
        assert sent.status_code == 201, sent.text
        page = bob.get("/get-messages", params={"user_id": a["id"]})
        assert [m["content"] for m in page.json()["messages"]] == ["over h2"]
    assert len(versions) == 6 and set(versions) == {"HTTP/2"}  # 2 x (register, login) + send + get


def assert_signed_in(client: httpx.Client, user: dict, http_version: str) -> None:
    with closing(client):
        me = client.get("/me")
        assert me.http_version == http_version
        assert me.json().items() >= user.items()  # /me adds the role and state to what sign-up answered


def test_http11_clients_still_work(tls):
    assert_signed_in(*tls.sign_up("carol", http2=False), "HTTP/1.1")


def test_session_cookie_is_secure_and_hsts_is_sent_over_https(tls):
    name = unique("dave")
    with tls.client() as client:
        client.post("/register", json={"username": name, "email": f"{name}@example.org", "password": "x" * 12})
        login = client.post("/login", json={"username": name, "password": "x" * 12})
        assert login.status_code == 200
        # (the device cookie of a successful sign-in is set beside it)
        cookie = next(c for c in login.headers.get_list("set-cookie") if c.startswith(f"{SESSION_COOKIE}="))
        assert {"Secure", "HttpOnly", "SameSite=Lax"} <= {part.strip() for part in cookie.split(";")}
        for response in (login, client.get("/healthz"), client.get("/nowhere")):
            assert response.headers["strict-transport-security"] == f"max-age={ONE_YEAR}"


def test_oversized_request_headers_are_refused(tls):
    """hypercorn.toml's header limits: past what hypercorn enforces (see its comment), on both protocols."""
    oversized = {"X-Padding": "a" * 100_000}
    with tls.client(http2=False) as client:
        assert client.get("/healthz", headers=oversized).status_code == 431
        assert client.get("/healthz").status_code == 200
    with tls.client(http2=True) as client, pytest.raises(httpx.RemoteProtocolError):
        client.get("/healthz", headers=oversized)


def test_the_plain_http_bind_redirects_to_https(tls):
    with httpx.Client(base_url=tls.plain_url, timeout=10, trust_env=False) as plain:
        response = plain.get("/get-messages?user_id=2&after=7")
        assert response.status_code == 307
        assert response.headers["location"] == f"{tls.base_url}/get-messages?user_id=2&after=7"
        assert "strict-transport-security" not in response.headers  # never over plain HTTP (RFC 6797)
        posted = plain.post("/login", json={"username": "x", "password": "y" * 8})
        assert posted.status_code == 307 and posted.headers["location"] == f"{tls.base_url}/login"
    with httpx.Client(timeout=10, verify=tls.context(), follow_redirects=True, trust_env=False) as browser_like:
        landed = browser_like.get(tls.plain_url + "/healthz")
        assert landed.status_code == 200 and str(landed.url) == tls.base_url + "/healthz"


# ---------------------------------------------------------------- HTTP/3 (opt-in)


async def test_http3_opt_in_serves_the_api_on_the_same_certificates(h3, tls):
    with h3.client() as client:
        advertised = client.get("/healthz").headers.get_list("alt-svc")
    assert f'h3=":{h3.server.port}"; ma=3600' in advertised
    with tls.client() as client:
        assert "alt-svc" not in client.get("/healthz").headers  # only when opted in
    name = unique("erin")
    credentials = {"username": name, "password": "correct horse battery"}
    json_headers = {"content-type": "application/json"}
    async with h3_client("127.0.0.1", h3.server.port, h3.certs / "ca.crt", server_name="localhost") as quic:
        health = await quic.request("GET", "/healthz")
        assert health.status == 200 and health.json()["status"] == "ok"
        assert health.headers["strict-transport-security"] == f"max-age={ONE_YEAR}"
        body = json.dumps({**credentials, "email": f"{name}@example.org"}).encode()
        assert (await quic.request("POST", "/register", json_headers, body)).status == 201
        login = await quic.request("POST", "/login", json_headers, json.dumps(credentials).encode())
        assert login.status == 200 and "Secure" in login.headers["set-cookie"]
        session = login.headers["set-cookie"].split(";", 1)[0]
        me = await quic.request("GET", "/me", {"cookie": session})
        assert me.status == 200 and me.json()["username"] == name


# ---------------------------------------------------------------- client certificates (opt-in)


@pytest.mark.parametrize("http2", [True, False])
def test_client_certificates_required_refuse_a_client_without_one(mtls, http2):
    with (
        httpx.Client(base_url=mtls.base_url, http2=http2, verify=mtls.context(), trust_env=False) as anonymous,
        pytest.raises(httpx.TransportError),
    ):
        anonymous.get("/healthz")


def test_client_certificates_required_let_the_generated_client_certificate_in(mtls):
    assert_signed_in(*mtls.sign_up("frank", client_cert=True), "HTTP/2")


def test_client_certificates_from_another_authority_are_refused(mtls, tmp_path):
    stranger = generate_certs(tmp_path)  # a second `chat certs`: a different authority, a valid-looking client cert
    context = client_context(mtls.certs)
    context.load_cert_chain(stranger / "client.crt", stranger / "client.key")
    with (
        httpx.Client(base_url=mtls.base_url, verify=context, trust_env=False) as impostor,
        pytest.raises(httpx.TransportError),
    ):
        impostor.get("/healthz")


# ---------------------------------------------------------------- websockets over TLS


def room_of(a: dict, b: dict) -> str:
    return f"dm-{min(a['id'], b['id'])}-{max(a['id'], b['id'])}"


def session_header(client: httpx.Client) -> dict[str, str]:
    return {"Cookie": f"{SESSION_COOKIE}={client.cookies[SESSION_COOKIE]}"}


@asynccontextmanager
async def wss(deployment: Deployment, client: httpx.Client, room: str, origin: str | None = None):
    """A websocket over TLS and HTTP/1.1 (the websockets library), signed in as `client`, from the server's origin."""
    async with ws_connect(
        f"{deployment.server.ws_url}/ws/rooms/{room}",
        ssl=deployment.context(),
        origin=origin or deployment.base_url,
        additional_headers=session_header(client),
        proxy=None,
        open_timeout=10,
    ) as connection:
        yield connection


async def receive_h1(connection, timeout: float = 10) -> dict:
    return json.loads(await asyncio.wait_for(connection.recv(), timeout))


async def next_message(receive, timeout: float = 10) -> dict:
    """The next `message` frame's message (presence, typing and read frames are skipped)."""
    while True:
        frame = await receive(timeout)
        if frame["type"] == "message":
            return frame["message"]


@pytest.fixture
def two_people(tls):
    """(alice's client, alice, bob's client, bob): two fresh accounts, signed in over HTTP/2."""
    alice, a = tls.sign_up("alice")
    bob, b = tls.sign_up("bob")
    with closing(alice), closing(bob):
        yield alice, a, bob, b


async def post_message(client: httpx.Client, receiver: dict, content: str) -> dict:
    body = {"receiver_id": receiver["id"], "content": content}
    sent = await asyncio.to_thread(client.post, "/send-message", json=body)
    assert sent.status_code == 201, sent.text
    return sent.json()


async def test_wss_over_http11_delivers_messages_both_ways(tls, two_people):
    alice, a, bob, b = two_people
    room = room_of(a, b)
    async with wss(tls, alice, room) as alice_socket, wss(tls, bob, room) as bob_socket:
        client_id = uuid.uuid4().hex
        await bob_socket.send(json.dumps({"type": "message", "content": "over wss", "client_id": client_id}))
        received = await next_message(lambda t: receive_h1(alice_socket, t))
        assert (received["content"], received["sender_id"], received["room"]) == ("over wss", b["id"], room)
        assert (await next_message(lambda t: receive_h1(bob_socket, t)))["client_id"] == client_id  # the ack
        posted = await post_message(alice, b, "over https")
        assert await next_message(lambda t: receive_h1(bob_socket, t)) == posted


async def test_wss_refuses_foreign_origins_missing_sessions_and_plain_ws(tls, two_people):
    alice, a, bob, b = two_people
    room = room_of(a, b)
    async with wss(tls, alice, room):  # the server's own https:// origin passes the Origin check
        pass
    for origin in ("https://evil.example", f"https://127.0.0.1:{tls.plain_port}"):
        with pytest.raises(InvalidStatus) as refused:
            async with wss(tls, alice, room, origin=origin):
                pass
        assert refused.value.response.status_code == 403
    with pytest.raises(InvalidStatus) as refused:
        async with ws_connect(
            f"{tls.server.ws_url}/ws/rooms/{room}", ssl=tls.context(), origin=tls.base_url, proxy=None
        ):
            pass
    assert refused.value.response.status_code == 401
    # the plain bind serves no websocket: a browser would not follow a redirect there, so it is refused
    with pytest.raises(InvalidStatus) as refused:
        async with ws_connect(
            f"ws://127.0.0.1:{tls.plain_port}/ws/rooms/{room}", additional_headers=session_header(alice), proxy=None
        ):
            pass
    assert refused.value.response.status_code == 403
    assert json.loads(refused.value.response.body)["error"] == "https_required"


async def test_websockets_over_http2_extended_connect(tls, two_people):
    alice, a, bob, b = two_people
    path = f"/ws/rooms/{room_of(a, b)}"
    alice_h2 = await H2Client.open("127.0.0.1", tls.server.port, tls.context())
    bob_h2 = await H2Client.open("127.0.0.1", tls.server.port, tls.context())
    try:
        origin = {"Origin": tls.base_url}
        alice_socket = await alice_h2.websocket(path, {**origin, **session_header(alice)})
        bob_socket = await bob_h2.websocket(path, {**origin, **session_header(bob)})
        await alice_socket.send_json({"type": "message", "content": "over h2", "client_id": "h2-1"})
        received = await next_message(bob_socket.receive_json)
        assert (received["content"], received["sender_id"]) == ("over h2", a["id"])
        assert (await next_message(alice_socket.receive_json))["client_id"] == "h2-1"
        posted = await post_message(bob, a, "back over https")
        assert await next_message(alice_socket.receive_json) == posted
        with pytest.raises(WebSocketRefused) as refused:
            await alice_h2.websocket(path, {"Origin": "https://evil.example", **session_header(alice)})
        assert refused.value.status == 403
    finally:
        await alice_h2.aclose()
        await bob_h2.aclose()


async def test_a_socket_dropped_without_closing_disturbs_no_other_connection(tls, two_people):
    """hypercorn issue #329: a websocket that ends without a close handshake took down the other websockets of
    its HTTP/2 connection. Drop sockets every way a client can, and check after each that the rest still work."""
    alice, a, bob, b = two_people
    room, path = room_of(a, b), f"/ws/rooms/{room_of(a, b)}"
    alice_headers = {"Origin": tls.base_url, **session_header(alice)}
    shared = await H2Client.open("127.0.0.1", tls.server.port, tls.context())  # two of alice's tabs, one connection
    other = await H2Client.open("127.0.0.1", tls.server.port, tls.context())
    try:
        doomed_stream = await shared.websocket(path, alice_headers)
        sibling = await shared.websocket(path, alice_headers)
        elsewhere = await other.websocket(path, alice_headers)
        async with wss(tls, alice, room) as over_h1, wss(tls, alice, room) as doomed_h1:
            live = {
                "doomed stream": doomed_stream.receive_json,
                "sibling stream": sibling.receive_json,
                "other connection": elsewhere.receive_json,
                "http/1.1": lambda t: receive_h1(over_h1, t),
                "doomed http/1.1": lambda t: receive_h1(doomed_h1, t),
            }

            async def everyone_alive_gets(content: str) -> None:
                posted = await post_message(bob, a, content)
                for name, receive in live.items():
                    assert await next_message(receive) == posted, name

            await everyone_alive_gets("all there")
            await doomed_stream.reset()  # RST_STREAM: no close frame
            del live["doomed stream"]
            await everyone_alive_gets("a stream dropped")

            latecomer = await shared.websocket(path, alice_headers)  # a new socket on the same connection (#329)
            live["latecomer stream"] = latecomer.receive_json
            await everyone_alive_gets("a new stream")

            doomed_h1.transport.abort()  # TCP reset under an HTTP/1.1 websocket: no close frame
            del live["doomed http/1.1"]
            await everyone_alive_gets("a socket dropped")

            shared.abort()  # the whole HTTP/2 connection, with its two websockets, vanishes
            del live["sibling stream"], live["latecomer stream"]
            await everyone_alive_gets("a connection dropped")
            assert (await asyncio.to_thread(bob.get, "/healthz")).status_code == 200
    finally:
        await other.aclose()
        shared.abort()


# ---------------------------------------------------------------- a real browser


# In the page: sign up and in through its own origin's fetch (so the Origin check sees https://localhost:port).
SIGN_UP_JS = """async (name) => {
    const post = (path, body) => fetch(path, {method: "POST", headers: {"Content-Type": "application/json"},
                                              body: JSON.stringify(body)});
    const password = "correct horse battery";
    const registered = await post("/register", {username: name, email: name + "@example.org", password});
    const login = await post("/login", {username: name, password});
    const me = await fetch("/me");
    return [registered.status, login.status, me.status, await me.json()];
}"""


@pytest.fixture
def chromium_home(tls, tmp_path):
    """A HOME whose NSS database trusts certs/ca.crt, as `certutil -A -t C,,` does for a person (certs/README.md):
    Chromium on Linux reads its user-added authorities there."""
    if not (shutil.which("chromium") and shutil.which("certutil")):
        pytest.fail("needs Debian's chromium and certutil (libnss3-tools): `make browser` installs them")
    nssdb = tmp_path / "home" / ".pki" / "nssdb"
    nssdb.mkdir(parents=True)
    subprocess.run(["certutil", "-d", f"sql:{nssdb}", "-N", "--empty-password"], check=True)
    trust = ["certutil", "-d", f"sql:{nssdb}", "-A", "-t", "C,,", "-n", "chat local authority"]
    subprocess.run([*trust, "-i", str(tls.certs / "ca.crt")], check=True)
    return nssdb.parent.parent


@pytest.fixture
async def chromium(chromium_home):
    """A browser context that verifies certificates (ignore_https_errors=False) against that HOME's authorities."""
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, env={**os.environ, "HOME": str(chromium_home)}
        )
        try:
            yield await browser.new_context(ignore_https_errors=False)
        finally:
            await browser.close()


@pytest.mark.browser
async def test_chromium_trusts_the_generated_authority_over_https_and_http2(tls, chromium):
    page = await chromium.new_page()
    # typed as http://: the plain bind sends the browser to HTTPS
    response = await page.goto(f"http://localhost:{tls.plain_port}/healthz")
    assert response is not None and response.status == 200
    assert page.url == f"https://localhost:{tls.server.port}/healthz"
    assert await page.evaluate("performance.getEntriesByType('navigation')[0].nextHopProtocol") == "h2"
    assert await response.header_value("strict-transport-security") == f"max-age={ONE_YEAR}"
    name = unique("grace")
    registered, logged_in, me, user = await page.evaluate(SIGN_UP_JS, name)
    assert (registered, logged_in, me, user["username"]) == (201, 200, 200, name)
    [cookie] = [c for c in await chromium.cookies() if c["name"] == SESSION_COOKIE]
    assert cookie["secure"] and cookie["httpOnly"] and cookie["sameSite"] == "Lax"


@pytest.mark.browser
async def test_chromium_websocket_over_https_passes_the_origin_check(tls, chromium):
    bob, b = tls.sign_up("bob")
    page = await chromium.new_page()
    await page.goto(f"https://localhost:{tls.server.port}/healthz")
    *statuses, alice = await page.evaluate(SIGN_UP_JS, unique("heidi"))
    assert statuses == [201, 200, 200]
    room = room_of(alice, b)
    # the browser sends Origin: https://localhost:port itself; resolve with the first message frame
    first_message = page.evaluate(
        """(url) => new Promise((resolve, reject) => {
            const socket = new WebSocket(url);
            socket.onopen = () => window.socketOpen = true;
            socket.onmessage = (event) => {
                const frame = JSON.parse(event.data);
                if (frame.type === "message") resolve(frame.message);
            };
            socket.onclose = (event) => reject(new Error("closed with " + event.code));
        })""",
        f"wss://localhost:{tls.server.port}/ws/rooms/{room}",
    )
    waiting = asyncio.ensure_future(first_message)
    with closing(bob):
        await page.wait_for_function("window.socketOpen === true", timeout=10_000)
        posted = await post_message(bob, alice, "to the browser")
        assert await asyncio.wait_for(waiting, 10) == posted
