"""The data model. Table names are explicit: "user" is a reserved word in PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import quote

from tortoise import fields
from tortoise.indexes import Index
from tortoise.models import Model
from typing_extensions import TypedDict  # pydantic reads it (schemas.MessageOut): Python < 3.12 needs this one


def utcnow() -> datetime:
    return datetime.now(UTC)


class MessageJSON(TypedDict):
    """A message as the API and the websockets send it. message_json() alone builds one; schemas.MessageOut
    (its documentation) and the raw-SQL history (its columns) derive from this, so a new field goes here."""

    id: int
    sender_id: int
    receiver_id: int | None  # None in a channel
    room: str
    content: str
    timestamp: str  # ISO 8601, UTC
    client_id: str | None
    mentions: list[int]  # the room's members that the content names with @username
    edited_at: str | None  # ISO 8601, UTC: when the sender last edited it
    deleted: bool  # a tombstone: content and mentions are gone, the id stays in history
    reply_to: int | None  # a message of the same room that this one answers
    reactions: list[ReactionJSON]  # ordered by first use
    files: list[FileJSON]  # attached with file_ids when it was sent, in upload order


class ReactionJSON(TypedDict):
    emoji: str
    count: int
    user_ids: list[int]


class FileJSON(TypedDict, total=False):
    """An uploaded file as POST /files answers it and a message lists it (file_json builds one)."""

    id: int
    name: str
    content_type: str
    size: int
    url: str  # GET it: /files/<id>/<name>
    width: int  # images only
    height: int
    thumbnail_url: str  # images with a thumbnail only: /files/<id>/thumb


# read with the message from other tables, not columns of the messages table (conversations.with_reactions)
COMPUTED_FIELDS = ("reactions", "files")
# the columns of the messages table that hold the rest, in message_json's order (history passes rows by position)
MESSAGE_FIELDS = tuple(name for name in MessageJSON.__annotations__ if name not in COMPUTED_FIELDS)

# what a row of the messages table is: a message (""), or a change to one, an event of the room's sequence
MESSAGE, EDIT, DELETE, REACT, UNREACT = "", "edit", "delete", "react", "unreact"


def message_json(
    id: int,  # noqa: A002 - the field's name
    sender_id: int,
    receiver_id: int | None,
    room: str,
    content: str,
    timestamp: datetime | str,
    client_id: str | None,
    mentions: str | list[int] = "",
    edited_at: datetime | str | None = None,
    deleted: bool | int = False,
    reply_to: int | None = None,
    *,
    reactions: list[ReactionJSON] | None = None,
    files: list[FileJSON] | None = None,
) -> MessageJSON:
    """The one place a message's JSON is built: from a model, from a row the writer inserted, from a SELECT."""
    return {
        "id": id,
        "sender_id": sender_id,
        "receiver_id": receiver_id,
        "room": room,
        "content": content,
        "timestamp": iso_utc(timestamp),
        "client_id": client_id,
        "mentions": mention_ids(mentions),
        "edited_at": None if edited_at is None else iso_utc(edited_at),
        "deleted": bool(deleted),  # SQLite reads 0 / 1
        "reply_to": reply_to,
        "reactions": reactions or [],
        "files": files or [],
    }


# the columns of the files table that file_json takes, in its order
FILE_FIELDS = ("id", "name", "content_type", "size", "width", "height", "thumb_key")


def file_json(
    id: int,  # noqa: A002 - the field's name
    name: str,
    content_type: str,
    size: int,
    width: int | None = None,
    height: int | None = None,
    thumb_key: str | None = None,
) -> FileJSON:
    """The one place a file's JSON is built (POST /files, a message's files)."""
    built: FileJSON = {
        "id": id,
        "name": name,
        "content_type": content_type,
        "size": int(size),
        "url": f"/files/{id}/{quote(name, safe='')}",
    }
    if width is not None and height is not None:
        built["width"], built["height"] = width, height
    if thumb_key:
        built["thumbnail_url"] = f"/files/{id}/thumb"
    return built


def mention_ids(value: str | list[int]) -> list[int]:
    """The mentioned ids, as the messages table keeps them (a comma-separated text, "" for none) or as a list."""
    if isinstance(value, list):
        return value
    return [int(part) for part in value.split(",")] if value else []


def mention_text(ids: list[int]) -> str:
    return ",".join(str(user_id) for user_id in ids)


def iso_utc(value: datetime | str) -> str:
    """A stored timestamp in ISO 8601, UTC (raw SQL reads text from SQLite, a datetime from PostgreSQL)."""
    if isinstance(value, str):
        if value.endswith("+00:00") and value[10:11] == " ":  # as chat writes it: the ISO form is one letter away
            return f"{value[:10]}T{value[11:]}"
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:  # stored without an offset: UTC, as the ORM reads it
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat()


