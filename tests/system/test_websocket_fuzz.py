"""Random frame sequences against a real server's websocket (docs/websocket.md, "Frames" and "Limits").

Hypothesis draws up to 30 frames - valid messages (client_ids new or repeated), typing, read markers good and
bad, JSON that is not an object, objects of no known type, wrong field types, text that is not JSON, lone
surrogates, binary frames, frames around and far past the 16,384-character limit - and one user sends them on
a raw socket while the other participant watches the room with a real client. A last sentinel message, echoed
on both sockets, marks the end. Then:

- the server never closed either socket, and answered each frame as the protocol says: the `error` frames the
  sender got are, in order, exactly the errors `expected_error` predicts;
- both sockets got the room's messages in strictly increasing id order, each once, and those ids are exactly
  what `GET /get-messages` returns;
- every valid message is stored once per client_id (with the content of its first send), in the order sent,
  and nothing else is stored;
- the server log holds no traceback (at teardown).

The runs are derandomized: the same sequences every time, so that the suite never flakes.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import struct
from dataclasses import dataclass

import orjson
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed

from testkit.servers import Server
from testkit.ws import RawWebsocket, message_frame, new_person, presence_frame, recv_until

MAX_FRAME_CHARS = 16_384
MAX_CONTENT = 4000
MAX_ID = 2**31 - 1
TIMEOUT = 20.0  # for the sentinel's echoes, on a shared 2-core machine
_sentinels = itertools.count(1)


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory):
    env = {  # lift the limits that would otherwise answer most frames
        "CHAT_SEND_LIMIT": "1000000",
        "CHAT_WS_FRAME_RATE": "1000000",
        "CHAT_WS_PER_USER": "1000",
        "CHAT_WS_PER_SESSION": "1000",
        "CHAT_REGISTER_ADDRESS_LIMIT": "1000000",
    }
    server = Server(workdir=tmp_path_factory.mktemp("ws-fuzz"), env=env).start()
    yield server
    server.stop()
    log = server.log()
    assert "Traceback" not in log, log


# ---------------------------------------------------------------- frames and what the server must answer


@dataclass(frozen=True)
class Frame:
    data: str | bytes  # str: a text frame; bytes: a binary frame

    def __repr__(self) -> str:  # a falsifying example stays readable when it holds 70 000-character frames
        kind = "text" if isinstance(self.data, str) else "binary"
        shown = self.data if len(self.data) <= 120 else self.data[:100]
        more = "" if len(self.data) <= 120 else f"...({len(self.data)} in all)"
        return f"{kind}({shown!r}{more})"


def valid_text(value: object, min_length: int, max_length: int) -> bool:
    return isinstance(value, str) and min_length <= len(value) <= max_length and "\x00" not in value


def parsed(frame: Frame) -> object:
    """The frame's JSON value; ValueError when it is not JSON (a lone surrogate is not, docs/websocket.md)."""
    return orjson.loads(frame.data)


def valid_message(frame: Frame) -> tuple[str, str | None] | None:
    """(content, client_id) when the server must store the frame's message (or acknowledge its client_id)."""
    if expected_error(frame) is not None:
        return None
    value = parsed(frame)
    if value["type"] != "message":
        return None
    return value["content"], value.get("client_id")


def expected_error(frame: Frame) -> str | None:
    """The `error` the protocol answers this frame with; None when it has an effect (or none, silently)."""
    if len(frame.data) > MAX_FRAME_CHARS:
        return "frame_too_large"
    if isinstance(frame.data, bytes):
        return "invalid_frame"
    try:
        value = parsed(frame)
    except orjson.JSONDecodeError:
        return "invalid_json"
    kind = value.get("type") if isinstance(value, dict) else None
    if kind == "message":
        content, client_id = value.get("content"), value.get("client_id")
        if not valid_text(content, 1, MAX_CONTENT) or not content.strip():
            return "validation_error"
        if client_id is not None and not valid_text(client_id, 1, 64):
            return "validation_error"
        return None
    if kind == "read":
        up_to = value.get("up_to")
        if isinstance(up_to, float) and up_to.is_integer():
            up_to = int(up_to)
        if not isinstance(up_to, int) or isinstance(up_to, bool) or not 0 <= up_to <= MAX_ID:
            return "validation_error"
        return None
    if kind == "typing":
        return None
    return "unknown_type"


# ---------------------------------------------------------------- strategies

