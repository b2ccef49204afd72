"""The instance folder is the server's alone (issue 11): folder 0700, the secret key and the SQLite files 0600,
whatever the umask, and wider modes found at start-up are narrowed."""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

import httpx
import pytest

from chat import create_app
from chat.config import load_settings
from chat.db import tortoise_config
from testkit.backends import BACKEND
from testkit.http import PASSWORD, signed_in_client
from testkit.servers import Server


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@contextlib.contextmanager
def umask(value: int):
    """The umask a server started inside inherits: 0 would leave every file as open as its creator asks."""
    previous = os.umask(value)
    try:
        yield
    finally:
        os.umask(previous)


def test_a_server_started_with_umask_0_keeps_its_instance_folder_private(tmp_path):
    server = Server(workdir=tmp_path, extra_args=["--access-logfile", "-"])
    with umask(0):
        server.start()
    try:
        alice, _ = signed_in_client(server.base_url, "alice")
        _bob, bob = signed_in_client(server.base_url, "bob")
        assert alice.post("/send-message", json={"receiver_id": bob["id"], "content": "hi"}).status_code == 201
        instance = tmp_path / "instance"
        files = ["secret_key"]
        if BACKEND != "postgres":
            # the write-ahead log and its index exist while the database is open: SQLite gives them the database
            # file's own mode
            files += ["chat.sqlite3", "chat.sqlite3-wal", "chat.sqlite3-shm", "chat.sqlite3.migrate.lock"]
        assert {name: oct(mode(instance / name)) for name in files} == dict.fromkeys(files, oct(0o600))
        assert sorted(p.name for p in instance.iterdir()) == sorted(files)  # nothing else, nothing unchecked
        assert mode(instance) == 0o700
    finally:
        server.stop()
    assert "Traceback" not in server.log(), server.log()


def test_wider_modes_found_at_start_up_are_narrowed(tmp_path):
    instance = tmp_path / "instance"
    instance.mkdir(mode=0o755)
    os.chmod(instance, 0o755)
    (instance / "secret_key").write_text("a key from an older version\n")
    (instance / "chat.sqlite3").write_bytes(b"")  # an empty file is an empty SQLite database
    (instance / "notes.txt").write_text("anything else kept here\n")
    (instance / "read-only").write_text("narrower stays narrower\n")
    for name, wide in (("secret_key", 0o644), ("chat.sqlite3", 0o666), ("notes.txt", 0o640), ("read-only", 0o400)):
        os.chmod(instance / name, wide)

    app = create_app(instance_path=instance)

    assert app.secret_key == "a key from an older version"
    assert mode(instance) == 0o700
    modes = {p.name: oct(mode(p)) for p in instance.iterdir()}
    assert modes == {"secret_key": "0o600", "chat.sqlite3": "0o600", "notes.txt": "0o600", "read-only": "0o400"}


def test_an_sqlite_file_elsewhere_is_created_0600_in_a_new_0700_folder(tmp_path):
    database = tmp_path / "data" / "nested" / "chat.sqlite3"
    settings = load_settings({}, instance_path=tmp_path / "instance", database_url=f"sqlite://{database}")
    with umask(0):
        tortoise_config(settings)
    assert mode(database) == 0o600 and database.stat().st_size == 0
    assert mode(database.parent) == 0o700


@pytest.mark.skipif(BACKEND == "postgres", reason="about the SQLite file")
def test_an_existing_database_keeps_its_content_and_gets_narrowed(tmp_path):
    server = Server(workdir=tmp_path).start()
    try:
        signed_in_client(server.base_url, "alice")
    finally:
        server.stop()
    for path in (tmp_path / "instance").glob("chat.sqlite3*"):
        os.chmod(path, 0o644)
    server.start()
    try:
        with httpx.Client(base_url=server.base_url) as client:
            assert client.post("/login", json={"username": "alice", "password": PASSWORD}).is_success
        files = ("chat.sqlite3", "chat.sqlite3-wal", "chat.sqlite3-shm", "chat.sqlite3.migrate.lock")
        assert {p.name: mode(p) for p in (tmp_path / "instance").glob("chat.sqlite3*")} == dict.fromkeys(files, 0o600)
    finally:
        server.stop()
    assert "Traceback" not in server.log(), server.log()