ADMIN, MEMBER = "admin", "member"  # a user's role


class User(Model):
    id = fields.IntField(primary_key=True)
    username = fields.CharField(max_length=80)
    # lower-cased username: the unique key that makes "Alice" and "alice" the same account
    username_key = fields.CharField(max_length=80, unique=True)
    email = fields.CharField(max_length=120, unique=True)  # stored lower-cased
    password_hash = fields.CharField(max_length=100)
    created_at = fields.DatetimeField(default=utcnow)
    # admins deactivate and reactivate accounts and grant the role (db_default: rows from before the column are not)
    is_admin = fields.BooleanField(default=False, db_default=False)
    # set while an admin has the account deactivated: no session is accepted and no sign-in succeeds
    deactivated_at = fields.DatetimeField(null=True)
    # set when the owner deleted the account: the row stays, nameless, so that others' history keeps its sender
    deleted_at = fields.DatetimeField(null=True)

    class Meta:
        table = "users"

    def public(self) -> dict:
        return {"id": self.id, "username": self.username, "email": self.email}

    @property
    def role(self) -> str:
        return ADMIN if self.is_admin else MEMBER

    def account(self) -> dict:
        """The account as its owner (GET /me) and the admins see it."""
        return {**self.public(), "role": self.role, "deactivated": self.deactivated_at is not None}


DELETED_USERNAME = "deleted user"  # what others see of a deleted account (a space: no account can be named so)


class Session(Model):
    """A signed-in browser or client. The cookie carries a random token, of which only the SHA-256 is stored.

    (No semicolons in model docstrings: Tortoise puts them in SQL comments and splits statements on them.)
    """

    id = fields.IntField(primary_key=True)
    token_hash = fields.CharField(max_length=64, unique=True)
    user: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "models.User", related_name="sessions", on_delete=fields.CASCADE
    )
    created_at = fields.DatetimeField(default=utcnow)
    expires_at = fields.DatetimeField()
    revoked_at = fields.DatetimeField(null=True)

    class Meta:
        table = "sessions"


class Message(Model):
    id = fields.IntField(primary_key=True)
    sender: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "models.User", related_name="sent_messages", on_delete=fields.CASCADE, db_index=False
    )
    # NULL in a channel: its members change, the message stays
    receiver: fields.ForeignKeyNullableRelation[User] = fields.ForeignKeyField(
        "models.User", related_name="received_messages", on_delete=fields.CASCADE, null=True
    )
    room = fields.CharField(max_length=100)  # rooms.Room.name
    content = fields.TextField()
    timestamp = fields.DatetimeField(default=utcnow)
    client_id = fields.CharField(max_length=64, null=True)
    # the mentioned user ids, comma-separated: a history page reads them with the row (the mentions table counts)
    mentions = fields.TextField(default="", db_default="")
    edited_at = fields.DatetimeField(null=True)
    deleted = fields.BooleanField(default=False, db_default=False)
    reply_to = fields.IntField(null=True)  # a message of the same room (no foreign key: rows are never removed)
    # MESSAGE for a message; for a change, what changed (EDIT, DELETE, REACT, UNREACT): a change takes its id from
    # the same sequence in the same room, so replaying a room after an id is one range of the (room, id) index.
    # The sender of a change is who made it; a reaction's emoji is its content.
    event = fields.CharField(max_length=10, default=MESSAGE, db_default=MESSAGE)
    target_id = fields.IntField(null=True)  # the message a change is about

    sender_id: int
    receiver_id: int | None

    class Meta:
        table = "messages"
        # history is always read per room by id: this index serves newest / before / after pages; the second
        # finds a user's direct rooms (rooms.rooms_of), as the client_id key does for what they sent
        indexes = (
            Index(fields=("room", "id"), name="ix_messages_room_id"),
            Index(fields=("receiver_id", "room"), name="ix_messages_receiver_room"),
        )
        # the sender's idempotency key (NULLs never collide)
        unique_together = (("sender", "client_id"),)

    def public(self) -> MessageJSON:
        return message_json(
            self.id,
            self.sender_id,
            self.receiver_id,
            self.room,
            self.content,
            self.timestamp,
            self.client_id,
            self.mentions,
            self.edited_at,
            self.deleted,
            self.reply_to,
        )