CHARACTERS = st.characters(exclude_categories=["Cs"])  # any code point that UTF-8 can carry (NUL included)
TEXT_CHARACTERS = st.characters(exclude_categories=["Cs"], exclude_characters="\x00")
CONTENT = st.text(TEXT_CHARACTERS, min_size=1, max_size=200).filter(str.strip)
NEW_CLIENT_ID = st.text(TEXT_CHARACTERS, min_size=1, max_size=64)
JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(CHARACTERS, max_size=20)
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(CHARACTERS, max_size=8), inner, max_size=3),
    max_leaves=6,
)
BAD_CONTENT = st.sampled_from(
    [None, 0, 5, 1.5, True, [], ["hi"], {"text": "hi"}, "", " ", "\t\n\r", "\u3000\u2028", "a\x00b", "x" * 4001]
)
BAD_CLIENT_ID = st.sampled_from([0, 7, 1.0, False, [], {}, "", "x" * 65, "c\x00"])
BAD_UP_TO = (
    st.integers(max_value=-1)
    | st.integers(min_value=MAX_ID + 1, max_value=2**80)
    | st.floats(allow_nan=True, allow_infinity=True).filter(lambda f: not (f.is_integer() and 0 <= f <= MAX_ID))
    | st.text(CHARACTERS, max_size=12)
    | st.sampled_from([None, True, False, "5", "0", [], [1], {"n": 1}])
)
ODD_TEXT = st.sampled_from(
    [
        "",
        " ",
        "{",
        "}",
        "nul",
        "[1,]",
        '{"type":"typing",}',
        "{'type': 'typing'}",
        '{"type":"message","content":"hi"',
        '{"type":"read","up_to":1e400}',
        '{"type":"read","up_to":NaN}',
        '{"type":"message","content":"hi"}{"type":"typing"}',
        '\ufeff{"type":"typing"}',
        '{"type":"message","content":"hi",}',
    ]
)


def dumps(value: object, ascii_only: bool) -> str:
    """JSON text as a client would write it: escaped (\\uXXXX) or not; NaN and infinities as Python writes them."""
    return json.dumps(value, ensure_ascii=ascii_only)


def padded(base: dict, size: int, pad: str) -> str:
    """`base` as JSON with a "pad" field that brings it to exactly `size` characters."""
    text = json.dumps({**base, "pad": ""}, ensure_ascii=False)
    return text[:-2] + pad * (size - len(text)) + '"}'


def with_lone_surrogate(draw, client_ids: list[str]) -> str:
    """A frame with one escaped lone surrogate (\\ud800...\\udfff) in a string: not JSON."""
    code = draw(st.integers(0xD800, 0xDFFF))
    prefix, suffix = draw(st.text(TEXT_CHARACTERS, max_size=10)), draw(st.text(TEXT_CHARACTERS, max_size=10))
    string = json.dumps(prefix, ensure_ascii=False)[:-1] + f"\\u{code:04x}" + json.dumps(suffix, ensure_ascii=False)[1:]
    where = draw(st.sampled_from(["content", "client_id", "type", "extra"]))
    fields = {"type": '"message"', "content": json.dumps("hi"), "client_id": json.dumps(client_id(draw, client_ids))}
    if where == "extra":
        fields["type"] = draw(st.sampled_from(['"message"', '"typing"', '"read"']))
        fields["up_to"] = "0"
    fields[where] = string
    return "{" + ",".join(f'"{name}":{value}' for name, value in fields.items()) + "}"


def client_id(draw, client_ids: list[str]) -> str:
    """A client_id used earlier in the sequence (half the time) or a new one."""
    if client_ids and draw(st.booleans()):
        return draw(st.sampled_from(client_ids))
    new = draw(NEW_CLIENT_ID)
    client_ids.append(new)
    return new


KINDS = [
    "message",
    "message",
    "message",
    "typing",
    "read",
    "bad_read",
    "not_object",
    "unknown_type",
    "wrong_fields",
    "invalid_json",
    "lone_surrogate",
    "binary",
    "large",
]


