"""Schemathesis against the app's own /openapi.json, on a real hypercorn process and a real database.

Every operation gets a bounded number of generated requests, valid and invalid (the examples, coverage and
fuzzing phases), with every check on: no 5xx, every status, content type, header and body as documented,
invalid data refused, valid data accepted, no operation that ignores its session cookie. Then the stateful
run follows the spec's OpenAPI links (register -> login -> send -> get-messages / mark-read) with one
cookie jar per scenario, so requests carry real accounts, real ids and real sessions.
"""

from __future__ import annotations

import itertools
import shutil
import tempfile
import time
from collections import Counter
from http.cookies import SimpleCookie
from pathlib import Path

import hypothesis
import orjson
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase

from chat import create_app
from testkit.http import PASSWORD
from testkit.servers import Server

EXAMPLES_PER_OPERATION = 40
STATEFUL_SCENARIOS = 60
STATEFUL_SECONDS = 40
SETTINGS = hypothesis.settings(
    deadline=None,  # a real server on a 2-core machine: the time of one call says nothing
    suppress_health_check=list(HealthCheck),
    derandomize=True,  # the same cases every run: a failure in CI is a failure on a laptop
    database=None,
    phases=[Phase.explicit, Phase.generate],  # no shrinking: a failure prints its request as it is
)
# Two rules of API.md that no JSON Schema can say answer 400 to schema-valid input: a reply_to must be a message
# of the same room, and a reaction a single emoji (a path parameter). There a 400 is the contract, not a rejection
# of valid data; every other check stays on.
BUSINESS_400 = {"expected-statuses": ["2xx", "3xx", "400", "401", "403", "404", "409", "429", "5xx"]}
CONFIG = {
    "checks": {"enabled": True},
    "generation": {"max-examples": EXAMPLES_PER_OPERATION},
    "operations": [
        {"include-path": "/send-message", "checks": {"positive_data_acceptance": BUSINESS_400}},
        {"include-path-regex": "^/messages/.*/reactions/", "checks": {"positive_data_acceptance": BUSINESS_400}},
    ],
}


# The port is reserved now, so that the schema below (built at import, as @schema.parametrize needs) can point
# at the server that the module's fixture starts later.
SERVER = Server(
    workdir=Path(tempfile.mkdtemp(prefix="chat-fuzz-")),
    # The per-user send limit and the login throttle would answer 429 (documented, so no check fails) to
    # most of the run: lift them so that the fuzzer reaches the code behind them.
    env={
        "CHAT_SEND_LIMIT": "1000000",
        "CHAT_LOGIN_ADDRESS_FAILURES": "1000000",
        # failures count per name as typed, so an email that failed 5 times stays locked even after its
        # account signs in by username: the stateful run's scenarios would stall on 429s
        "CHAT_LOGIN_ACCOUNT_FAILURES": "1000000",
        "CHAT_REGISTER_ADDRESS_LIMIT": "1000000",
    },
)


def app_spec() -> dict:
    """The application's /openapi.json document, built from the application object (no server needed)."""
    app = create_app(instance_path=SERVER.workdir / "spec", secret_key="spec only", cookie_secure=False)
    return orjson.loads(orjson.dumps(app.extensions["QUART_SCHEMA"].openapi_provider.schema()))


def load_schema() -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_dict(app_spec(), config=schemathesis.Config.from_dict(CONFIG))


@pytest.fixture(scope="module", autouse=True)
def fuzz_server():
    SERVER.start()
    yield SERVER
    SERVER.stop()
    log = SERVER.log()
    shutil.rmtree(SERVER.workdir, ignore_errors=True)
    assert "Traceback" not in log, log
    assert " 500 " not in log


def signed_in_session(name: str) -> requests.Session:
    session = requests.Session()
    account = {"username": name, "email": f"{name}@example.org", "password": PASSWORD}
    assert session.post(f"{SERVER.base_url}/register", json=account, timeout=30).status_code in (201, 409)
    response = session.post(f"{SERVER.base_url}/login", json={"username": name, "password": PASSWORD}, timeout=30)
    assert response.status_code == 200, response.text
    return session


schema = load_schema()


