"""Typed settings, read once from the CHAT_* environment variables (API.md, "Running and configuration")."""

from __future__ import annotations

import os
import secrets
import time
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .hosts import HOST, normal_host
from .instance import private_folder

ENV_PREFIX = "CHAT_"


class ConfigError(RuntimeError):
    """A setting has a value chat cannot run with; the message names the variable."""


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    instance_path: Path = Path("instance")
    database_url: str | None = None  # None: an SQLite file in the instance folder
    broker_url: str = "memory://"
    secret_key: str | None = None  # None: generated once and kept in the instance folder
    cookie_secure: bool = True
    allowed_origins: tuple[str, ...] = ()
    # Host names (optionally :port) this server answers for; empty: any. See chat/hosts.py.
    allowed_hosts: tuple[str, ...] = ()
    migrate: bool = True
    socketio: bool = True  # serve /socket.io/ for the original application's Socket.IO clients

    max_body_bytes: int = Field(64 * 1024, ge=1024, le=16 * 1024 * 1024)
    session_days: int = Field(30, ge=1, le=365)
    # Cost 12 is the floor in production; lower values exist only so that test suites run quickly.
    bcrypt_rounds: int = Field(12, ge=4, le=16)
    # At most this many hashes run at once (one per core keeps the event loop's core usable) ...
    hash_concurrency: int = Field(default_factory=lambda: max(1, len(usable_cpus())), ge=1, le=64)
    # ... and at most this many wait; more are answered 503 at once instead of queueing without bound.
    hash_queue: int = Field(16, ge=0, le=10_000)

    # failed logins per account name per client address (or per trusted browser) per window: see attempts.py
    login_account_failures: int = Field(5, ge=1)
    login_address_failures: int = Field(100, ge=1)  # per client address: generous, NATs are shared
    login_window_seconds: int = Field(15 * 60, ge=1)
    # sign-ups per client address per window (a taken name or email counts as a failed login too)
    register_address_limit: int = Field(20, ge=1)
    register_window_seconds: int = Field(3600, ge=1)

    # per user, over HTTP and websockets together: generous for people, a wall for a flooding script
    send_limit: int = Field(100, ge=1)
    send_window_seconds: int = Field(10, ge=1)

    # open websockets per session and per user, in each worker: past them a handshake is refused with 429
    ws_per_session: int = Field(10, ge=1, le=10_000)
    ws_per_user: int = Field(20, ge=1, le=100_000)
    # frames a second that one user's sockets are read at together, past a burst (sockets.FrameBudget)
    ws_frame_rate: float = Field(20.0, gt=0, le=1_000_000)
    ws_frame_burst: int = Field(60, ge=1, le=1_000_000)

    db_pool_size: int = Field(10, ge=1, le=200)  # PostgreSQL connections per worker
    redis_pool_size: int = Field(64, ge=2, le=10_000)  # Redis connections per worker; more calls wait their turn
    redis_prefix: str = Field("chat:", max_length=64)  # keys and channels: several deployments can share Redis
    presence_ttl_seconds: float = Field(30.0, ge=1, le=3600)  # how long a dead worker's users stay online

    # The port of hypercorn's TLS bind, when it serves plain HTTP too (hypercorn.toml's insecure_bind):
    # every plain-HTTP request is then redirected there. None: plain HTTP is served as such (make run).
    https_port: int | None = Field(None, ge=1, le=65535)
    # Strict-Transport-Security max-age on HTTPS responses; 0 tells browsers to forget an earlier one.
    hsts_seconds: int = Field(365 * 24 * 3600, ge=0, le=2 * 365 * 24 * 3600)

    # a deleted account's messages stay in the others' history, as from "deleted user": with their content
    # removed (the default: deleting an account is asking to be forgotten), or kept as written
    deleted_user_content: Literal["remove", "keep"] = "remove"

    # "text": hypercorn's access log and the usual lines; "json": one JSON object per line, the application writing
    # the access log itself with request ids, routes and user ids (chat/logs.py)
    log_format: Literal["text", "json"] = "text"

    # Prometheus metrics (chat/metrics.py): GET /metrics on the application's own address, and/or on an address
    # of its own (host:port) that only the monitoring system reaches. Either one turns recording on.
    metrics: bool = False
    metrics_bind: str | None = None
    # where the workers' metric files are kept (shared by every worker of one deployment); None: instance/metrics
    metrics_dir: Path | None = None

    # Files (docs/files.md): where they are kept, file://PATH (None: files/ in the instance folder) or
    # s3://BUCKET/PREFIX (any S3-compatible store; credentials and region from the usual AWS_* variables)
    files_url: str | None = None
    s3_endpoint_url: str | None = None
    max_upload_bytes: int = Field(10 * 1024 * 1024, ge=1, le=10 * 1024 * 1024 * 1024)
    # per user: uploads per window, and the bytes of uploaded files not yet sent in a message
    upload_limit: int = Field(30, ge=1)
    upload_window_seconds: int = Field(60, ge=1)
    unsent_upload_bytes: int = Field(200 * 1024 * 1024, ge=1)
    unsent_file_seconds: int = Field(24 * 3600, ge=1)  # an upload never attached is removed after this
    # a write this long untouched is a crashed upload's leftover (its temporary file, its S3 multipart upload)
    upload_stale_seconds: int = Field(15 * 60, ge=1)
    image_max_pixels: int = Field(50_000_000, ge=1)  # larger images are kept as plain files (decompression bombs)

    @field_validator("database_url")
    @classmethod
    def _known_database(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("sqlite://", "postgres://", "postgresql://")):
            raise ValueError("must start with sqlite:// or postgres://")
        return value

    @field_validator("broker_url")
    @classmethod
    def _known_broker(cls, value: str) -> str:
        if not value.startswith(("memory://", "redis://", "rediss://")):
            raise ValueError("must be memory:// or redis://host:port/db")
        return value

    @field_validator("files_url")
    @classmethod
    def _known_store(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("file://", "s3://")):
            raise ValueError("must be file://PATH or s3://BUCKET/PREFIX")
        return value

    @field_validator("allowed_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",")]
        if isinstance(value, list | tuple):
            origins = tuple(part.rstrip("/").lower() for part in value if part)
            for origin in origins:
                if not origin.startswith(("http://", "https://")):
                    raise ValueError(f"{origin!r} is not an origin like https://chat.example.org")
            return origins
        return value

    @field_validator("allowed_hosts", mode="before")
    @classmethod
    def _split_hosts(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = value.split(",")
        if isinstance(value, list | tuple):
            hosts = tuple(normal_host(part.strip()) for part in value if part.strip())
            for host in hosts:
                if not HOST.fullmatch(host):
                    raise ValueError(f"{host!r} is not a host name like chat.example.org or chat.example.org:8443")
            return hosts
        return value

    @field_validator("metrics_bind")
    @classmethod
    def _host_and_port(cls, value: str | None) -> str | None:
        if value is None:
            return None
        host, _, port = value.rpartition(":")
        if not host or not port.isascii() or not port.isdigit() or not 1 <= int(port) <= 65535:
            raise ValueError("must be host:port, like 127.0.0.1:9100")
        return value

    @property
    def metrics_enabled(self) -> bool:
        return self.metrics or self.metrics_bind is not None

    @property
    def resolved_metrics_dir(self) -> Path:
        return (self.metrics_dir or self.instance_path / "metrics").resolve()

    @property
    def resolved_files_url(self) -> str:
        return self.files_url or f"file://{self.instance_path.resolve() / 'files'}"

    @property
    def sqlite_path(self) -> Path | None:
        url = self.resolved_database_url
        if not url.startswith("sqlite://") or url == "sqlite://:memory:":
            return None
        return Path(url.removeprefix("sqlite://").split("?", 1)[0])

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite://{self.instance_path.resolve() / 'chat.sqlite3'}"

    @property
    def is_postgres(self) -> bool:
        return self.resolved_database_url.startswith(("postgres://", "postgresql://"))


def usable_cpus() -> set[int]:
    """The cores this process may run on (a server pinned with taskset gets fewer than the machine has)."""
    if hasattr(os, "sched_getaffinity"):
        return os.sched_getaffinity(0)
    return set(range(os.cpu_count() or 1))


def load_settings(environ: dict[str, str] | None = None, **overrides: Any) -> Settings:
    """Settings from the environment, with keyword overrides (create_app's) taking precedence."""
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for name in Settings.model_fields:
        raw = environ.get(ENV_PREFIX + name.upper())
        if raw is not None and raw != "":
            values[name] = raw
    values.update(overrides)
    try:
        return Settings(**values)
    except ValidationError as exc:
        problems = []
        for error in exc.errors(include_input=False):
            name = str(error["loc"][0]) if error["loc"] else "?"
            source = f"create_app({name}=...)" if name in overrides else ENV_PREFIX + name.upper()
            problems.append(f"{source}: {error['msg']}")
        raise ConfigError("invalid configuration: " + "; ".join(problems)) from None


def instance_secret_key(instance_path: Path) -> str:
    """The session-signing key kept in the instance folder, created (mode 0600) on first start.

    O_EXCL makes concurrent first starts agree: one worker writes, the others read what it wrote.
    """
    private_folder(instance_path)
    key_file = instance_path / "secret_key"
    try:
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        for _ in range(50):
            key = key_file.read_text().strip()
            if key:
                return key
            time.sleep(0.01)  # another worker created the file and is writing it
        raise ConfigError(f"{key_file} is empty: delete it to generate a new key") from None
    key = secrets.token_urlsafe(48)
    with os.fdopen(fd, "w") as handle:
        handle.write(key + "\n")
    return key
