"""Sessions checked once are trusted for a few seconds in this process, and revocation still takes effect."""

from __future__ import annotations

import time

from chat.models import Session, utcnow
from chat.security import SessionCache, SignedIn
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
