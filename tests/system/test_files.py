"""Files against a real hypercorn (API.md "Files"): the upload limit to the byte, members only, hostile files never
inline, ranges and ETags over the wire, a kill -9 in the middle of a 50 MB upload, and the memory that ten
concurrent 50 MiB uploads take. On the configuration under test, for each files store (testkit.files.FILE_STORES:
the store is the one setting CHAT_FILES_URL)."""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from pathlib import Path

import httpx
import pytest

from testkit import probes
from testkit.backends import database_rows
from testkit.files import (
    FILE_STORES,
    HTML,
    SVG,
    gif_polyglot,
    multipart,
    multipart_head,
    pdf,
    png,
    store_settings,
    stored_files,
    streamed_length,
    streamed_multipart,
)
from testkit.http import signed_in_client
from testkit.servers import Server

MIB = 1024 * 1024


@pytest.fixture(params=FILE_STORES)
def files_store(request, tmp_path) -> dict[str, str]:
    """The settings of the files store under test (a folder, or S3 through moto's server)."""
    s3 = request.getfixturevalue("s3_server") if request.param == "s3" else None
    return store_settings(request.param, tmp_path, s3)


def files_server(tmp_path: Path, files_store: dict[str, str], **env: str) -> Server:
    return Server(workdir=tmp_path, env={**files_store, **env}).start(timeout=90)


def local_folder(files_store: dict[str, str]) -> Path | None:
    url = files_store["CHAT_FILES_URL"]
    return Path(url.removeprefix("file://")) if url.startswith("file://") else None


def people(server: Server, *names: str) -> list[tuple[httpx.Client, dict]]:
    return [signed_in_client(server.base_url, name) for name in names]


def channel(owner: httpx.Client, *member_ids: int) -> str:
    response = owner.post("/rooms", json={"name": "files", "member_ids": list(member_ids)})
    assert response.status_code == 201, response.text
    return response.json()["room"]


def upload(client: httpx.Client, room: str, name: str, data: bytes) -> httpx.Response:
    body, content_type = multipart(name, data)
    return client.post("/files", params={"room": room}, content=body, headers={"Content-Type": content_type})


def file_rows(tmp_path: Path) -> int:
    return database_rows(tmp_path, "SELECT COUNT(*) FROM files")[0][0]


def test_one_byte_over_the_limit_is_413_and_nothing_is_stored(tmp_path, files_store):
    server = files_server(tmp_path, files_store, CHAT_MAX_UPLOAD_BYTES=str(MIB))
    try:
        (alice, a), (_, b) = people(server, "alice", "bob")
        room = channel(alice, b["id"])
        assert upload(alice, room, "exact.bin", os.urandom(MIB)).status_code == 201
        response = upload(alice, room, "over.bin", os.urandom(MIB + 1))
        assert response.status_code == 413 and response.json()["error"] == "file_too_large"
        # a Content-Length far past the limit is refused before the body is read
        response = alice.post(
            "/files", params={"room": room}, content=b"x" * (3 * MIB), headers={"Content-Type": multipart("x", b"")[1]}
        )
        assert response.status_code == 413 and response.json()["error"] == "file_too_large"
        assert file_rows(tmp_path) == 1
        folder = local_folder(files_store)
        if folder is not None:
            assert len(stored_files(folder)) == 1
            assert not list(folder.rglob(".tmp-*"))
            assert (folder.stat().st_mode & 0o777) == 0o700
        # the JSON API's own limit is unchanged
        big = alice.post("/send-message", json={"room": room, "content": "x" * 70_000})
        assert big.status_code == 413
    finally:
        server.stop()
    assert "Traceback" not in server.log(), server.log()


