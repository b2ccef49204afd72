"""Helpers shared by the test modules: a real hypercorn process, and sign-up / sign-in shortcuts."""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import socket
import sqlite3
import ssl
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from chat import create_app

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "correct horse battery"
# the migrations a database brought up to date has applied, in order
MIGRATIONS = sorted(path.stem for path in (ROOT / "migrations").glob("[0-9]*.py"))

# Debian's Chromium, as the browser tests launch it (`make browser` installs it; Playwright cannot download one here)
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless=new",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

# `CHAT_TEST_BACKEND=postgres` runs the suite on PostgreSQL + Redis (`make test` runs both configurations).
BACKEND = os.environ.get("CHAT_TEST_BACKEND", "sqlite")
PG_URL = os.environ.get("CHAT_TEST_PG_URL", "postgres://postgres@127.0.0.1:5432")
REDIS_URL = os.environ.get("CHAT_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
_created_databases: dict[str, Path] = {}  # database -> the work folder it serves


def psql(sql: str, database: str = "postgres") -> None:
    subprocess.run(
        [
            "psql",
            f"{PG_URL.replace('postgres://', 'postgresql://')}/{database}",
            "-qAt",
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            sql,
        ],
        check=True,
        capture_output=True,
    )


def backend_settings(workdir: Path) -> dict[str, str]:
    """The CHAT_* settings of the configuration under test, for a test's own work folder.

    PostgreSQL + Redis: a fresh database and Redis key prefix per folder, dropped by `drop_test_databases`.
    """
    if BACKEND != "postgres":
        return {}
    tag = "chat_test_" + hashlib.sha1(str(workdir).encode()).hexdigest()[:12]
    if tag not in _created_databases:
        psql(f"DROP DATABASE IF EXISTS {tag} WITH (FORCE)")
        psql(f"CREATE DATABASE {tag}")
        _created_databases[tag] = workdir
    return {
        "CHAT_DATABASE_URL": f"{PG_URL}/{tag}",
        "CHAT_BROKER_URL": REDIS_URL,
        "CHAT_REDIS_PREFIX": f"{tag}:",
    }


def app_tracebacks(log: str) -> list[str]:
    """The tracebacks of a server log that pass through chat's own code.

    hypercorn logs one of its own when its graceful timeout cancels a connection still open at shutdown (a client
    that never closed): that is the client's doing, not an error of the application.
    """
    blocks = log.split("Traceback (most recent call last):")[1:]
    return [block for block in blocks if "/chat/" in block]


def database_rows(workdir: Path, sql: str) -> list[tuple]:
    """Rows of a query on the database of a test's work folder, read outside the server (SQLite file or psql)."""
    settings = backend_settings(workdir)
    if not settings:
        with contextlib.closing(sqlite3.connect(workdir / "instance" / "chat.sqlite3")) as connection:
            return connection.execute(sql).fetchall()
    url = settings["CHAT_DATABASE_URL"].replace("postgres://", "postgresql://")
    out = subprocess.run(["psql", url, "-qAt", "-F", "\t", "-c", sql], check=True, capture_output=True, text=True)
    return [
        tuple(int(v) if v.lstrip("-").isdigit() else v for v in line.split("\t")) for line in out.stdout.splitlines()
    ]


def drop_test_databases(under: Path | None = None) -> None:
    """Drop the databases (and Redis keys) made for work folders below `under` (all of them when None).

    A test's own folder goes when the test ends; a module-scoped server's folder lives on until the session ends.
    """
    import redis

    doomed = [tag for tag, workdir in _created_databases.items() if under is None or workdir.is_relative_to(under)]
    if not doomed:
        return
    client = redis.Redis.from_url(REDIS_URL)
    for tag in doomed:
        del _created_databases[tag]
        psql(f"DROP DATABASE IF EXISTS {tag} WITH (FORCE)")
        keys = list(client.scan_iter(match=f"{tag}:*", count=1000))
        if keys:
            client.delete(*keys)
    client.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Server:
    """A real `hypercorn "chat:create_app()"` process on a real SQLite file (or what env says)."""

    workdir: Path
    env: dict[str, str] = field(default_factory=dict)
    workers: int = 1
    extra_args: list[str] = field(default_factory=list)
    port: int = field(default_factory=free_port)
    # where hypercorn runs: relative paths in a --config file (certs/...) resolve from here
    cwd: Path = ROOT
    # set when the server speaks TLS on `port`: the context that clients (and the readiness check) trust it with
    tls: ssl.SSLContext | None = None
    proc: subprocess.Popen | None = None
    starts: int = 0

    @property
    def base_url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"{'wss' if self.tls else 'ws'}://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.workdir / f"server-{self.starts}.log"

    def full_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CHAT_")}
        env.update(
            CHAT_INSTANCE_PATH=str(self.workdir / "instance"),
            CHAT_COOKIE_SECURE="false",
            CHAT_BCRYPT_ROUNDS="4",
            # suites sign up hundreds of people from 127.0.0.1; tests of the sign-up limit set their own
            CHAT_REGISTER_ADDRESS_LIMIT="100000",
            PYTHONUNBUFFERED="1",
        )
        env.update(backend_settings(self.workdir))
        env.update(self.env)
        return env

    def start(self, wait: bool = True) -> Server:
        self.starts += 1
        cmd = [sys.executable, "-m", "hypercorn", "--bind", f"127.0.0.1:{self.port}", "--workers", str(self.workers)]
        cmd += [*self.extra_args, "chat:create_app()"]
        log = open(self.log_path, "wb")  # noqa: SIM115 - closed by the child's exit
        self.proc = subprocess.Popen(
            cmd, cwd=self.cwd, env=self.full_env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.base_url + "/healthz", timeout=1, verify=self.tls or True).status_code == 200:
                    return
            time.sleep(0.05)
        raise TimeoutError(f"server not ready after {timeout}s:\n{self.log()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            return self.proc.wait(5)

    def restart(self) -> Server:
        self.stop()
        return self.start()

    def log(self) -> str:
        return "\n".join(
            path.read_text(errors="replace") for path in sorted(self.workdir.glob("server-*.log")) if path.exists()
        )


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def tcp_connections(port: int, state: str = "connected", client_ports: tuple[int, ...] = ()) -> list[str]:
    """The server side of the TCP connections to a local port (from these client ports only, when given), in one
    state (ss's names: established, close-wait, ...; by default any in which the server still holds a socket:
    TIME-WAIT, which the kernel keeps after both sides closed, is left out)."""
    peers = " or ".join(f"dport = :{client}" for client in client_ports)
    condition = f"( sport = :{port} )" + (f" and ( {peers} )" if peers else "")
    out = subprocess.run(["ss", "-Htn", "state", state, condition], check=True, capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if line.strip() and not line.startswith(("LISTEN", "TIME-WAIT"))]


def wait_until(condition: Callable[[], bool], timeout: float = 30, what: Callable[[], str] = str) -> None:
    """Poll a condition until it holds; fail with what() after the timeout."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met after {timeout}s: {what()}")
        time.sleep(0.05)


def register(client: httpx.Client, name: str, password: str = PASSWORD) -> dict:
    response = client.post("/register", json={"username": name, "email": f"{name}@example.org", "password": password})
    assert response.status_code == 201, response.text
    return response.json()


def login(client: httpx.Client, name: str, password: str = PASSWORD) -> dict:
    response = client.post("/login", json={"username": name, "password": password})
    assert response.status_code == 200, response.text
    return response.json()


def signed_in_client(base_url: str, name: str, **kwargs) -> tuple[httpx.Client, dict]:
    """A new httpx client with a fresh account signed in."""
    client = httpx.Client(base_url=base_url, timeout=30, **kwargs)
    register(client, name)
    user = login(client, name)
    return client, user


# ---- the same through Quart's test client (async)

TEST_SETTINGS = {"bcrypt_rounds": 4, "cookie_secure": False, "hash_concurrency": 2}


@contextlib.asynccontextmanager
async def started_app(tmp_path: Path, **overrides) -> AsyncIterator:
    """A fresh application on its own database (for tmp_path, in the configuration under test), started.

    Tortoise's connections are global: start one application per test.
    """
    backend = {key.removeprefix("CHAT_").lower(): value for key, value in backend_settings(tmp_path).items()}
    application = create_app(instance_path=tmp_path / "instance", **{**TEST_SETTINGS, **backend, **overrides})
    async with application.test_app():
        yield application


async def assert_error(response, status: int, error: str | None = None) -> dict:
    """The response is API.md's JSON error body with this status (and code); returns the body."""
    text = await response.get_data(as_text=True)
    assert response.status_code == status, text
    assert response.mimetype == "application/json", text
    body = await response.get_json()
    assert isinstance(body.get("error"), str) and isinstance(body.get("message"), str), body
    if error is not None:
        assert body["error"] == error, body
    return body


async def api_register(client, name: str, password: str = PASSWORD) -> dict:
    response = await client.post(
        "/register", json={"username": name, "email": f"{name}@example.org", "password": password}
    )
    assert response.status_code == 201, await response.get_data(as_text=True)
    return await response.get_json()


async def api_login(client, name: str, password: str = PASSWORD) -> dict:
    response = await client.post("/login", json={"username": name, "password": password})
    assert response.status_code == 200, await response.get_data(as_text=True)
    return await response.get_json()
