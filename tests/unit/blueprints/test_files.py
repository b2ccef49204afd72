"""Files over HTTP (API.md "Files"), in process: upload, attach on send, read back with the contract's headers,
members only, ranges and ETags, deletion with the message; on the configuration under test and its file store."""

from __future__ import annotations

import pytest

from chat.models import File
from testkit.app import assert_error
from testkit.files import (
    HTML,
    PNG_NAMED_HTML,
    SVG,
    exif_of,
    gif_polyglot,
    jpeg_with_gps,
    multipart,
    pdf,
    png,
    stored_files,
)


@pytest.fixture
async def trio(signup):
    return [await signup(name) for name in ("alice", "bob", "carol")]


async def channel(owner, *member_ids: int) -> str:
    response = await owner.post("/rooms", json={"name": "general", "member_ids": list(member_ids)})
    assert response.status_code == 201, await response.get_data(as_text=True)
    return (await response.get_json())["room"]


async def upload(client, room: str, name: str, data: bytes, status: int = 201) -> dict:
    body, content_type = multipart(name, data)
    response = await client.post(
        "/files", query_string={"room": room}, data=body, headers={"Content-Type": content_type}
    )
    assert response.status_code == status, await response.get_data(as_text=True)
    return await response.get_json()


async def send(client, room: str, content: str = "", **extra):
    return await client.post("/send-message", json={"room": room, "content": content, **extra})


def store_folder(app):
    return app.extensions["chat"].settings.instance_path / "files"


async def test_an_image_is_uploaded_attached_and_served_inline_to_members_only(app, trio):
    (alice, _), (bob, b), (carol, _) = trio
    room = await channel(alice, b["id"])
    uploaded = await upload(alice, room, "cat.png", png(64, 48))
    assert (uploaded["content_type"], uploaded["width"], uploaded["height"]) == ("image/png", 64, 48)
    assert uploaded["url"] == f"/files/{uploaded['id']}/cat.png"
    # not sent yet: only its uploader reads it
    await assert_error(await bob.get(uploaded["url"]), 404, "file_not_found")
    response = await send(alice, room, "", file_ids=[uploaded["id"]])
    assert response.status_code == 201, await response.get_data(as_text=True)
    message = await response.get_json()
    assert message["content"] == "" and [f["id"] for f in message["files"]] == [uploaded["id"]]
    history = await (await bob.get("/get-messages", query_string={"room": room})).get_json()
    assert history["messages"][-1]["files"] == message["files"]

    response = await bob.get(uploaded["url"])
    assert response.status_code == 200
    assert await response.get_data() == png(64, 48)
    assert response.headers["Content-Type"] == "image/png"
    assert response.headers["Content-Disposition"].startswith("inline;")
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Content-Security-Policy"] == "sandbox"
    thumb = await bob.get(uploaded["thumbnail_url"])
    assert thumb.status_code == 200 and thumb.headers["Content-Type"] == "image/webp"
    # a non-member, an unknown id, a wrong name: the same 404
    for client, url in ((carol, uploaded["url"]), (bob, "/files/999999/cat.png"), (bob, uploaded["url"] + "x")):
        await assert_error(await client.get(url), 404, "file_not_found")


async def test_the_same_file_cannot_be_attached_twice_or_by_someone_else(trio):
    (alice, _), (bob, b), _ = trio
    room = await channel(alice, b["id"])
    uploaded = await upload(alice, room, "a.txt", b"hello")
    await assert_error(await send(bob, room, "", file_ids=[uploaded["id"]]), 400, "validation_error")
    await assert_error(await send(alice, room, ""), 400, "validation_error")  # no files: content required
    assert (await send(alice, room, "here", file_ids=[uploaded["id"]])).status_code == 201
    await assert_error(await send(alice, room, "again", file_ids=[uploaded["id"]]), 400, "validation_error")
    await assert_error(await send(alice, room, "x", file_ids=list(range(1, 12))), 400, "validation_error")