@st.composite
def frame_sequences(draw) -> list[Frame]:
    client_ids: list[str] = []
    frames = []
    for _ in range(draw(st.integers(1, 30))):
        kind = draw(st.sampled_from(KINDS))
        ascii_only = draw(st.booleans())
        if kind == "message":
            cid = None if draw(st.integers(0, 5)) == 0 else client_id(draw, client_ids)
            value = {"type": "message", "content": draw(CONTENT), "client_id": cid}
            if draw(st.booleans()):
                value["unknown"] = draw(JSON_VALUES)  # fields a frame does not need are ignored
            data = dumps(value, ascii_only)
        elif kind == "typing":
            data = dumps(
                {"type": "typing", **draw(st.dictionaries(st.sampled_from(["up_to", "x"]), JSON_VALUES))}, True
            )
        elif kind == "read":
            up_to = draw(st.integers(0, MAX_ID) | st.sampled_from([0, 1, 2, 3, MAX_ID, 2.0, 1e2, -0.0]))
            data = dumps({"type": "read", "up_to": up_to}, ascii_only)
        elif kind == "bad_read":
            value = {"type": "read"} if draw(st.integers(0, 9)) == 0 else {"type": "read", "up_to": draw(BAD_UP_TO)}
            data = dumps(value, ascii_only)
        elif kind == "not_object":
            data = dumps(draw(JSON_VALUES.filter(lambda v: not isinstance(v, dict))), ascii_only)
        elif kind == "unknown_type":
            value = draw(st.dictionaries(st.text(CHARACTERS, max_size=8), JSON_VALUES, max_size=3))
            value.pop("type", None)
            if draw(st.booleans()):
                value["type"] = draw(
                    st.sampled_from(["Message", "message ", "TYPING", "reads", "error", "presence", ""])
                    | JSON_VALUES.filter(lambda v: v not in ("message", "typing", "read"))
                )
            data = dumps(value, ascii_only)
        elif kind == "wrong_fields":
            value = {"type": "message", "content": draw(CONTENT), "client_id": client_id(draw, client_ids)}
            broken = draw(st.sampled_from(["content", "client_id", "missing"]))
            if broken == "missing":
                del value["content"]
            else:
                value[broken] = draw(BAD_CONTENT if broken == "content" else BAD_CLIENT_ID)
            data = dumps(value, ascii_only)
        elif kind == "invalid_json":
            data = draw(ODD_TEXT | st.text(CHARACTERS, max_size=60))
        elif kind == "lone_surrogate":
            data = with_lone_surrogate(draw, client_ids)
        elif kind == "binary":
            message = dumps({"type": "message", "content": "binary", "client_id": client_id(draw, client_ids)}, True)
            data = draw(st.binary(min_size=1, max_size=200) | st.just(message.encode()))
        else:  # large: around the 16,384-character limit, or far past it (and past 64 KiB of UTF-8)
            size = draw(
                st.sampled_from([MAX_FRAME_CHARS - 1, MAX_FRAME_CHARS, MAX_FRAME_CHARS + 1])
                | st.integers(MAX_FRAME_CHARS + 1, 70_000)
            )
            pad = draw(st.sampled_from(["x", "é", "\u4e00", "\U0001f600"]))
            base = draw(
                st.sampled_from([{"type": "read", "up_to": 0}, {"type": "typing"}])
                | st.builds(
                    lambda content, cid: {"type": "message", "content": content, "client_id": cid},
                    CONTENT.filter(lambda c: len(c) < 100),
                    st.just(None) | NEW_CLIENT_ID.filter(lambda c: len(c) < 20),
                )
            )
            data = padded(base, size, pad)
        frames.append(Frame(data))
    return frames


# A hand-made sequence with every kind of frame, and the boundaries, tried first on every run.
EVERY_KIND = [
    Frame(send)
    for send in (
        '{"type":"message","content":"first","client_id":"a"}',
        '{"type":"typing"}',
        '{"type":"read","up_to":2147483647}',
        '{"type":"read","up_to":-1}',
        '{"type":"read","up_to":2147483648}',
        '{"type":"read","up_to":"5"}',
        '{"type":"read","up_to":1.5}',
        '{"type":"read","up_to":1e400}',
        "[1, 2]",
        "null",
        '"message"',
        '{"type":"Message","content":"x"}',
        '{"content":"no type"}',
        '{"type":"message","content":5,"client_id":"b"}',
        '{"type":"message","content":"   ","client_id":"b"}',
        '{"type":"message","content":"nul \\u0000","client_id":"b"}',
        '{"type":"message","content":"ok","client_id":""}',
        "{not json",
        '{"type":"message","content":"\\ud800","client_id":"b"}',
        '{"type":"message","content":"pair \\ud83d\\ude00","client_id":"b"}',
        '{"type":"message","content":"again","client_id":"a"}',
        padded({"type": "message", "content": "at the limit", "client_id": "c"}, MAX_FRAME_CHARS, "\U0001f600"),
        padded({"type": "message", "content": "one past", "client_id": "d"}, MAX_FRAME_CHARS + 1, "x"),
        padded({"type": "read", "up_to": 0}, 70_000, "\U0001f600"),
        '{"type":"message","content":"no client id"}',
    )
] + [Frame(b'{"type":"message","content":"binary","client_id":"e"}'), Frame(b"\x00\xff"), Frame(b"")]


