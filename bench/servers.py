"""The servers under test: how each one starts (pinned to CPU 0), where its database lives, how it stops."""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from testkit.servers import CHAT_APP, ROOT, Server

from . import procs

REFERENCE_DIR = ROOT.parent / "shared" / "reference" / "flask-seed"  # as CI lays it out beside the clone

CHAT, FLASK_THREADING, FLASK_GEVENT, BARE_QUART, RAW_ASGI = (
    "chat",
    "flask-threading",
    "flask-gevent",
    "bare-quart",
    "raw-asgi",
)
ALL_SERVERS = (CHAT, FLASK_THREADING, FLASK_GEVENT, BARE_QUART, RAW_ASGI)
FLASK_SERVERS = (FLASK_THREADING, FLASK_GEVENT)


def is_chat(name: str) -> bool:
    """chat itself, or another tree of it named `chat@LABEL` (--chat-sources)."""
    return name == CHAT or name.startswith(CHAT + "@")


def chat_sources(entries: tuple[str, ...]) -> dict[str, Path]:
    """`LABEL=DIR` entries -> {"chat@LABEL": DIR}; chat itself is this tree."""
    sources = {CHAT: ROOT}
    for entry in entries:
        label, separator, folder = entry.partition("=")
        if not separator or not label or not Path(folder, "chat", "__init__.py").is_file():
            raise ValueError(f"--chat-sources wants LABEL=DIR, DIR holding a chat/ package: {entry!r}")
        sources[f"{CHAT}@{label}"] = Path(folder).resolve()
    return sources


def exactly_env(workdir: Path) -> dict[str, str]:
    """No settings but a server's own `env`: the harness says every one (the tests' defaults are not for it)."""
    return {}


@dataclass
class BenchServer(Server):
    """One server under test, pinned to CPU 0 at the harness's niceness. `schema` says which database layout it has
    ("chat", "flask" or None)."""

    settings: Callable[[Path], dict[str, str]] = exactly_env
    schema: str | None = None
    db_path: Path | None = None

    def command(self) -> list[str]:
        return procs.pinned(procs.SERVER_CPU, super().command())

    def start(self, wait: bool = True, timeout: float = 60) -> BenchServer:
        super().start(wait=False)
        procs.set_niceness(os.getpriority(os.PRIO_PROCESS, 0), self.proc.pid)  # its new session: see set_niceness
        if wait:
            self.wait_ready(timeout)
        return self


def worker_args(worker_class: str | None) -> list[str]:
    return ["--worker-class", worker_class] if worker_class else []


def chat_server(workdir: Path, worker_class: str | None, name: str = CHAT, source: Path = ROOT) -> BenchServer:
    """chat as `make run` serves it, from `source` (this tree, or another checkout: its own chat/ and migrations)."""
    db_path = workdir / "chat.sqlite3"
    env = {
        "CHAT_INSTANCE_PATH": str(workdir / "instance"),
        "CHAT_DATABASE_URL": f"sqlite://{db_path}",
        "CHAT_COOKIE_SECURE": "false",
        "CHAT_SECRET_KEY": secrets.token_urlsafe(32),
        # the per-user send limit (100 per 10 s) is a wall for flooding scripts: the bench's 40 users are one
        "CHAT_SEND_LIMIT": "1000000",
        # and 10 000 idle sockets are opened by a few users
        "CHAT_WS_PER_SESSION": "10000",
        "CHAT_WS_PER_USER": "100000",
        "CHAT_WS_FRAME_RATE": "1000000",
    }
    app = os.environ.get("BENCH_CHAT_APP", CHAT_APP)  # another entry point, for experiments
    return BenchServer(
        workdir,
        env,
        extra_args=worker_args(worker_class),
        cwd=source,
        name=name,
        app=app,
        schema="chat",
        db_path=db_path,
    )


def bare_server(name: str, workdir: Path, worker_class: str | None) -> BenchServer:
    module = {BARE_QUART: "bench.bare_quart:app", RAW_ASGI: "bench.raw_asgi:app"}[name]
    return BenchServer(workdir, extra_args=worker_args(worker_class), name=name, app=module)


def flask_server(name: str, workdir: Path, flask_bin: Path, reference_dir: Path, max_connections: int) -> BenchServer:
    db_path = workdir / "flask.sqlite3"
    env = {
        "DATABASE_URL": f"sqlite:///{db_path}",  # absolute: nothing is written into the shared reference
        "SECRET_KEY": secrets.token_urlsafe(32),
        "PYTHONDONTWRITEBYTECODE": "1",  # no __pycache__ in the shared reference either
        "HOST": "127.0.0.1",
        "PORT": "{port}",
    }
    if name == FLASK_THREADING:
        cmd = [str(flask_bin / "python"), "app.py"]
    else:
        cmd = [str(flask_bin / "gunicorn"), "-k", "gevent", "-w", "1", "-b", "127.0.0.1:{port}"]
        # the README's command, and room for the idle sockets (gunicorn's gevent worker takes 1 000 by default)
        cmd += ["--no-control-socket", "--worker-connections", str(max_connections), "app:app"]
    server = BenchServer(workdir, env, cwd=reference_dir, name=name, cmd=cmd, schema="flask", db_path=db_path)
    server.env["PORT"] = str(server.port)
    return server