class Reaction(Model):
    """One person's emoji on a message (at most once each): GET /get-messages counts them, by first use."""

    id = fields.IntField(primary_key=True)
    message: fields.ForeignKeyRelation[Message] = fields.ForeignKeyField(
        "models.Message", related_name="reactions", on_delete=fields.CASCADE, db_index=False
    )
    user: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "models.User", related_name="reactions", on_delete=fields.CASCADE, db_index=False
    )
    emoji = fields.CharField(max_length=32)

    message_id: int
    user_id: int

    class Meta:
        table = "reactions"
        unique_together = (("message", "user", "emoji"),)  # its index also reads a page's reactions


class ReadMarker(Model):
    """How far a user has read in a room: every message with id <= up_to counts as read."""

    id = fields.IntField(primary_key=True)
    user: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "models.User", related_name="read_markers", on_delete=fields.CASCADE, db_index=False
    )
    room = fields.CharField(max_length=100)
    up_to = fields.IntField(default=0)
    updated_at = fields.DatetimeField(default=utcnow)

    class Meta:
        table = "read_markers"
        unique_together = (("user", "room"),)


class Channel(Model):
    """A named room of any number of members: rooms.Room named ch-{id}."""

    id = fields.IntField(primary_key=True)
    name = fields.CharField(max_length=80)
    # lower-cased name: the unique key that makes "General" and "general" the same channel
    name_key = fields.CharField(max_length=80, unique=True)
    topic = fields.CharField(max_length=250, default="")
    private = fields.BooleanField(default=False)
    archived = fields.BooleanField(default=False)
    created_by: fields.ForeignKeyNullableRelation[User] = fields.ForeignKeyField(
        "models.User", related_name="created_channels", on_delete=fields.SET_NULL, null=True, db_index=False
    )
    created_at = fields.DatetimeField(default=utcnow)

    created_by_id: int | None

    class Meta:
        table = "channels"


class Membership(Model):
    """A user in a channel, as its owner or a member."""

    id = fields.IntField(primary_key=True)
    channel: fields.ForeignKeyRelation[Channel] = fields.ForeignKeyField(
        "models.Channel", related_name="memberships", on_delete=fields.CASCADE, db_index=False
    )
    user: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "models.User", related_name="memberships", on_delete=fields.CASCADE
    )
    role = fields.CharField(max_length=10, default="member")  # "owner" or "member"
    joined_at = fields.DatetimeField(default=utcnow)

    channel_id: int
    user_id: int

    class Meta:
        table = "memberships"
        unique_together = (("channel", "user"),)  # its index also lists a channel's members
        # the channels of one user (every GET /rooms, every /ws/me)
        indexes = (Index(fields=("user_id", "channel_id"), name="ix_memberships_user_channel"),)


class Mention(Model):
    """A user named in a message: counting a room's unread mentions is a range of (user, room, message)."""

    id = fields.IntField(primary_key=True)
    user: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "models.User", related_name="mentions", on_delete=fields.CASCADE, db_index=False
    )
    message: fields.ForeignKeyRelation[Message] = fields.ForeignKeyField(
        "models.Message", related_name="mention_rows", on_delete=fields.CASCADE
    )
    room = fields.CharField(max_length=100)

    class Meta:
        table = "mentions"
        indexes = (
            Index(fields=("user_id", "room", "message_id"), name="ix_mentions_user_room_message"),
            Index(fields=("message_id",), name="ix_mentions_message"),  # deleting a message deletes its mentions
        )


class File(Model):
    """An uploaded file: its bytes are in the files store under `key` (chat/file_store.py), this row is written
    only once they are. `message` is NULL until a message attaches it (an unsent upload is removed after a day)."""

    id = fields.IntField(primary_key=True)
    uploader: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "models.User", related_name="files", on_delete=fields.CASCADE, db_index=False
    )
    room = fields.CharField(max_length=100)  # rooms.Room.name: only its members may read it
    name = fields.CharField(max_length=255)  # sanitized: no path, no control characters
    content_type = fields.CharField(max_length=100)  # sniffed from the bytes, never the client's word
    size = fields.BigIntField()
    key = fields.CharField(max_length=200)  # where the bytes are in the store
    width = fields.IntField(null=True)  # images only
    height = fields.IntField(null=True)
    thumb_key = fields.CharField(max_length=200, null=True)  # a small re-encoded image, for the page
    message_id = fields.IntField(null=True)  # the message it is attached to (no foreign key, as reply_to)
    created_at = fields.DatetimeField(default=utcnow)

    uploader_id: int

    class Meta:
        table = "files"
        indexes = (
            Index(fields=("message_id",), name="ix_files_message"),  # a page's files, a deleted message's files
            Index(fields=("uploader_id", "message_id"), name="ix_files_uploader_message"),  # unsent bytes (quota)
            Index(fields=("created_at",), name="ix_files_created"),  # the sweep of unsent files
        )