# ---------------------------------------------------------------- one example


async def exchange(alice, bob, frames: list[Frame], sentinel: str) -> tuple[list[dict], list[dict]]:
    """Send the frames and the sentinel as alice; every frame alice's and bob's sockets got until its echo."""
    room = alice.room_with(bob)
    async with bob.connect(room, max_size=2**20) as observer:
        await recv_until(observer, presence_frame(alice.id, False))
        raw = await RawWebsocket.open(alice.server, room, alice.cookie)
        try:
            for frame in frames:
                if isinstance(frame.data, str):
                    raw.send_text(frame.data)
                else:
                    raw.send_binary(frame.data)
            raw.send_text(json.dumps({"type": "message", "content": "sentinel", "client_id": sentinel}))
            alice_frames, bob_frames = [], []
            read_alice = asyncio.ensure_future(sender_frames(raw, sentinel, alice_frames))
            try:
                await recv_until(observer, message_frame("sentinel", sentinel), timeout=TIMEOUT, seen=bob_frames)
            except ConnectionClosed as exc:
                raise AssertionError(f"the server closed bob's socket: {exc!r}; got {bob_frames[-10:]}") from None
            finally:
                await read_alice  # bob's failure must not hide alice's
        finally:
            raw.abort()
    return alice_frames, bob_frames


async def sender_frames(raw: RawWebsocket, sentinel: str, frames: list[dict]) -> None:
    """Read the raw socket until the sentinel's echo, appending every text frame; no close frame may come."""
    async with asyncio.timeout(TIMEOUT):
        while True:
            opcode, payload = await raw.read_frame(TIMEOUT)
            if opcode == 0x8:
                code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
                raise AssertionError(f"the server closed alice's socket with {code} {payload[2:]!r}; got {frames}")
            if opcode != 0x1:
                continue  # a ping
            frames.append(json.loads(payload))
            if message_frame("sentinel", sentinel)(frames[-1]):
                return


def message_ids(frames: list[dict]) -> list[int]:
    return [frame["message"]["id"] for frame in frames if frame["type"] == "message"]


def stored_messages(alice, bob) -> list[dict]:
    page = alice.http.get("/get-messages", params={"user_id": bob.id, "after": 0, "limit": 200}).json()
    assert not page["has_more"]
    return page["messages"]


def check_example(server: Server, frames: list[Frame]) -> None:
    alice, bob = new_person(server, "fuzzer"), new_person(server, "watcher")
    try:
        sentinel = f"sentinel-{next(_sentinels)}"
        alice_frames, bob_frames = asyncio.run(exchange(alice, bob, frames, sentinel))
        stored_ids = alice.stored_ids(bob)
        stored = stored_messages(alice, bob)
    finally:
        alice.http.close()
        bob.http.close()

    errors = [frame["error"] for frame in alice_frames if frame["type"] == "error"]
    expected_errors = [error for error in map(expected_error, frames) if error is not None]
    assert errors == expected_errors, [frame for frame in alice_frames if frame["type"] == "error"]

    for frames_seen in (bob_frames, alice_frames):
        ids = message_ids(frames_seen)
        assert ids == sorted(set(ids)), ids  # strictly increasing: in order, each once
        assert ids == stored_ids, (ids, stored_ids)
    assert [message["id"] for message in stored] == stored_ids

    # each valid message stored once per client_id, with its first content, in the order sent; nothing else
    expected, seen_ids = [], set()
    for content, cid in [*filter(None, map(valid_message, frames)), ("sentinel", sentinel)]:
        if cid is None or cid not in seen_ids:
            expected.append((content, cid))
            seen_ids.add(cid)
    assert [(message["content"], message["client_id"]) for message in stored] == expected
    assert {message["sender_id"] for message in stored} == {alice.id}


@settings(
    max_examples=25,
    deadline=None,  # a real server on a shared 2-core machine: the time of one example says nothing
    derandomize=True,  # the same sequences every run: the suite never flakes
    database=None,  # and no replay of an earlier run's failure either
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(frames=frame_sequences())
@example(frames=EVERY_KIND)
def test_random_frame_sequences_never_close_the_socket_nor_lose_a_message(fuzz_server, frames):
    check_example(fuzz_server, frames)
