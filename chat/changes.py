"""Changes to stored messages: edit, delete, reactions (API.md "Changing messages").

Each change is checked here, then stored through conversations' one writer, in a transaction that also writes its
event row: a row of the messages table (models.EDIT, DELETE, REACT, UNREACT) in the same room, whose id comes from
the same sequence as messages. So the writer publishes changes in id order among the messages, and a socket that
resumes with ?after replays them from the same range of the (room, id) index (conversations.frames_after).
"""

# ruff: noqa: S608 - the SQL here interpolates parameter markers only ($ or ?), never a value

from __future__ import annotations

import unicodedata

from tortoise.connection import get_connection

from .conversations import (
    change_frame,
    check_send_rate,
    mentioned_members,
    message_writer,
    room_archived,
    with_reactions,
)
from .db import param
from .errors import APIError
from .files import delete_bytes, detach_for_delete
from .models import (
    DELETE,
    EDIT,
    MESSAGE,
    MESSAGE_FIELDS,
    REACT,
    UNREACT,
    MessageJSON,
    mention_text,
    message_json,
    utcnow,
)
from .rooms import Room, admission, forbidden

MAX_EMOJI = 32  # characters of one reaction (a family or a flag with tags is several code points)
# what may follow an emoji's first character within the same one: variation selectors, skin tones, the keycap,
# tag characters (subdivision flags) and the zero-width joiner that glues the next pictograph on
_MODIFIERS = {0xFE0E, 0xFE0F, 0x20E3, *range(0x1F3FB, 0x1F400), *range(0xE0020, 0xE0080)}
_ZWJ = 0x200D
_REGIONAL = range(0x1F1E6, 0x1F200)  # two of them make a flag
_KEYCAP_BASES = set("0123456789#*")


def message_not_found() -> APIError:
    return APIError(404, "message_not_found", "No such message, or not one you can see.")


def message_deleted() -> APIError:
    return APIError(409, "message_deleted", "This message was deleted.")


def is_single_emoji(text: str) -> bool:
    """One emoji (what a reaction is): a pictograph with its modifiers, ZWJ sequences of them, a flag, a keycap."""
    if not text or len(text) > MAX_EMOJI:
        return False
    points = [ord(char) for char in text]
    if all(point in _REGIONAL for point in points):
        return len(points) == 2
    if text[0] in _KEYCAP_BASES:
        return points[1:] in ([0xFE0F, 0x20E3], [0x20E3])
    expect_pictograph = True
    for point in points:
        if expect_pictograph:
            if not _pictograph(point):
                return False
            expect_pictograph = False
        elif point == _ZWJ:
            expect_pictograph = True
        elif point not in _MODIFIERS:
            return False
    return not expect_pictograph


def _pictograph(point: int) -> bool:
    # emoji are symbols ("So") outside ASCII and Latin-1's letters (© and ® are "So" and emoji too)
    return point >= 0xA9 and unicodedata.category(chr(point)) == "So"


async def _target(me: int, message_id: int) -> tuple[MessageJSON, Room, str | None]:
    """The message with its room and the caller's role there: 404 when there is none the caller may see, 409 when
    its channel is archived (read-only). A change counts against the sender's send limit, as a message does:
    each one is an event every socket of the room receives."""
    await check_send_rate(me, None)
    sql = f"SELECT {', '.join(MESSAGE_FIELDS)} FROM messages WHERE id = {param(1)} AND event = ''"  # noqa: S608
    _, rows = await get_connection("default").execute_query(sql, [message_id])
    if not rows:
        raise message_not_found()
    message = message_json(*rows[0])
    try:
        admitted = await admission(me, message["room"])
    except APIError:  # not a member of its room (any more), or its other person is gone: it is not theirs to see
        raise message_not_found() from None
    if admitted.archived:
        raise room_archived()
    return message, admitted.room, admitted.role


