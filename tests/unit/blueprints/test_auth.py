"""POST /register, POST /login, POST|GET /logout, GET /me (API.md, "Authentication")."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

import pytest

from chat import create_app
from chat.models import Session, User, utcnow
from chat.security import passwords
from testkit.app import api_login, api_register, assert_error, started_app
from testkit.http import PASSWORD


def account(name: str = "alice", **changes) -> dict:
    return {"username": name, "email": f"{name}@example.org", "password": PASSWORD, **changes}


def set_cookie(response, name: str = "chat_session") -> str:
    """The whole Set-Cookie header of one cookie (a sign-in sets the device cookie too)."""
    headers = [h for h in response.headers.getlist("Set-Cookie") if h.startswith(f"{name}=")]
    assert len(headers) == 1, response.headers.getlist("Set-Cookie")
    return headers[0]


def session_cookie(response) -> str:
    """The chat_session cookie's "name=value" from a response's Set-Cookie."""
    return set_cookie(response).split(";", 1)[0]


# ---------------------------------------------------------------- register


async def test_register_creates_the_account_without_a_session(client):
    response = await client.post("/register", json=account(email="Alice@Example.ORG"))
    assert response.status_code == 201
    user = await response.get_json()
    assert user == {"id": user["id"], "username": "alice", "email": "alice@example.org"}
    assert "Set-Cookie" not in response.headers
    await assert_error(await client.get("/me"), 401, "unauthorized")
    stored = await User.get(id=user["id"])
    assert stored.email == "alice@example.org"  # stored lower-cased
    assert stored.password_hash.startswith("$2b$04$") and PASSWORD not in stored.password_hash


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("username", "al"),  # 3 characters at least
        ("username", "a" * 81),  # 80 at most
        ("username", "al ice"),
        ("username", "alice!"),
        ("username", "ålice"),  # letters means ASCII letters here
        ("username", ""),
        ("username", "alice\n"),  # "$" alone would let a trailing newline through
        ("email", "alice"),
        ("email", "alice@example"),
        ("email", "alice @example.org"),
        ("email", "a" * 109 + "@example.org"),  # 121 characters
        ("email", ""),
        ("email", "alice@example.org\n"),
        ("email", "İ" * 60 + "@example.org"),  # 72 characters, but 132 once lower-cased for storage
        ("password", "seven c"),  # 7 code points
        ("password", "x" * 129),
        ("password", ""),
    ],
)
async def test_register_refuses_each_rule(client, field, value):
    body = await assert_error(await client.post("/register", json=account(**{field: value})), 400, "validation_error")
    assert [problem["field"] for problem in body["fields"]] == [field]
    assert await User.all().count() == 0


@pytest.mark.parametrize("field", ["username", "email", "password"])
async def test_register_requires_every_field(client, field):
    data = account()
    del data[field]
    body = await assert_error(await client.post("/register", json=data), 400, "validation_error")
    assert [problem["field"] for problem in body["fields"]] == [field]


@pytest.mark.parametrize(
    ("username", "email", "password"),
    [
        ("abc", "a@b.co", "8 chars!"),  # every lower bound
        ("a" * 80, "e" * 108 + "@example.org", "p" * 128),  # every upper bound (email: 120)
        ("A.b_c-9", "x@example.org", "ü" * 128),  # 128 code points, 256 bytes
    ],
)
async def test_register_accepts_the_bounds(client, username, email, password):
    response = await client.post("/register", json={"username": username, "email": email, "password": password})
    assert response.status_code == 201, await response.get_data(as_text=True)
    login = await client.post("/login", json={"email": email, "password": password})
    assert login.status_code == 200


async def test_username_taken_ignores_case(client):
    await api_register(client, "alice")
    for name in ("alice", "ALICE", "Alice"):
        response = await client.post("/register", json=account(name, email=f"{name}2@example.org"))
        await assert_error(response, 409, "username_taken")
    assert await User.all().count() == 1


async def test_email_taken_ignores_case(client):
    await api_register(client, "alice")
    for email in ("alice@example.org", "ALICE@EXAMPLE.ORG", "Alice@example.org"):
        await assert_error(await client.post("/register", json=account("bob", email=email)), 409, "email_taken")
    assert await User.all().count() == 1


async def test_concurrent_registrations_of_one_name_store_one_account(make_client):
    responses = await asyncio.gather(
        *(make_client().post("/register", json=account("alice", email=f"a{i}@example.org")) for i in range(4))
    )
    assert sorted(r.status_code for r in responses) == [201, 409, 409, 409]
    assert await User.all().count() == 1


# ---------------------------------------------------------------- login


async def test_login_with_email_or_username_in_any_case(client):
    user = await api_register(client, "Alice")
    for identifier in ({"email": "alice@example.org"}, {"email": "ALICE@example.ORG"}, {"username": "Alice"}):
        response = await client.post("/login", json={**identifier, "password": PASSWORD})
        assert response.status_code == 200
        assert await response.get_json() == user
        assert set_cookie(response)
    assert (await (await client.get("/me")).get_json()) == {**user, "role": "member", "deactivated": False}


async def test_signing_in_again_replaces_the_clients_session(client):
    await api_register(client, "alice")
    first = session_cookie(await client.post("/login", json={"username": "alice", "password": PASSWORD}))
    await api_login(client, "alice")
    assert await Session.filter(revoked_at=None).count() == 1
    await assert_error(await client.get("/me", headers={"Cookie": first}), 401, "unauthorized")


async def test_unknown_user_and_wrong_password_get_the_same_401(client):
    await api_register(client, "alice")
    wrong_password = await client.post("/login", json={"username": "alice", "password": "not the password"})
    unknown_user = await client.post("/login", json={"username": "mallory", "password": "not the password"})
    unknown_email = await client.post("/login", json={"email": "mallory@example.org", "password": PASSWORD})
    bodies = [await assert_error(r, 401, "invalid_credentials") for r in (wrong_password, unknown_user, unknown_email)]
    assert bodies[0] == bodies[1] == bodies[2]
    assert "Set-Cookie" not in wrong_password.headers
    assert await Session.all().count() == 0


async def test_unknown_user_and_wrong_password_cost_the_same(client, monkeypatch):
    """Both run exactly one bcrypt check at the configured cost, so timing tells nothing."""
    await api_register(client, "alice")
    await client.post("/login", json={"username": "nobody", "password": "warm up the dummy hash"})
    checked: list[str] = []
    real_check = passwords.check_password_sync

    def counting_check(password: str, password_hash: str) -> bool:
        checked.append(password_hash[:7])
        return real_check(password, password_hash)

    monkeypatch.setattr(passwords, "check_password_sync", counting_check)
    await client.post("/login", json={"username": "alice", "password": "not the password"})
    await client.post("/login", json={"username": "mallory", "password": "not the password"})
    assert checked == ["$2b$04$", "$2b$04$"]


async def test_login_needs_an_identifier(client):
    body = await assert_error(await client.post("/login", json={"password": PASSWORD}), 400, "validation_error")
    assert body["fields"]


async def test_too_many_failures_lock_the_account_with_retry_after(make_client):
    attacker, owner = make_client(), make_client()
    await api_register(owner, "alice")
    for _ in range(5):
        await assert_error(
            await attacker.post("/login", json={"username": "alice", "password": "guess guess"}),
            401,
            "invalid_credentials",
        )
    for attempt in ({"username": "alice"}, {"username": "ALICE"}):
        response = await attacker.post("/login", json={**attempt, "password": "guess guess"})
        await assert_error(response, 429, "too_many_attempts")
        assert 1 <= int(response.headers["Retry-After"]) <= 15 * 60
    # while locked even the right password waits: the lock does not tell a guesser when it guessed right
    locked = await owner.post("/login", json={"username": "alice", "password": PASSWORD})
    await assert_error(locked, 429, "too_many_attempts")
    # other accounts are unaffected
    await api_register(owner, "bob")
    await api_login(owner, "bob")


async def test_the_count_is_per_name_as_typed_and_never_tells_two_names_apart(client):
    # issue 11: the count was per account, so after 5 failures by username a guessed email got 429 exactly when
    # it was that account's: an oracle. It is per name as typed (case ignored) now.
    await api_register(client, "alice")
    for spelling in ("alice", "ALICE", "Alice", "alice", "aLiCe"):
        response = await client.post("/login", json={"username": spelling, "password": "guess guess"})
        await assert_error(response, 401, "invalid_credentials")
    for spelling in ("alice", "ALICE"):
        response = await client.post("/login", json={"username": spelling, "password": "guess guess"})
        await assert_error(response, 429, "too_many_attempts")
    # the same account's email and an unknown email are answered alike: nothing links them to "alice"
    for email in ("alice@example.org", "Alice@Example.org", "nobody@example.org"):
        response = await client.post("/login", json={"email": email, "password": "guess guess"})
        await assert_error(response, 401, "invalid_credentials")


async def test_a_successful_login_resets_the_account_count(client):
    await api_register(client, "alice")
    for _ in range(3):
        for _ in range(4):
            await client.post("/login", json={"username": "alice", "password": "guess guess"})
        await api_login(client, "alice")


async def test_the_per_address_limit_is_configurable(tmp_path):
    async with started_app(tmp_path, login_address_failures=3) as app:
        here, elsewhere = {"client": ("192.0.2.7", 40000)}, {"client": ("198.51.100.9", 40000)}
        client = app.test_client()
        await api_register(client, "alice")
        for name in ("mallory", "trent", "peggy"):  # three different accounts, one address
            response = await client.post("/login", json={"username": name, "password": "guess guess"}, scope_base=here)
            await assert_error(response, 401, "invalid_credentials")
        response = await client.post("/login", json={"username": "alice", "password": PASSWORD}, scope_base=here)
        await assert_error(response, 429, "too_many_attempts")
        assert int(response.headers["Retry-After"]) >= 1
        response = await client.post("/login", json={"username": "alice", "password": PASSWORD}, scope_base=elsewhere)
        assert response.status_code == 200


# ---------------------------------------------------------------- logout and sessions


@pytest.mark.parametrize("method", ["POST", "GET"])
async def test_logout_revokes_the_session_on_the_server(client, make_client, method):
    await api_register(client, "alice")
    cookie = session_cookie(await client.post("/login", json={"username": "alice", "password": PASSWORD}))
    response = await client.open("/logout", method=method)
    assert response.status_code == 204
    assert await (await client.get("/me")).get_json() == {"error": "unauthorized", "message": "Sign in first."}
    # the cookie's signature is still valid: only the server-side revocation refuses it
    replay = make_client(use_cookies=False)
    await assert_error(await replay.get("/me", headers={"Cookie": cookie}), 401, "unauthorized")
    await assert_error(await replay.get("/get-users", headers={"Cookie": cookie}), 401, "unauthorized")
    assert await Session.filter(revoked_at=None).count() == 0


async def test_logout_from_a_browser_redirects_to_the_login_page(client):
    await api_register(client, "alice")
    await api_login(client, "alice")
    browser_accept = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
    response = await client.get("/logout", headers={"Accept": browser_accept})
    assert response.status_code in (302, 303)
    assert response.headers["Location"].endswith("/login-page")
    await assert_error(await client.get("/me"), 401)


async def test_logout_without_a_session_is_harmless(client):
    assert (await client.post("/logout")).status_code == 204
    assert (await client.get("/logout", headers={"Accept": "application/json"})).status_code == 204


async def test_logout_ends_only_this_session(make_client):
    laptop, phone = make_client(), make_client()
    user = await api_register(laptop, "alice")
    await api_login(laptop, "alice")
    await api_login(phone, "alice")
    assert (await laptop.post("/logout")).status_code == 204
    assert await (await phone.get("/me")).get_json() == {**user, "role": "member", "deactivated": False}


async def test_me_needs_a_session(client):
    await assert_error(await client.get("/me"), 401, "unauthorized")
    await assert_error(await client.get("/me", headers={"Cookie": "chat_session=forged.value"}), 401, "unauthorized")


async def test_an_expired_session_is_refused(client):
    await api_register(client, "alice")
    await api_login(client, "alice")
    await Session.all().update(expires_at=utcnow() - timedelta(seconds=1))
    await assert_error(await client.get("/me"), 401, "unauthorized")


# ---------------------------------------------------------------- cookies


async def test_session_cookie_flags_default_to_secure(tmp_path):
    async with started_app(tmp_path, cookie_secure=True) as app:
        client = app.test_client()
        await api_register(client, "alice")
        response = await client.post("/login", json={"username": "alice", "password": PASSWORD}, scheme="https")
        flags = {part.strip().split("=")[0].lower(): part for part in set_cookie(response).split(";")}
        assert "httponly" in flags and "secure" in flags
        assert flags["samesite"].strip().lower() == "samesite=lax"


async def test_the_device_cookie_is_flagged_like_the_session_cookie(tmp_path):
    async with started_app(tmp_path, cookie_secure=True) as app:
        client = app.test_client()
        await api_register(client, "alice")
        response = await client.post("/login", json={"username": "alice", "password": PASSWORD}, scheme="https")
        parts = {
            part.strip().split("=")[0].lower(): part.strip() for part in set_cookie(response, "chat_device").split(";")
        }
        assert "httponly" in parts and "secure" in parts and parts["samesite"].lower() == "samesite=lax"
        assert int(parts["max-age"].split("=")[1]) >= 30 * 24 * 3600  # outlives sessions: it vouches for the browser
        failed = await client.post("/login", json={"username": "alice", "password": "guess guess"}, scheme="https")
        assert "chat_device" not in " ".join(failed.headers.getlist("Set-Cookie"))  # only a success earns one


async def test_session_cookie_without_secure_when_configured(client):
    await api_register(client, "alice")
    response = await client.post("/login", json={"username": "alice", "password": PASSWORD})
    parts = [part.strip().lower() for part in set_cookie(response).split(";")]
    assert "httponly" in parts and "samesite=lax" in parts and "secure" not in parts


# ---------------------------------------------------------------- passwords


@pytest.mark.parametrize(
    "password",
    [
        "correct horse battery staple",  # spaces
        "пароль с пробелами",  # Cyrillic
        "密码密码密码密码",  # 8 CJK code points
        "🔑🔑🔑🔑🔑🔑🔑🔑",  # 8 emoji, 32 bytes
        "  padded  ",  # leading and trailing spaces are part of it
    ],
)
async def test_any_script_and_spaces_are_accepted_exactly(client, password):
    await api_register(client, "alice", password)
    await api_login(client, "alice", password)
    for variant in {password.strip(), password.upper(), password + " "} - {password}:
        response = await client.post("/login", json={"username": "alice", "password": variant})
        await assert_error(response, 401, "invalid_credentials")


async def test_long_passwords_are_never_truncated(client):
    password = ("p" * 72 + "-past-byte-72-").ljust(100, "x")
    assert len(password.encode()) == 100
    await api_register(client, "alice", password)
    await api_login(client, "alice", password)
    # each variant equals the password in its first 72 bytes, all that bcrypt alone would read
    for variant in (password[:72], password[:72] + "Z" * 28, password[:99], password[:99] + "y"):
        response = await client.post("/login", json={"username": "alice", "password": variant})
        await assert_error(response, 401, "invalid_credentials")


async def test_passwords_never_reach_a_body_or_the_log(client, caplog):
    caplog.set_level(logging.DEBUG)
    secret = "Sekrit-Passphrase-4711"
    attempts = [
        ("/register", account(password=secret + "x" * 128)),  # too long
        ("/register", account(email="not an email", password=secret)),
        ("/register", account(username="!", password=secret)),
        ("/register", account(password=secret)),
        ("/register", account(password=secret)),  # 409
        ("/login", {"username": "alice", "password": secret + "!"}),
        ("/login", {"username": "nobody", "password": secret}),
        ("/login", {"password": secret}),
        ("/login", {"username": "alice", "password": secret + "y" * 200}),
        ("/login", {"username": "alice", "password": secret}),
    ]
    for path, data in attempts:
        response = await client.post(path, json=data)
        assert secret not in await response.get_data(as_text=True)
    assert caplog.records, "no log records were captured at all"
    assert secret not in caplog.text


async def test_default_hash_cost_is_12(tmp_path, monkeypatch):
    monkeypatch.delenv("CHAT_BCRYPT_ROUNDS", raising=False)
    app = create_app(instance_path=tmp_path / "instance")  # the defaults: one cost-12 hash, ~0.25 s
    async with app.test_app():
        await api_register(app.test_client(), "alice")
        assert (await User.get(username="alice")).password_hash.startswith("$2b$12$")


# ---------------------------------------------------------------- the hash gate


async def test_excess_concurrent_hashing_is_answered_503_at_once(tmp_path):
    # cost 10 keeps each check busy for tens of milliseconds, so the logins overlap
    async with started_app(tmp_path, bcrypt_rounds=10, hash_concurrency=1, hash_queue=0) as app:
        await api_register(app.test_client(), "alice")
        clients = [app.test_client() for _ in range(6)]
        responses = await asyncio.gather(
            *(c.post("/login", json={"username": "alice", "password": PASSWORD}) for c in clients)
        )
        busy = [r for r in responses if r.status_code == 503]
        assert busy and all(r.status_code in (200, 503) for r in responses), [r.status_code for r in responses]
        assert any(r.status_code == 200 for r in responses)
        for response in busy:
            await assert_error(response, 503, "busy")
            assert int(response.headers["Retry-After"]) >= 1
        # a refusal is not a failed attempt: the account is not locked by a flood
        await api_login(app.test_client(), "alice")