# Schemathesis sets credentials when it generates a case, which for the coverage phase is at collection, before
# the server runs: the auth provider marks the cases that carry the session, and each call puts the real cookie in.
SESSION_PLACEHOLDER = "signed-in"


@schema.auth()
class SessionCookie:
    def get(self, case, context):
        return SESSION_PLACEHOLDER

    def set(self, case, data, context):
        case.cookies = {**(case.cookies or {}), "chat_session": data}


class Account:
    """The session of the account that the stateless calls use; signed in again after a 401 (a fuzzed
    /logout revokes it)."""

    cookie: str | None = None

    @classmethod
    def current(cls) -> str:
        if cls.cookie is None:
            cls.cookie = signed_in_session("fuzzer").cookies["chat_session"]
        return cls.cookie


def with_session(case, cookie: str | None) -> None:
    """Put the real session cookie where the auth provider marked the case (nowhere else: a case that
    tests a missing or a wrong cookie keeps what it has)."""
    if (case.cookies or {}).get("chat_session") == SESSION_PLACEHOLDER:
        if cookie is None or not case.operation.definition.raw.get("security"):
            del case.cookies["chat_session"]  # an operation that needs no session, or a jar not signed in
        else:
            case.cookies["chat_session"] = cookie


def test_the_fuzzed_spec_is_the_one_the_server_serves(fuzz_server):
    assert requests.get(fuzz_server.base_url + "/openapi.json", timeout=10).json() == app_spec()


@schema.parametrize()
@SETTINGS
def test_every_operation_keeps_its_documented_contract(case):
    with_session(case, Account.current())
    response = case.call(base_url=SERVER.base_url)
    if response.status_code == 401:
        Account.cookie = None
    case.validate_response(response, transport_kwargs={"base_url": SERVER.base_url})


def session_cookie_set_by(response) -> str | None | bool:
    """The chat_session value a response sets, None when it clears it, False when it does not touch it."""
    for header in response.headers.get("set-cookie", []):
        cookie = SimpleCookie()
        cookie.load(header)
        if "chat_session" in cookie:
            morsel = cookie["chat_session"]
            return None if not morsel.value or morsel["max-age"] == "0" else morsel.value
    return False


def test_stateful_register_login_send_read(fuzz_server):
    """Scenarios built from the spec's links, each signed in as whoever its last /login named.

    (The cookie is kept by hand, not in a requests session: schemathesis' auth probes resend a request
    without the cookie, which a session's cookie jar would quietly put back.)
    """
    seen: Counter[str] = Counter()

    class Scenario(schema.as_state_machine()):
        def setup(self) -> None:
            self.cookie: str | None = None

        def before_call(self, case) -> None:
            with_session(case, self.cookie)

        def after_call(self, response, case) -> None:
            super().after_call(response, case)
            if (cookie := session_cookie_set_by(response)) is not False:
                self.cookie = cookie
            seen[f"{case.method} {case.path} {response.status_code}"] += 1
            if case.path == "/get-messages" and response.status_code == 200 and response.json()["messages"]:
                seen["messages read back"] += 1

        def teardown(self) -> None:
            seen["scenarios"] += 1

        def get_call_kwargs(self, case):
            return {"base_url": SERVER.base_url}

    settings = hypothesis.settings(SETTINGS, derandomize=False, stateful_step_count=8)
    deadline = time.monotonic() + STATEFUL_SECONDS
    steps = ("POST /register 201", "POST /login 200", "POST /send-message 201", "messages read back")
    for run in itertools.count():
        # Which scenarios a seed draws depends on the whole spec (a response documented anywhere changes them):
        # go on past the scenario count until every link was followed, within the deadline.
        enough = seen["scenarios"] >= STATEFUL_SCENARIOS and all(seen[step] for step in steps)
        if enough or time.monotonic() > deadline:
            break
        try:
            hypothesis.seed(run)(Scenario).run(settings=hypothesis.settings(settings, max_examples=STATEFUL_SCENARIOS))
        except hypothesis.errors.Flaky:
            # Hypothesis replayed a scenario and the server answered otherwise (the account it registered the
            # first time exists now): not a failure of the API, so start a new run, as schemathesis' own does.
            continue
    # the links were followed: accounts made, signed in, written to and read back
    for step in steps:
        assert seen[step], f"{step}: {sorted(seen.items())}"