async def edit(me: int, message_id: int, content: str) -> MessageJSON:
    """The sender changes a message's content (and so its mentions): 403 for anyone else, 409 once deleted."""
    message, room, _ = await _target(me, message_id)
    if message["sender_id"] != me:
        raise forbidden("Only its sender can edit a message.")
    if message["deleted"]:
        raise message_deleted()
    mentions = await mentioned_members(room, content)

    async def apply(connection, mark: str) -> dict:
        now = utcnow()
        changed = await connection.execute_query_dict(
            f"UPDATE messages SET content = {mark}1, edited_at = {mark}2, mentions = {mark}3"
            f" WHERE id = {mark}4 AND NOT deleted RETURNING id",
            [content, now, mention_text(mentions), message_id],
        )
        if not changed:  # deleted since it was read: the delete went first
            raise message_deleted()
        await connection.execute_query(f"DELETE FROM mentions WHERE message_id = {mark}1", [message_id])
        for user_id in mentions:
            await connection.execute_query(
                f"INSERT INTO mentions (user_id, message_id, room) VALUES ({mark}1, {mark}2, {mark}3)",
                [user_id, message_id, room.name],
            )
        event_id = await _store_event(connection, mark, room, me, EDIT, message_id)
        edited = {**message, "content": content, "mentions": mentions, "edited_at": now}
        current = message_json(*(edited[name] for name in MESSAGE_FIELDS))
        await with_reactions([current], connection)
        return change_frame(event_id, EDIT, message_id, current, me, "")

    frame = await message_writer().change(room, apply)
    return frame["message"]


async def delete(me: int, message_id: int) -> None:
    """The sender, or an owner of its channel, deletes a message: its content, mentions and reactions leave the
    database (search's index follows through its trigger or generated column); a tombstone keeps its id and
    place. Deleting it again changes nothing."""
    message, room, role = await _target(me, message_id)
    if message["sender_id"] != me and role != "owner":
        raise forbidden("Only its sender or an owner of the channel can delete a message.")
    if message["deleted"]:
        return
    stored_files: list[str] = []  # the keys of its files' bytes, deleted once the transaction is committed

    async def apply(connection, mark: str) -> dict | None:
        changed = await connection.execute_query_dict(
            f"UPDATE messages SET content = '', mentions = '', deleted = {mark}1 WHERE id = {mark}2 AND NOT deleted"
            " RETURNING id",
            [True, message_id],
        )
        if not changed:
            return None
        await connection.execute_query(f"DELETE FROM mentions WHERE message_id = {mark}1", [message_id])
        await connection.execute_query(f"DELETE FROM reactions WHERE message_id = {mark}1", [message_id])
        stored_files[:] = await detach_for_delete(connection, mark, message_id)
        event_id = await _store_event(connection, mark, room, me, DELETE, message_id)
        return change_frame(event_id, DELETE, message_id, None, me, "")

    await message_writer().change(room, apply)
    await delete_bytes(stored_files)


async def react(me: int, message_id: int, emoji: str, on: bool) -> None:
    """Add (on) or take back the caller's emoji on a message, idempotently: a reaction event only when it changed.
    Adding one to a deleted message is 409; taking one back from it changes nothing (it has none)."""
    if not is_single_emoji(emoji):
        raise APIError(400, "validation_error", f"A reaction is a single emoji of at most {MAX_EMOJI} characters.")
    message, room, _ = await _target(me, message_id)
    if message["deleted"]:
        if on:
            raise message_deleted()
        return

    async def apply(connection, mark: str) -> dict | None:
        if on:
            alive = await connection.execute_query_dict(
                f"SELECT id FROM messages WHERE id = {mark}1 AND NOT deleted", [message_id]
            )
            if not alive:
                raise message_deleted()
            changed = await connection.execute_query_dict(
                f"INSERT INTO reactions (message_id, user_id, emoji) VALUES ({mark}1, {mark}2, {mark}3)"
                " ON CONFLICT DO NOTHING RETURNING id",
                [message_id, me, emoji],
            )
        else:
            changed = await connection.execute_query_dict(
                f"DELETE FROM reactions WHERE message_id = {mark}1 AND user_id = {mark}2 AND emoji = {mark}3"
                " RETURNING id",
                [message_id, me, emoji],
            )
        if not changed:
            return None
        kind = REACT if on else UNREACT
        event_id = await _store_event(connection, mark, room, me, kind, message_id, emoji)
        return change_frame(event_id, kind, message_id, None, me, emoji)

    await message_writer().change(room, apply)


async def _store_event(
    connection, mark: str, room: Room, user_id: int, kind: str, message_id: int, emoji: str = ""
) -> int:
    """The change's row in the room's sequence: who made it, what, to which message (a reaction's emoji as its
    content)."""
    assert kind != MESSAGE
    rows = await connection.execute_query_dict(
        "INSERT INTO messages (sender_id, receiver_id, room, content, timestamp, mentions, event, target_id)"
        f" VALUES ({mark}1, NULL, {mark}2, {mark}3, {mark}4, '', {mark}5, {mark}6) RETURNING id",
        [user_id, room.name, emoji, utcnow(), kind, message_id],
    )
    return rows[0]["id"]