def test_members_only_and_hostile_files_never_inline(tmp_path, files_store):
    server = files_server(tmp_path, files_store)
    try:
        (alice, _), (bob, b), (carol, _) = people(server, "alice", "bob", "carol")
        room = channel(alice, b["id"])
        sent = {}
        for name, data in (
            ("a.html", HTML),
            ("b.svg", SVG),
            ("c.gif", gif_polyglot()),
            ("d.png", png()),
            ("e.pdf", pdf()),
        ):
            response = upload(alice, room, name, data)
            assert response.status_code == 201, response.text
            sent[name] = (response.json(), data)
        ids = [uploaded["id"] for uploaded, _ in sent.values()]
        message = alice.post("/send-message", json={"room": room, "content": "", "file_ids": ids})
        assert message.status_code == 201 and len(message.json()["files"]) == 5
        for name, (uploaded, data) in sent.items():
            response = bob.get(uploaded["url"])
            assert response.status_code == 200 and response.content == data
            assert response.headers["x-content-type-options"] == "nosniff"
            assert response.headers["content-security-policy"] == "sandbox"
            inline = response.headers["content-disposition"].startswith("inline")
            assert inline == (name == "d.png"), (name, response.headers)
            assert carol.get(uploaded["url"]).status_code == 404
        pdf_response = bob.get(sent["e.pdf"][0]["url"])
        assert pdf_response.headers["content-type"] == "application/pdf"
        # ranges and ETags over the wire
        url = sent["e.pdf"][0]["url"]
        etag = pdf_response.headers["etag"]
        assert bob.get(url, headers={"If-None-Match": etag}).status_code == 304
        part = bob.get(url, headers={"Range": "bytes=0-3"})
        assert part.status_code == 206 and part.content == b"%PDF"
    finally:
        server.stop()
    assert "Traceback" not in server.log(), server.log()


