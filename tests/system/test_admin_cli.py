"""`chat createuser --admin`, `chat deactivate`, `chat reactivate`, `chat set-password` as real processes beside a
real server, on the configuration under test."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from websockets.exceptions import ConnectionClosed

from testkit.backends import BACKEND
from testkit.http import PASSWORD, login, register
from testkit.probes import wait_until
from testkit.servers import ROOT, backend_settings
from testkit.ws import recv_until, ws_connect

NEW_PASSWORD = "a brand new passphrase"


def chat(workdir: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess:
    """`chat ARGS` run as the operator runs it, from another folder, on the server's instance and database."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("CHAT_")}
    environment.update(
        CHAT_INSTANCE_PATH=str(workdir / "instance"),
        CHAT_BCRYPT_ROUNDS="4",
        PYTHONPATH=str(ROOT),  # this source tree's chat, whatever the virtualenv has installed
        **backend_settings(workdir),
    )
    return subprocess.run(
        [sys.executable, "-m", "chat.cli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=environment,
        cwd=workdir,
        timeout=60,
        check=False,
    )


async def test_the_operator_makes_an_admin_deactivates_reactivates_and_sets_a_password(server, tmp_path):
    created = chat(tmp_path, "createuser", "--username", "root", "--email", "root@example.org", "--admin",
                   "--password-stdin", stdin=PASSWORD + "\n")  # fmt: skip
    assert created.returncode == 0 and "created admin" in created.stdout, created.stderr
    with httpx.Client(base_url=server.base_url, timeout=10) as root, httpx.Client(base_url=server.base_url) as alice:
        login(root, "root")
        assert root.get("/me").json()["role"] == "admin"
        register(alice, "alice")
        login(alice, "alice")
        bob = register(httpx.Client(base_url=server.base_url), "bob")
        room = f"dm-{min(bob['id'], 2)}-{max(bob['id'], 2)}"
        async with ws_connect(server, alice.cookies["chat_session"], room) as ws:
            await recv_until(ws, lambda frame: frame["type"] == "presence")
            done = await asyncio.to_thread(chat, tmp_path, "deactivate", "ALICE")
            assert done.returncode == 0 and "deactivated user 2 (alice)" in done.stdout, done.stderr
            if BACKEND == "postgres":  # through Redis, the server hears it: the socket closes at once
                with pytest.raises(ConnectionClosed):
                    await recv_until(ws, lambda frame: False, timeout=2)
                assert ws.close_code == 1008
        # on memory:// the server's session cache forgets within its 5 seconds (docs/operations.md)
        wait_until(lambda: alice.get("/me").status_code == 401, timeout=7)
        refused = alice.post("/login", json={"username": "alice", "password": PASSWORD})
        assert refused.status_code == 403 and refused.json()["error"] == "account_deactivated"

        assert chat(tmp_path, "reactivate", "alice").returncode == 0
        login(alice, "alice")
        changed = chat(tmp_path, "set-password", "alice", "--password-stdin", stdin=NEW_PASSWORD + "\n")
        assert changed.returncode == 0 and NEW_PASSWORD not in changed.stdout + changed.stderr
        wait_until(lambda: alice.get("/me").status_code == 401, timeout=7)  # every session ended
        assert alice.post("/login", json={"username": "alice", "password": PASSWORD}).status_code == 401
        login(alice, "alice", NEW_PASSWORD)


def test_unknown_users_and_short_passwords_are_refused_plainly(tmp_path):
    unknown = chat(tmp_path, "deactivate", "nobody")
    assert unknown.returncode == 1 and "no user named 'nobody'" in unknown.stderr
    short = chat(tmp_path, "set-password", "nobody", "--password-stdin", stdin="short\n")
    assert short.returncode == 2 and "password" in short.stderr and "short" not in short.stdout
    assert "Traceback" not in unknown.stderr + short.stderr
