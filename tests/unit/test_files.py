"""chat/files.py in process: names made safe, what is sniffed as an image, the sweep of unsent files (safe when
several workers run it at once), and the per-user quota."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from chat import files
from chat.blueprints.files import byte_range, content_disposition
from chat.models import File, utcnow
from testkit.app import api_login, api_register, assert_error, started_app
from testkit.files import gif_polyglot, multipart, png


def test_names_lose_paths_controls_and_leading_dots_and_stay_bounded():
    assert files.sanitize_name("../../etc/passwd") == "passwd"
    assert files.sanitize_name("C:\\Users\\x\\report.pdf") == "report.pdf"
    assert files.sanitize_name("a\x00b\r\n\u202ec.txt") == "abc.txt"
    assert files.sanitize_name("...") == "file" and files.sanitize_name(None) == "file"
    long = files.sanitize_name("n" * 500 + ".jpeg")
    assert len(long) == files.MAX_NAME and long.endswith(".jpeg")


def test_content_disposition_and_ranges():
    assert content_disposition("attachment", 'a"b;ü.pdf') == (
        "attachment; filename=\"a_b_\u005f.pdf\"; filename*=UTF-8''a%22b%3B%C3%BC.pdf"
    )
    assert byte_range("bytes=0-9", 100) == (0, 10)
    assert byte_range("bytes=90-", 100) == (90, 100)
    assert byte_range("bytes=-10", 100) == (90, 100)
    assert byte_range("bytes=95-200", 100) == (95, 100)
    assert byte_range("bytes=100-", 100) is None
    assert byte_range("bytes=0-1,3-4", 100) == () and byte_range("items=1-2", 100) == ()


def test_sniffing():
    assert files._magic_type(png()[:64]) == "PNG"
    assert files._magic_type(b"<svg") is None
    assert files._plain_type(b"%PDF-1.7") == "application/pdf"
    assert files._plain_type("héllo".encode()) == "text/plain"
    assert files._plain_type(b"\x00\x01\x02") == "application/octet-stream"
    sniffed = files._UploadBody.__new__(files._UploadBody)
    sniffed.sniffed = files._Sniffed()
    data = gif_polyglot()
    for start in range(0, len(data), 7):  # the marker split across chunks is still seen
        sniffed._sniff(data[start : start + 7])
    assert sniffed.sniffed.active


async def test_unsent_files_are_swept_once_even_by_concurrent_workers(tmp_path):
    async with started_app(tmp_path, unsent_upload_bytes=150) as app:
        alice = app.test_client()
        await api_register(alice, "alice")
        me = await api_login(alice, "alice")
        room = f"dm-{me['id']}-{me['id']}"
        for name in ("a.bin", "b.bin"):
            body, content_type = multipart(name, b"x" * 60)
            response = await alice.post(
                "/files", query_string={"room": room}, data=body, headers={"Content-Type": content_type}
            )
            assert response.status_code == 201
        body, content_type = multipart("c.bin", b"x" * 60)  # 180 bytes would wait unsent: over the quota
        response = await alice.post(
            "/files", query_string={"room": room}, data=body, headers={"Content-Type": content_type}
        )
        await assert_error(response, 413, "upload_quota_exceeded")
        await File.filter(name="a.bin").update(created_at=utcnow() - timedelta(days=2))
        async with app.app_context():
            counts = await asyncio.gather(*(files.sweep_unsent(timedelta(days=1)) for _ in range(3)))
        assert sorted(counts) == [0, 0, 1]
        assert [row.name for row in await File.all()] == ["b.bin"]
        folder = app.extensions["chat"].settings.instance_path / "files"
        assert len([path for path in folder.rglob("*") if path.is_file()]) == 1