def _send_partially(server: Server, cookie: str, room: str, total: int, sent_before_kill: int) -> socket.socket:
    """A raw HTTP upload of `total` bytes of file of which `sent_before_kill` are sent (the rest never is)."""
    sock = socket.create_connection(("127.0.0.1", server.port))
    head = multipart_head("big.bin")
    length = streamed_length("big.bin", total)
    request = (
        f"POST /files?room={room} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nCookie: {cookie}\r\n"
        f"Content-Type: {multipart('x', b'')[1]}\r\n"
        f"Content-Length: {length}\r\n\r\n"
    ).encode()
    sock.sendall(request + head)
    block = os.urandom(MIB)
    for _ in range(sent_before_kill // MIB):
        sock.sendall(block)
    return sock


def test_kill_9_during_a_50_mb_upload_leaves_no_file_and_no_row(tmp_path, files_store):
    server = files_server(tmp_path, files_store, CHAT_MAX_UPLOAD_BYTES=str(60 * MIB), CHAT_UPLOAD_STALE_SECONDS="1")
    (alice, a), (_, b) = people(server, "alice", "bob")
    room = channel(alice, b["id"])
    cookie = "; ".join(f"{name}={value}" for name, value in alice.cookies.items())
    sock = _send_partially(server, cookie, room, 50 * MIB, 20 * MIB)
    folder = local_folder(files_store)
    if folder is not None:  # the upload is being written under a temporary name
        probes.wait_until(lambda: any(folder.rglob(".tmp-*")), timeout=30)
    server.stop(signal.SIGKILL)
    sock.close()
    assert file_rows(tmp_path) == 0
    if folder is not None:
        assert stored_files(folder) == []  # nothing under a key: only the temporary file of the dead upload
    time.sleep(1.5)
    server.start(timeout=90)  # the sweep at start-up removes what the crash left
    try:
        if folder is not None:
            probes.wait_until(lambda: not any(folder.rglob(".tmp-*")), timeout=30)
        assert file_rows(tmp_path) == 0
        assert upload(
            signed_in_client(server.base_url, "carol")[0], f"dm-{a['id']}-{a['id']}", "x", b"x"
        ).status_code in (
            403,
            404,
        )
    finally:
        server.stop()


UPLOADS = 10
UPLOAD_BYTES = 50 * MIB


def test_ten_concurrent_50_mib_uploads_keep_memory_bounded(tmp_path, files_store, record_property):
    server = files_server(
        tmp_path,
        files_store,
        CHAT_MAX_UPLOAD_BYTES=str(UPLOAD_BYTES),
        CHAT_UNSENT_UPLOAD_BYTES=str(UPLOADS * UPLOAD_BYTES),
    )
    try:
        (alice, a), (_, b) = people(server, "alice", "bob")
        room = channel(alice, b["id"])
        # warm: imports, the thread pool, Pillow, and every request of a multipart upload (S3's client builds each
        # operation's model on its first use)
        assert upload(alice, room, "warm.png", png()).status_code == 201
        assert upload(alice, room, "warm.bin", os.urandom(9 * MIB)).status_code == 201
        pid = server.worker_pid()
        before = probes.rss_kib(pid)
        peak = [before]
        done = threading.Event()

        def sample() -> None:
            while not done.is_set():
                peak[0] = max(peak[0], probes.rss_kib(pid))
                time.sleep(0.05)

        results: list[int] = []

        def one(index: int) -> None:
            with httpx.Client(base_url=server.base_url, cookies=alice.cookies, timeout=120) as client:
                response = client.post(
                    "/files",
                    params={"room": room},
                    content=streamed_multipart(f"big-{index}.bin", UPLOAD_BYTES),
                    headers={
                        "Content-Type": multipart("x", b"")[1],
                        "Content-Length": str(streamed_length(f"big-{index}.bin", UPLOAD_BYTES)),
                    },
                )
                results.append(response.status_code)

        sampler = threading.Thread(target=sample)
        sampler.start()
        threads = [threading.Thread(target=one, args=(index,)) for index in range(UPLOADS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        done.set()
        sampler.join()
        assert results == [201] * UPLOADS
        growth_mib = (peak[0] - before) / 1024
        record_property("rss_growth_mib", growth_mib)
        print(f"RSS before {before / 1024:.1f} MiB, peak {peak[0] / 1024:.1f} MiB, growth {growth_mib:.1f} MiB")
        assert growth_mib < 20, f"RSS grew by {growth_mib:.1f} MiB during {UPLOADS} concurrent uploads"
    finally:
        server.stop()
    assert "Traceback" not in server.log(), server.log()


BURST = 20


async def test_a_burst_of_messages_with_files_reaches_every_socket_once_in_order(tmp_path, files_store):
    """Messages with files go through the one store-then-publish path: two sockets of the room get each one once,
    in id order, with its files; a socket resuming with ?after replays them with their files too."""
    import asyncio

    from testkit.ws import new_person, recv_until

    server = files_server(tmp_path, files_store, CHAT_SEND_LIMIT="1000")
    try:
        alice, bob = new_person(server, "alice"), new_person(server, "bob")
        room = alice.room_with(bob)
        uploaded = []
        for index in range(BURST // 2):
            response = upload(alice.http, room, f"f{index}.txt", f"file {index}".encode())
            assert response.status_code == 201, response.text
            uploaded.append(response.json()["id"])
        async with bob.connect(room) as first, bob.connect(room) as second:
            async with alice.async_http() as client:

                async def send(index: int) -> dict:
                    files = [uploaded[index // 2]] if index % 2 == 0 else []
                    body = {"room": room, "content": f"m{index}", "file_ids": files, "client_id": f"c{index}"}
                    response = await client.post("/send-message", json=body)
                    assert response.status_code == 201, response.text
                    return response.json()

                sent = await asyncio.gather(*(send(index) for index in range(BURST)))
            expected = {message["id"]: [f["id"] for f in message["files"]] for message in sent}
            assert sum(len(files) for files in expected.values()) == BURST // 2
            for ws in (first, second):
                seen: list[dict] = []
                await recv_until(ws, lambda frame: frame.get("message", {}).get("id") == max(expected), 30, seen)
                messages = [frame["message"] for frame in seen if frame["type"] == "message"]
                assert [m["id"] for m in messages] == sorted(expected)
                assert {m["id"]: [f["id"] for f in m["files"]] for m in messages} == expected
        async with bob.connect(room, after=0) as resumed:
            seen = []
            await recv_until(resumed, lambda frame: frame.get("message", {}).get("id") == max(expected), 30, seen)
            replayed = {
                frame["message"]["id"]: [f["id"] for f in frame["message"]["files"]]
                for frame in seen
                if frame["type"] == "message"
            }
            assert replayed == expected
    finally:
        server.stop()
    assert "Traceback" not in server.log(), server.log()
