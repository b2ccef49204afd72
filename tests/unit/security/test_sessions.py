"""Sessions checked once are trusted for a few seconds in this process, and revocation still takes effect; a
session cookie is verified once per process."""

from __future__ import annotations

import asyncio
import time

import orjson
import pytest
from quart_auth import current_user

from chat.accounts import ACCOUNTS_CHANNEL
from chat.models import Session, utcnow
from chat.security import ChatAuth, SessionCache, SignedIn, login_required, request_user, sessions, signed_in
from testkit.app import api_login
from testkit.http import PASSWORD


async def test_logout_takes_effect_at_once_although_the_session_was_cached(signup, make_client):
    alice, _ = await signup("alice")
    assert (await alice.get("/me")).status_code == 200  # now in the cache
    token = next(iter(alice.cookie_jar)).value
    assert (await alice.post("/logout")).status_code == 204
    replay = make_client()  # someone who kept a copy of the cookie
    replay.set_cookie("localhost", "chat_session", token)
    assert (await replay.get("/me")).status_code == 401


async def test_a_session_revoked_elsewhere_is_refused_within_the_ttl(app, signup):
    alice, _ = await signup("alice")
    app.extensions["chat"].sessions.ttl = 0.2
    assert (await alice.get("/me")).status_code == 200
    await Session.all().update(revoked_at=utcnow())  # as another worker process would
    revoked = time.monotonic()
    while (await alice.get("/me")).status_code == 200:
        assert time.monotonic() - revoked < 2, "the revoked session stayed valid past the cache's bound"


async def test_a_password_change_checks_the_current_password_as_stored(signup):
    alice, _ = await signup("alice")
    assert (await alice.get("/me")).status_code == 200  # cached, with the old password hash
    changed = await alice.post("/change-password", json={"current_password": PASSWORD, "new_password": "second pass"})
    assert changed.status_code == 204
    again = await alice.post("/change-password", json={"current_password": PASSWORD, "new_password": "third pass!"})
    assert again.status_code == 401  # the old password no longer counts, though a cached user still had its hash


async def test_signing_in_again_replaces_the_cached_session(signup, make_client):
    alice, _ = await signup("alice")
    old = next(iter(alice.cookie_jar)).value
    assert (await alice.get("/me")).status_code == 200
    await api_login(alice, "alice")
    replay = make_client()
    replay.set_cookie("localhost", "chat_session", old)
    assert (await replay.get("/me")).status_code == 401


def _signed_in(session_id: int) -> SignedIn:
    return SignedIn(session_id, user=None)  # type: ignore[arg-type]


def test_a_look_up_that_began_before_a_revocation_is_not_cached():
    cache = SessionCache(ttl=60)
    generation = cache.generation  # a look-up starts and reads the session from the database ...
    cache.drop("token")  # ... while a logout revokes it
    cache.put("token", _signed_in(1), 3600, generation)
    assert cache.get("token") is None


def test_entries_expire_with_the_ttl_or_the_session_whichever_first():
    cache = SessionCache(ttl=60)
    cache.put("long", _signed_in(1), 3600, cache.generation)
    cache.put("ending", _signed_in(2), 0.0, cache.generation)
    assert cache.get("long") is not None
    assert cache.get("ending") is None


def test_the_cache_stays_bounded():
    cache = SessionCache(ttl=60, max_entries=3)
    for number in range(10):
        cache.put(f"t{number}", _signed_in(number), 3600, cache.generation)
    assert len(cache._entries) == 3
    assert cache.get("t9") is not None and cache.get("t0") is None


def _auth(app) -> ChatAuth:
    return next(extension for extension in app.extensions["QUART_AUTH"] if isinstance(extension, ChatAuth))


async def test_a_cookie_is_verified_once_then_found_in_the_cache(app, signup, monkeypatch):
    alice, _ = await signup("alice")
    assert (await alice.get("/me")).status_code == 200
    verified = []
    monkeypatch.setattr(ChatAuth, "serializer_class", _counting(verified))
    for _ in range(3):
        assert (await alice.get("/me")).status_code == 200
    assert verified == []  # the cookie was verified before: no serializer, no HMAC
    cookie = _session_cookie(alice)
    assert _auth(app)._verified[cookie][0]  # the token it carries


async def test_a_tampered_or_unknown_cookie_is_still_refused(app, signup, make_client):
    alice, _ = await signup("alice")
    cookie = _session_cookie(alice)
    assert (await alice.get("/me")).status_code == 200  # cached
    for forged in (cookie[:-2] + ("AA" if not cookie.endswith("AA") else "BB"), "x" + cookie, "garbage"):
        replay = make_client()
        replay.set_cookie("localhost", "chat_session", forged)
        assert (await replay.get("/me")).status_code == 401
        assert forged not in _auth(app)._verified


async def test_a_cached_cookie_expires_with_its_signature(app, signup):
    alice, _ = await signup("alice")
    assert (await alice.get("/me")).status_code == 200
    cookie = _session_cookie(alice)
    auth = _auth(app)
    token, _valid_until = auth._verified[cookie]
    auth._verified[cookie] = (token, time.time() - 1)  # signed longer ago than QUART_AUTH_DURATION
    assert (await alice.get("/me")).status_code == 401
    assert cookie not in auth._verified


async def test_the_verified_cookies_stay_bounded(app, signup):
    auth = _auth(app)
    auth.max_cookies = 2
    people = [(await signup(name))[0] for name in ("alice", "bob", "carol")]
    for person in people:
        assert (await person.get("/me")).status_code == 200
    assert len(auth._verified) == 2
    assert (await people[0].get("/me")).status_code == 200  # verified again, and cached again


async def test_a_logout_tells_every_worker_to_forget_the_account_s_sessions(app, signup):
    alice, me = await signup("alice")
    broker = app.extensions["chat"].broker
    subscription = await broker.subscribe((ACCOUNTS_CHANNEL,), 16)
    try:
        assert (await alice.post("/logout")).status_code == 204
        event = await asyncio.wait_for(subscription.queue.get(), 5)
    finally:
        await broker.unsubscribe(subscription)
    assert orjson.loads(event.text) == {"type": "account_changed", "user_id": me["id"]}


def _counting(calls: list):
    class Counting(ChatAuth.serializer_class):
        def loads(self, *args, **kwargs):
            calls.append(args)
            return super().loads(*args, **kwargs)

    return Counting


def _session_cookie(person) -> str:
    return next(cookie.value for cookie in person.cookie_jar if cookie.name == "chat_session")


async def test_a_request_resolves_its_session_once_and_its_user_is_quart_auths(app, signup, monkeypatch):
    alice, me = await signup("alice")
    looked_up = []
    lookup = sessions._lookup_session

    async def counted(token: str, fresh: bool):
        looked_up.append(token)
        return await lookup(token, fresh)

    monkeypatch.setattr(sessions, "_lookup_session", counted)
    assert (await alice.get("/me")).status_code == 200  # login_required, then the view's signed_in()
    assert len(looked_up) == 1

    headers = {"Cookie": f"chat_session={_session_cookie(alice)}"}
    async with app.test_request_context("/me", headers=headers):
        user = request_user()
        assert user is current_user._get_current_object() and user is request_user()
        assert (await signed_in()).user.id == me["id"]
    async with app.test_request_context("/me"):
        assert request_user().auth_id is None and await request_user().resolve() is None


def test_login_required_takes_coroutine_views_only():
    with pytest.raises(TypeError, match="coroutine"):
        login_required(lambda: None)
