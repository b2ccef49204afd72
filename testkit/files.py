"""Files for the files tests: images made with Pillow (with and without GPS metadata), hostile files (HTML, SVG,
a GIF that is also HTML), a PDF, multipart bodies, and the store under test (CHAT_FILES_URL)."""

from __future__ import annotations

import io
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .s3 import S3Server

# The stores the files tests run on: "file" (a folder) and "s3" (testkit.s3's moto server on loopback).
FILE_STORES = tuple(os.environ.get("CHAT_TEST_FILE_STORES", "file,s3").split(","))

BOUNDARY = "chattestboundary7MA4YWxkTrZu0gW"


def store_settings(kind: str, tmp_path: Path, s3: S3Server | None = None) -> dict[str, str]:
    """The CHAT_* (and AWS_*) variables that put a server's files in a store of this kind: a folder of the test's,
    or a prefix of its own in the S3 server's bucket."""
    if kind == "file":
        return {"CHAT_FILES_URL": f"file://{tmp_path / 'files-store'}"}
    if kind == "s3":
        if s3 is None:
            raise ValueError("the s3 store needs testkit.s3's server (the s3_server fixture)")
        return {**s3.env, "CHAT_FILES_URL": f"s3://{s3.bucket}/{s3.prefix}-{uuid.uuid4().hex[:12]}"}
    raise ValueError(f"no files store {kind!r} in this test kit")


def png(width: int = 64, height: int = 48, color=(200, 30, 30)) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (width, height), color).save(out, "PNG")
    return out.getvalue()


GPS_MARKER = b"GPSLatitudeRefN"  # not a real tag name: GPS data is binary, checked through Pillow below


def jpeg_with_gps(width: int = 80, height: int = 60) -> bytes:
    """A JPEG whose EXIF holds a GPS position (and a camera model)."""
    from PIL import Image

    image = Image.new("RGB", (width, height), (10, 120, 200))
    exif = Image.Exif()
    exif[0x0110] = "Secret Camera"  # Model
    exif[0x8825] = {1: "N", 2: (48.0, 51.0, 30.0), 3: "E", 4: (2.0, 17.0, 40.0)}  # GPSInfo
    out = io.BytesIO()
    image.save(out, "JPEG", exif=exif)
    return out.getvalue()


def exif_of(data: bytes) -> dict:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        exif = image.getexif()
        return {**dict(exif), "gps": dict(exif.get_ifd(0x8825))}


def gif_polyglot() -> bytes:
    """A valid GIF that is also an HTML page with a script (after its trailer, as such polyglots are made)."""
    from PIL import Image

    out = io.BytesIO()
    Image.new("P", (8, 8), 1).save(out, "GIF")
    return out.getvalue() + b"<html><body><script>alert(document.cookie)</script></body></html>"


HTML = b"<!doctype html><html><body><script>alert(document.cookie)</script></body></html>"
SVG = b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"><script>alert(2)</script></svg>'
PNG_NAMED_HTML = b"\x89PNG\r\n\x1a\n<html><script>alert(1)</script></html>"  # PNG magic, not an image


def pdf() -> bytes:
    return (
        b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj 2 0 obj<</Type/Pages/Kids[3 0 R]/Count 1>>endobj "
        b"3 0 obj<</Type/Page/MediaBox[0 0 200 200]/Parent 2 0 R>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n"
    )


def multipart(name: str, data: bytes, content_type: str = "application/octet-stream") -> tuple[bytes, str]:
    """A multipart/form-data body with one part `file`, and its Content-Type header."""
    return multipart_head(name, content_type) + data + multipart_tail(), f"multipart/form-data; boundary={BOUNDARY}"


def multipart_head(name: str, content_type: str = "application/octet-stream") -> bytes:
    return (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
        f"Content-Type: {content_type}\r\n\r\n"
    ).encode()


def multipart_tail() -> bytes:
    return f"\r\n--{BOUNDARY}--\r\n".encode()


def streamed_multipart(name: str, size: int, chunk: int = 256 * 1024) -> Iterator[bytes]:
    """A multipart body with a file of `size` bytes, made as it is sent (never whole in memory)."""
    yield multipart_head(name)
    block = os.urandom(chunk)
    left = size
    while left > 0:
        yield block[: min(chunk, left)]
        left -= chunk
    yield multipart_tail()


def streamed_length(name: str, size: int) -> int:
    return len(multipart_head(name)) + size + len(multipart_tail())


def stored_files(folder: Path) -> list[Path]:
    """The finished files of a local store (not its temporary ones)."""
    return [path for path in folder.rglob("*") if path.is_file() and not path.name.startswith(".tmp-")]
