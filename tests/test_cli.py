"""The `chat` console command (`chat migrate`, `chat createuser`), run as a real process on a real SQLite file."""

from __future__ import annotations

import io
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from chat import cli

from .support import PASSWORD, Server, login

CHAT = Path(sys.executable).with_name("chat")  # the console script installed next to this interpreter


def run_chat(tmp_path: Path, *args: str, stdin: str = "", **env: str) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("CHAT_")}
    environment.update(CHAT_INSTANCE_PATH=str(tmp_path / "instance"), CHAT_BCRYPT_ROUNDS="4", **env)
    # run outside the source tree: the installed command must find its migrations on its own
    return subprocess.run(
        [str(CHAT), *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=environment,
        cwd=tmp_path,
        timeout=60,
        check=False,
    )


def rows(database: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(database) as connection:
        return connection.execute(sql).fetchall()


@pytest.mark.sqlite_only
def test_migrate_then_createuser_then_serve(tmp_path):
    """What `make run` does, with an account made on the command line."""
    migrated = run_chat(tmp_path, "migrate")
    assert migrated.returncode == 0, migrated.stderr
    assert "up to date" in migrated.stdout
    database = tmp_path / "instance" / "chat.sqlite3"
    # every migration once, the first one first (the installed command's tree may be older than this one)
    applied = rows(database, "SELECT app, name FROM tortoise_migrations ORDER BY id")
    assert applied[0] == ("models", "0001_initial") and len(set(applied)) == len(applied)
    assert rows(database, "PRAGMA journal_mode") == [("wal",)]

    secret = "  a passphrase with spaces, past seventy-two bytes of bcrypt input: ünïcödé 🔑  "
    create = ("createuser", "--username", "Admin", "--email", "Admin@Example.org", "--password-stdin")
    created = run_chat(tmp_path, *create, stdin=secret + "\n")
    assert created.returncode == 0, created.stderr
    assert "created user 1 (Admin)" in created.stdout
    assert secret.strip() not in created.stdout + created.stderr
    [(username, key, email, password_hash)] = rows(
        database, "SELECT username, username_key, email, password_hash FROM users"
    )
    assert (username, key, email) == ("Admin", "admin", "admin@example.org")
    assert password_hash.startswith("$2b$04$")

    taken = ("createuser", "--username", "ADMIN", "--email", "other@example.org", "--password-stdin")
    again = run_chat(tmp_path, *taken, stdin=PASSWORD)
    assert again.returncode == 1 and "already registered" in again.stderr
    assert "Traceback" not in again.stderr

    # the account signs in over HTTP, with exactly that password, on a server told not to migrate
    server = Server(workdir=tmp_path, env={"CHAT_MIGRATE": "false"}).start()
    try:
        with httpx.Client(base_url=server.base_url, timeout=10) as client:
            assert login(client, "admin", secret)["username"] == "Admin"
            wrong = client.post("/login", json={"username": "admin", "password": secret.strip()})
            assert wrong.status_code == 401
    finally:
        server.stop()
    assert "Traceback" not in server.log()


@pytest.mark.sqlite_only
def test_createuser_migrates_a_fresh_database_itself(tmp_path):
    args = ("createuser", "--username", "alice", "--email", "alice@example.org", "--password-stdin")
    result = run_chat(tmp_path, *args, stdin=PASSWORD)
    assert result.returncode == 0, result.stderr
    assert rows(tmp_path / "instance" / "chat.sqlite3", "SELECT username FROM users") == [("alice",)]


# What follows never reaches the database: `chat.cli.main` in this process is enough, and much faster.


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (("--username", "a!", "--email", "a@example.org"), "username"),
        (("--username", "alice", "--email", "nope"), "email"),
        (("--username", "alice", "--email", "a@example.org"), "password"),  # the stdin password is too short
    ],
)
def test_createuser_validates_like_register(tmp_path, monkeypatch, capsys, args, complaint):
    secret = "short" if complaint == "password" else "Secret-Value-123"
    monkeypatch.setenv("CHAT_INSTANCE_PATH", str(tmp_path / "instance"))
    monkeypatch.setattr(sys, "stdin", io.StringIO(secret + "\n"))
    assert cli.main(["createuser", *args, "--password-stdin"]) == 2
    output = capsys.readouterr()
    assert complaint in output.err and secret not in output.out + output.err
    assert not (tmp_path / "instance" / "chat.sqlite3").exists()


def test_a_wrong_environment_names_the_variable(monkeypatch, capsys):
    monkeypatch.setenv("CHAT_DATABASE_URL", "mysql://x")
    assert cli.main(["migrate"]) == 2
    assert "CHAT_DATABASE_URL" in capsys.readouterr().err


def test_a_command_is_required(capsys):
    with pytest.raises(SystemExit) as exited:
        cli.main([])
    assert exited.value.code == 2 and "usage" in capsys.readouterr().err.lower()
