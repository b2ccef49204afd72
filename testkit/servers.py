"""A real server process on 127.0.0.1, as the tests and the benchmark harness start it: `free_port` and `Server`."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from . import probes
from .backends import backend_settings

ROOT = Path(__file__).resolve().parent.parent
CHAT_APP = "chat:create_app()"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def suite_settings(workdir: Path) -> dict[str, str]:
    """The settings a test's server starts with, under what the test adds: its instance folder in the test's work
    folder, bcrypt at its lowest cost, and the configuration under test (`backends`)."""
    return {
        "CHAT_INSTANCE_PATH": str(workdir / "instance"),
        "CHAT_COOKIE_SECURE": "false",
        "CHAT_BCRYPT_ROUNDS": "4",
        # suites sign up hundreds of people from 127.0.0.1; tests of the sign-up limit set their own
        "CHAT_REGISTER_ADDRESS_LIMIT": "100000",
        "PYTHONUNBUFFERED": "1",
        **backend_settings(workdir),
    }


def hypercorn_cmd(app: str, port: int, workers: int = 1, extra_args: tuple[str, ...] | list[str] = ()) -> list[str]:
    cmd = [sys.executable, "-m", "hypercorn", "--bind", f"127.0.0.1:{port}", "--workers", str(workers)]
    return [*cmd, *extra_args, app]


@dataclass
class Server:
    """A real server process: by default `hypercorn "chat:create_app()"` with `suite_settings` and then `env`.

    `cmd` runs another command instead (each "{port}" in it filled in), and `settings` replaces the tests' own
    (the benchmark harness gives every server exactly its `env`). The environment is this process's without any
    CHAT_* or BENCH_* variable: a server gets only the settings it is given.
    """

    workdir: Path
    env: dict[str, str] = field(default_factory=dict)
    workers: int = 1
    extra_args: list[str] = field(default_factory=list)
    port: int = field(default_factory=free_port)
    # where the server runs: relative paths in a --config file (certs/...) resolve from here, and the `chat`
    # package found here is the one served (`python -m` puts the working folder first on the import path)
    cwd: Path = ROOT
    # set when the server speaks TLS on `port`: the context that clients (and the readiness check) trust it with
    tls: ssl.SSLContext | None = None
    name: str = "server"
    app: str = CHAT_APP
    cmd: list[str] | None = None
    settings: Callable[[Path], dict[str, str]] = suite_settings
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
        return self.workdir / f"{self.name}-{self.starts}.log"

    def full_env(self) -> dict[str, str]:
        env = {key: value for key, value in os.environ.items() if not key.startswith(("CHAT_", "BENCH_"))}
        return {**env, **self.settings(self.workdir), **self.env}

    def command(self) -> list[str]:
        if self.cmd is not None:
            return [part.replace("{port}", str(self.port)) for part in self.cmd]
        return hypercorn_cmd(self.app, self.port, self.workers, self.extra_args)

    def start(self, wait: bool = True, timeout: float = 30) -> Server:
        self.starts += 1
        log = open(self.log_path, "wb")  # noqa: SIM115 - closed by the child's exit
        self.proc = subprocess.Popen(
            self.command(),
            cwd=self.cwd,
            env=self.full_env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        if wait:
            self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 30) -> None:
        """Until GET /healthz answers 200; a server that exits first, or takes too long (stopped), raises."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.log()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.base_url + "/healthz", timeout=2, verify=self.tls or True).status_code == 200:
                    return
            time.sleep(0.05)
        self.stop()
        raise TimeoutError(f"{self.name} not ready after {timeout}s:\n{self.log()}")

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
        """Everything the server wrote, every start of it."""
        paths = sorted(self.workdir.glob(f"{self.name}-*.log"))
        return "\n".join(path.read_text(errors="replace") for path in paths if path.exists())

    def worker_pid(self) -> int:
        """The process that serves requests: the master itself, or its biggest descendant (the worker)."""
        assert self.proc is not None
        candidates = probes.descendants(self.proc.pid) or [self.proc.pid]
        return max(candidates, key=probes.rss_kib)
