"""The servers under test: how each one starts (pinned to CPU 0), where its database lives, how it stops."""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from . import procs

ROOT = Path(__file__).resolve().parent.parent
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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Server:
    """One server process under test. `schema` says which database layout it has ("chat", "flask" or None)."""

    name: str
    cmd: list[str]
    env: dict[str, str]
    cwd: Path
    workdir: Path
    schema: str | None = None
    db_path: Path | None = None
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.workdir / f"{self.name}.log"

    def start(self, timeout: float = 60) -> Server:
        env = {key: value for key, value in os.environ.items() if not key.startswith(("CHAT_", "BENCH_"))}
        env.update(self.env)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                procs.pinned(procs.SERVER_CPU, [part.replace("{port}", str(self.port)) for part in self.cmd]),
                cwd=self.cwd,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        procs.set_niceness(os.getpriority(os.PRIO_PROCESS, 0), self.proc.pid)  # its new session: see set_niceness
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.log()[-3000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.base_url + "/healthz", timeout=2).status_code == 200:
                    return self
            time.sleep(0.05)
        self.stop()
        raise TimeoutError(f"{self.name} not ready after {timeout}s:\n{self.log()[-3000:]}")

    def worker_pid(self) -> int:
        """The process that serves requests: the master itself, or its biggest descendant (the worker)."""
        assert self.proc is not None
        candidates = procs.descendants(self.proc.pid) or [self.proc.pid]
        return max(candidates, key=procs.rss_kib)

    def stop(self, timeout: float = 15) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def hypercorn_cmd(app: str, worker_class: str | None) -> list[str]:
    cmd = [sys.executable, "-m", "hypercorn", "--bind", "127.0.0.1:{port}", "--workers", "1"]
    if worker_class:
        cmd += ["--worker-class", worker_class]
    return [*cmd, app]


def chat_server(workdir: Path, worker_class: str | None) -> Server:
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
    app = os.environ.get("BENCH_CHAT_APP", "chat:create_app()")  # another entry point, for experiments
    return Server(CHAT, hypercorn_cmd(app, worker_class), env, ROOT, workdir, "chat", db_path)


def bare_server(name: str, workdir: Path, worker_class: str | None) -> Server:
    module = {BARE_QUART: "bench.bare_quart:app", RAW_ASGI: "bench.raw_asgi:app"}[name]
    return Server(name, hypercorn_cmd(module, worker_class), {}, ROOT, workdir)


def flask_server(name: str, workdir: Path, flask_bin: Path, reference_dir: Path, max_connections: int) -> Server:
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
    server = Server(name, cmd, env, reference_dir, workdir, "flask", db_path)
    server.env["PORT"] = str(server.port)
    return server
