"""How many password guesses and sign-ups a client gets: throttle budgets, reserved before bcrypt runs.

Sign-in follows OWASP's "device cookies" design
(https://owasp.org/www-community/Slow_Down_Online_Guessing_Attacks_with_Device_Cookies):

- a successful sign-in gives the browser a device cookie, signed with the app's key and bound to the account;
- a sign-in presenting a valid one for the account it names is judged by that browser's own failures only;
- any other client is judged per (account name as typed, client address), plus a generous per-address budget.

So failures made elsewhere never lock out the owner's browser, nor the owner at an address that has not failed.
There is deliberately no global per-account limit: any such limit is one that an attacker with enough addresses
fills, and it would lock the owner out again. Guesses from many addresses stay bounded per address (5 per name,
100 in all) and by bcrypt's cost.

Counts are keyed by the name as typed (an email or a username, normalized), never by the account it resolves
to: a 429 for a name means that this name failed, and says nothing about which other names are the same account.

Every budget is taken before the password is checked, in one atomic step per budget, so concurrent attempts
never get more guesses than the limit; what turns out not to be a failure is given back.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import TypeVar

from quart import Response, after_this_request, current_app, request

from .errors import APIError
from .models import User
from .state import state

T = TypeVar("T")

DEVICE_COOKIE = "chat_device"
DEVICE_COOKIE_DAYS = 365


class OnSuccess(Enum):
    KEEP = "keep"  # the attempt counts whatever its outcome (a sign-up)
    GIVE_BACK = "give_back"  # only failures count (the per-address budget of failures)
    RESET = "reset"  # a success clears the count (the owner got in: earlier failures were typos)


@dataclass(frozen=True, slots=True)
class Budget:
    key: str
    limit: int
    window: int
    on_success: OnSuccess


@dataclass
class Attempt:
    """The throttle slots one sign-in or sign-up holds while its password is hashed."""

    refusal: Callable[[int], APIError]
    held: list[tuple[Budget, str]] = field(default_factory=list)

    async def take(self, budget: Budget) -> int | None:
        """Reserve a place in `budget`; None when taken, else the seconds until one frees."""
        slot = secrets.token_hex(8)
        wait = await state().throttle.take(budget.key, budget.limit, budget.window, slot)
        if wait is None:
            self.held.append((budget, slot))
        return wait

    async def take_all(self, budgets: list[Budget]) -> None:
        """A place in every budget, or none (what was taken is given back) and a 429."""
        for budget in budgets:
            if wait := await self.take(budget):
                await self.give_back()
                raise self.refusal(wait)

    async def give_back(self) -> None:
        throttle = state().throttle
        for budget, slot in self.held:
            await throttle.give_back(budget.key, slot)
        self.held.clear()

    async def hashing(self, work: Awaitable[T]) -> T:
        """Run the hash; if the gate refuses it (503) no guess was made, so its places are given back."""
        try:
            return await work
        except APIError:
            await self.give_back()
            raise

    async def succeeded(self) -> None:
        throttle = state().throttle
        for budget, slot in self.held:
            if budget.on_success is OnSuccess.RESET:
                await throttle.reset(budget.key)
            elif budget.on_success is OnSuccess.GIVE_BACK:
                await throttle.give_back(budget.key, slot)
        self.held.clear()


def client_network() -> str:
    """The client's address as throttles count it: an IPv6 client has a whole /64 to itself, so count that."""
    address = request.remote_addr or "unknown"
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is not None:
            return str(parsed.ipv4_mapped)
        return str(ipaddress.ip_network(f"{parsed}/64", strict=False))
    return str(parsed)


def _name_key(identifier: str) -> str:
    """A typed name in a throttle key: hashed, so that Redis holds no email addresses."""
    return hashlib.sha256(identifier.encode()).hexdigest()[:32]


# ---------------------------------------------------------------- device cookies


def _device_signature(user_id: int, device: str) -> str:
    key = hashlib.sha256(b"chat device cookie\0" + str(current_app.secret_key).encode()).digest()
    digest = hmac.new(key, f"{user_id}.{device}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def trusted_device(user: User | None) -> str | None:
    """The device id of this request's device cookie if it is valid and was given to `user`, else None."""
    user_id, _, rest = request.cookies.get(DEVICE_COOKIE, "").partition(".")
    device, _, signature = rest.partition(".")
    if user is None or not device or user_id != str(user.id):
        return None
    return device if hmac.compare_digest(signature, _device_signature(user.id, device)) else None


def remember_device(user: User) -> None:
    """Give this browser a device cookie for `user` (a new device id: earlier failures stay with the old one)."""
    device = secrets.token_urlsafe(16)
    value = f"{user.id}.{device}.{_device_signature(user.id, device)}"
    secure = state().settings.cookie_secure

    @after_this_request
    async def set_device_cookie(response: Response) -> Response:
        response.set_cookie(
            DEVICE_COOKIE,
            value,
            max_age=DEVICE_COOKIE_DAYS * 24 * 3600,
            httponly=True,
            samesite="Lax",
            secure=secure,
        )
        return response


# ---------------------------------------------------------------- the budgets


def _too_many(attempts: str) -> Callable[[int], APIError]:
    def refusal(seconds: int) -> APIError:
        message = f"Too many {attempts}; try again in {seconds} seconds."
        return APIError(429, "too_many_attempts", message, {"Retry-After": str(seconds)})

    return refusal


too_many_sign_ins = _too_many("failed sign-in attempts")
too_many_sign_ups = _too_many("sign-up attempts from this address")


def _address_failures(address: str) -> Budget:
    settings = state().settings
    return Budget(
        f"login:address:{address}",
        settings.login_address_failures,
        settings.login_window_seconds,
        OnSuccess.GIVE_BACK,
    )


async def start_sign_in(identifier: str, user: User | None) -> Attempt:
    """Reserve this sign-in's places before its password is checked; 429 when a budget is spent.

    `identifier` is the name as typed and normalized ("email:..." or "name:..."); `user` what it names, if any.
    """
    settings = state().settings
    attempt = Attempt(too_many_sign_ins)
    if device := trusted_device(user):
        own = Budget(
            f"login:device:{device}", settings.login_account_failures, settings.login_window_seconds, OnSuccess.RESET
        )
        if await attempt.take(own) is None:
            return attempt
        # this browser failed too often itself: from now on it is judged like any other client (OWASP)
    address = client_network()
    per_name = Budget(
        f"login:name:{_name_key(identifier)}:{address}",
        settings.login_account_failures,
        settings.login_window_seconds,
        OnSuccess.RESET,
    )
    await attempt.take_all([per_name, _address_failures(address)])
    return attempt


async def start_sign_up() -> Attempt:
    """Reserve a sign-up's place: every sign-up counts against its address, and a taken name or email counts
    as a failed sign-in from it (a probe for who has an account), so the failure's place is taken now too."""
    settings = state().settings
    address = client_network()
    sign_ups = Budget(
        f"register:address:{address}",
        settings.register_address_limit,
        settings.register_window_seconds,
        OnSuccess.KEEP,
    )
    attempt = Attempt(too_many_sign_ups)
    await attempt.take_all([sign_ups, _address_failures(address)])
    return attempt


async def start_password_check(user_id: int) -> Attempt:
    """The current password asked by /change-password: the signed-in account's own budget."""
    settings = state().settings
    budget = Budget(
        f"password:{user_id}", settings.login_account_failures, settings.login_window_seconds, OnSuccess.RESET
    )
    attempt = Attempt(too_many_sign_ins)
    await attempt.take_all([budget])
    return attempt