@pytest.mark.parametrize(
    ("name", "data"),
    [("page.html", HTML), ("logo.svg", SVG), ("poly.gif", gif_polyglot()), ("fake.png", PNG_NAMED_HTML)],
)
async def test_html_svg_and_polyglots_are_never_served_inline(trio, name, data):
    (alice, _), (bob, b), _ = trio
    room = await channel(alice, b["id"])
    uploaded = await upload(alice, room, name, data)
    assert "width" not in uploaded
    await send(alice, room, "", file_ids=[uploaded["id"]])
    response = await bob.get(uploaded["url"])
    assert response.status_code == 200
    assert response.headers["Content-Disposition"].startswith("attachment;")
    assert response.headers["Content-Type"].split(";")[0] in ("application/octet-stream", "text/plain")
    assert response.headers["Content-Security-Policy"] == "sandbox"
    assert await response.get_data() == data


async def test_a_pdf_is_a_download_with_its_name_in_rfc_6266_form(trio):
    (alice, _), (bob, b), _ = trio
    room = await channel(alice, b["id"])
    uploaded = await upload(alice, room, "Überblick 2026.pdf", pdf())
    await send(alice, room, "the plan", file_ids=[uploaded["id"]])
    response = await bob.get(uploaded["url"])
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/pdf"
    disposition = response.headers["Content-Disposition"]
    assert disposition.startswith("attachment;") and "filename*=UTF-8''%C3%9Cberblick%202026.pdf" in disposition


async def test_gps_and_camera_metadata_are_stripped_from_what_is_served(trio):
    (alice, _), (bob, b), _ = trio
    room = await channel(alice, b["id"])
    original = jpeg_with_gps()
    assert exif_of(original)["gps"]
    uploaded = await upload(alice, room, "holiday.jpg", original)
    await send(alice, room, "", file_ids=[uploaded["id"]])
    served = await (await bob.get(uploaded["url"])).get_data()
    assert exif_of(served)["gps"] == {} and 0x0110 not in exif_of(served)
    assert uploaded["size"] == len(served)


async def test_ranges_etags_and_conditional_requests(trio):
    (alice, _), (bob, b), _ = trio
    room = await channel(alice, b["id"])
    data = bytes(range(256)) * 4
    uploaded = await upload(alice, room, "data.bin", data)
    await send(alice, room, "", file_ids=[uploaded["id"]])
    full = await bob.get(uploaded["url"])
    etag = full.headers["ETag"]
    assert full.headers["Accept-Ranges"] == "bytes" and etag.startswith('"')
    assert (await bob.get(uploaded["url"], headers={"If-None-Match": etag})).status_code == 304
    part = await bob.get(uploaded["url"], headers={"Range": "bytes=10-19"})
    assert part.status_code == 206 and await part.get_data() == data[10:20]
    assert part.headers["Content-Range"] == f"bytes 10-19/{len(data)}"
    tail = await bob.get(uploaded["url"], headers={"Range": "bytes=-5"})
    assert tail.status_code == 206 and await tail.get_data() == data[-5:]
    open_ended = await bob.get(uploaded["url"], headers={"Range": "bytes=1000-"})
    assert await open_ended.get_data() == data[1000:]
    unsatisfiable = await bob.get(uploaded["url"], headers={"Range": "bytes=5000-6000"})
    assert unsatisfiable.status_code == 416 and unsatisfiable.headers["Content-Range"] == f"bytes */{len(data)}"
    several = await bob.get(uploaded["url"], headers={"Range": "bytes=0-1,5-6"})
    assert several.status_code == 200 and await several.get_data() == data


async def test_deleting_the_message_deletes_its_files(app, trio):
    (alice, _), (bob, b), _ = trio
    room = await channel(alice, b["id"])
    uploaded = await upload(alice, room, "cat.png", png())
    message = await (await send(alice, room, "", file_ids=[uploaded["id"]])).get_json()
    assert len(stored_files(store_folder(app))) == 2  # the image and its thumbnail
    assert (await alice.delete(f"/messages/{message['id']}")).status_code == 204
    assert not await File.exists(id=uploaded["id"])
    assert stored_files(store_folder(app)) == []
    await assert_error(await bob.get(uploaded["url"]), 404, "file_not_found")


