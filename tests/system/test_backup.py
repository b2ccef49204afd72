"""`chat backup PATH` during a send burst, then the restore drill of docs/operations.md: the copy is whole, holds
every message acknowledged before it started, and a server started on it answers as before."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import subprocess
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from testkit.backends import BACKEND
from testkit.http import login
from testkit.servers import Server, backend_settings
from testkit.ws import new_person

from .test_admin_cli import chat

BURSTING = {"CHAT_SEND_LIMIT": "1000000"}  # the burst is the point here, not the send rate's limit


async def burst(person, other, stop: asyncio.Event, acknowledged: list[int]) -> None:
    """Send until told to stop, recording each acknowledged id as its answer arrives."""
    async with person.async_http() as client:
        number = 0
        while not stop.is_set():
            number += 1
            answer = await client.post("/send-message", json={"receiver_id": other.id, "content": f"burst {number}"})
            assert answer.status_code == 201, answer.text
            acknowledged.append(answer.json()["id"])


@dataclass
class Burst:
    before: list[int]  # ids acknowledged before the backup started
    everything: list[int]  # every id acknowledged
    alice: str  # her username
    bob_id: int


async def backup_during_a_burst(server: Server, workdir: Path, target: Path) -> Burst:
    alice, bob = new_person(server, "alice"), new_person(server, "bob")
    stop, acknowledged = asyncio.Event(), []
    senders = [asyncio.create_task(burst(a, b, stop, acknowledged)) for a, b in ((alice, bob), (bob, alice))]
    try:
        while len(acknowledged) < 50:
            await asyncio.sleep(0.02)
        before = list(acknowledged)
        made = await asyncio.to_thread(chat, workdir, "backup", str(target))
        assert made.returncode == 0, made.stderr
        assert "backup written to" in made.stdout
        await asyncio.sleep(0.3)  # the burst goes on after the copy
    finally:
        stop.set()
        await asyncio.gather(*senders)
    assert len(acknowledged) > len(before)
    return Burst(before, acknowledged, alice.user["username"], bob.id)


@pytest.mark.sqlite_only
async def test_sqlite_backup_during_a_burst_and_the_restore_drill(tmp_path):
    server = Server(workdir=tmp_path, env=BURSTING).start()
    target = tmp_path / "backups" / "chat-copy.sqlite3"
    target.parent.mkdir()
    try:
        burst = await backup_during_a_burst(server, tmp_path, target)
    finally:
        server.stop()
    assert "Traceback" not in server.log(), server.log()
    assert oct(target.stat().st_mode & 0o777) == "0o600"
    with contextlib.closing(sqlite3.connect(target)) as copy:
        assert copy.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        copied = {row[0] for row in copy.execute("SELECT id FROM messages")}
    assert set(burst.before) <= copied <= set(burst.everything)

    # the drill: the server stopped, the copy put in place of the database (its WAL files too), started again
    database = tmp_path / "instance" / "chat.sqlite3"
    for leftover in (database, database.with_name("chat.sqlite3-wal"), database.with_name("chat.sqlite3-shm")):
        leftover.unlink(missing_ok=True)
    target.rename(database)
    restored = Server(workdir=tmp_path).start()
    try:
        assert_served(restored, burst.alice, burst.bob_id, copied)
    finally:
        restored.stop()
    assert "Traceback" not in restored.log()


@pytest.mark.skipif(BACKEND != "postgres", reason="pg_dump: the PostgreSQL configuration")
async def test_postgres_backup_during_a_burst_and_the_restore_drill(tmp_path):
    server = Server(workdir=tmp_path, env=BURSTING).start()
    target = tmp_path / "chat.dump"
    try:
        burst = await backup_during_a_burst(server, tmp_path, target)
    finally:
        server.stop()
    assert "Traceback" not in server.log(), server.log()
    # the drill: pg_restore into an empty database, a server on it
    fresh = backend_settings(tmp_path / "restored")  # a new, empty database (dropped after the test)
    url = fresh["CHAT_DATABASE_URL"].replace("postgres://", "postgresql://")
    restore = subprocess.run(["pg_restore", "--no-owner", "--dbname", url, str(target)], capture_output=True, text=True)
    assert restore.returncode == 0, restore.stderr
    out = subprocess.run(["psql", url, "-qAt", "-c", "SELECT id FROM messages"], check=True, capture_output=True)
    copied = {int(line) for line in out.stdout.decode().split()}
    assert set(burst.before) <= copied <= set(burst.everything)
    restored = Server(workdir=tmp_path, env={"CHAT_DATABASE_URL": fresh["CHAT_DATABASE_URL"]}).start()
    try:
        assert_served(restored, burst.alice, burst.bob_id, copied)
    finally:
        restored.stop()
    assert "Traceback" not in restored.log()


def assert_served(server: Server, alice: str, bob_id: int, copied: set[int]) -> None:
    """Alice signs in with her password and her conversation with bob is every copied message, in order."""
    with httpx.Client(base_url=server.base_url, timeout=10) as client:
        login(client, alice)
        ids: list[int] = []
        while True:
            params = {"user_id": bob_id, "after": ids[-1] if ids else 0, "limit": 200}
            page = client.get("/get-messages", params=params).json()
            ids += [message["id"] for message in page["messages"]]
            if not page["has_more"]:
                break
        assert ids == sorted(copied)


def test_a_backup_never_overwrites_and_says_why(tmp_path):
    existing = tmp_path / "there"
    existing.write_text("keep me")
    refused = chat(tmp_path, "backup", str(existing))
    assert refused.returncode == 1 and "exists already" in refused.stderr
    assert existing.read_text() == "keep me"
    nowhere = chat(tmp_path, "backup", str(tmp_path / "no" / "such" / "folder" / "copy"))
    assert nowhere.returncode == 1 and "not a folder" in nowhere.stderr
    assert "Traceback" not in refused.stderr + nowhere.stderr


def test_the_files_store_is_copied_beside_the_database_when_the_instance_has_one(tmp_path):
    """`chat backup PATH` copies instance/files/ to PATH.files/ (finished files only, bytes and layout kept,
    private), says so, and refuses before writing anything when PATH.files exists already."""
    server = Server(workdir=tmp_path).start()  # a migrated database (SQLite file, or PostgreSQL's)
    server.stop()
    backups = tmp_path / "backups"
    backups.mkdir()
    without = chat(tmp_path, "backup", str(backups / "plain"))
    assert without.returncode == 0, without.stderr
    assert "files store" not in without.stdout and not (backups / "plain.files").exists()

    store = tmp_path / "instance" / "files"
    stored = {
        "ab/abcdef0123/report.pdf": b"%PDF-1.7 not really",
        "ab/abcdef0124/photo.png": bytes(range(256)) * 40,
        "cd/cdef/notes.txt": "ünïcödé\n".encode(),
    }
    for name, data in stored.items():
        (store / name).parent.mkdir(parents=True, exist_ok=True)
        (store / name).write_bytes(data)
    (store / ".tmp-0123abcd").write_bytes(b"half an upload")  # the store's own name before the rename
    (store / "ab" / "upload.part").write_bytes(b"still arriving")

    made = chat(tmp_path, "backup", str(backups / "copy"))
    assert made.returncode == 0, made.stderr
    copy = backups / "copy.files"
    assert f"files store copied to {copy} (3 files)" in made.stdout
    assert {str(p.relative_to(copy)): p.read_bytes() for p in copy.rglob("*") if p.is_file()} == stored
    assert oct(copy.stat().st_mode & 0o777) == "0o700"
    assert (backups / "copy").stat().st_size > 0

    refused = chat(tmp_path, "backup", str(backups / "copy2"))
    assert refused.returncode == 0  # a new name: fine
    (backups / "again.files").mkdir()
    refused = chat(tmp_path, "backup", str(backups / "again"))
    assert refused.returncode == 1 and "again.files exists already" in refused.stderr
    assert not (backups / "again").exists()  # refused before the database was copied
    assert "Traceback" not in made.stderr + refused.stderr