async def test_past_the_limit_413_and_nothing_is_stored(tmp_path):
    from testkit.app import api_login, api_register, started_app

    async with started_app(tmp_path / "small", max_upload_bytes=1000) as small:
        alice = small.test_client()
        await api_register(alice, "alice")
        me = await api_login(alice, "alice")
        room = f"dm-{me['id']}-{me['id']}"
        await upload(alice, room, "ok.bin", b"x" * 1000)
        body, content_type = multipart("big.bin", b"x" * 1001)
        response = await alice.post(
            "/files", query_string={"room": room}, data=body, headers={"Content-Type": content_type}
        )
        await assert_error(response, 413, "file_too_large")
        assert await File.all().count() == 1
        assert len(stored_files(small.extensions["chat"].settings.instance_path / "files")) == 1


async def test_uploading_faster_than_the_limit_is_429_with_retry_after(tmp_path):
    from testkit.app import api_login, api_register, started_app

    async with started_app(tmp_path / "tight", upload_limit=2, upload_window_seconds=60) as tight:
        alice = tight.test_client()
        await api_register(alice, "alice")
        me = await api_login(alice, "alice")
        room = f"dm-{me['id']}-{me['id']}"
        for n in range(2):
            await upload(alice, room, f"{n}.bin", b"x")
        body, content_type = multipart("2.bin", b"x")
        response = await alice.post(
            "/files", query_string={"room": room}, data=body, headers={"Content-Type": content_type}
        )
        await assert_error(response, 429, "too_many_uploads")
        assert 1 <= int(response.headers["Retry-After"]) <= 60
        assert await File.all().count() == 2


async def test_bad_uploads_are_400s_and_a_foreign_room_404(trio):
    (alice, _), (bob, b), (carol, _) = trio
    room = await channel(alice, b["id"])
    response = await alice.post("/files", query_string={"room": room}, json={"file": "x"})
    await assert_error(response, 400, "validation_error")
    body, content_type = multipart("x", b"data")
    response = await alice.post(
        "/files", query_string={"room": room}, data=body[:-30], headers={"Content-Type": content_type}
    )
    await assert_error(response, 400, "validation_error")
    response = await carol.post(
        "/files", query_string={"room": room}, data=body, headers={"Content-Type": content_type}
    )
    assert response.status_code in (403, 404)
    await assert_error(await alice.post("/files", data=body, headers={"Content-Type": content_type}), 400)


async def test_files_attach_over_the_websocket_and_socket_io_too(app, trio):
    import asyncio
    import json

    from chat import conversations

    (alice, a), (_, b), _ = trio
    room = await channel(alice, b["id"])
    first = await upload(alice, room, "ws.txt", b"over the websocket")
    second = await upload(alice, room, "sio.txt", b"over socket.io")
    async with alice.websocket(f"/ws/rooms/{room}") as ws:
        await ws.send(json.dumps({"type": "message", "content": "", "file_ids": [first["id"]], "client_id": "w1"}))
        async with asyncio.timeout(10):
            while True:
                frame = json.loads(await ws.receive())
                if frame.get("type") == "message":
                    break
    assert [f["id"] for f in frame["message"]["files"]] == [first["id"]]
    # Socket.IO's message event calls the same function with the frame's file_ids (socketio_clients._message)
    async with app.app_context():
        message, created = await conversations.send_to_room(a["id"], room, "", None, file_ids=[second["id"]])
    assert created and [f["name"] for f in message["files"]] == ["sio.txt"]


async def test_a_deleted_account_takes_its_files_with_it(app, trio):
    from testkit.http import PASSWORD

    (alice, _), (bob, b), _ = trio
    room = await channel(alice, b["id"])
    sent = await upload(alice, room, "sent.png", png())
    await upload(alice, room, "unsent.txt", b"never sent")
    assert (await send(alice, room, "", file_ids=[sent["id"]])).status_code == 201
    response = await alice.post("/delete-account", json={"password": PASSWORD})
    assert response.status_code == 204, await response.get_data(as_text=True)
    assert await File.all().count() == 0  # CHAT_DELETED_USER_CONTENT=remove (the default): sent ones too
    assert stored_files(store_folder(app)) == []
    await assert_error(await bob.get(sent["url"]), 404, "file_not_found")
