"""The data model. Table names are explicit: "user" is a reserved word in PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TypedDict

from tortoise import fields
from tortoise.indexes import Index
from tortoise.models import Model


def utcnow() -> datetime:
    return datetime.now(UTC)


class MessageJSON(TypedDict):
    """A message as the API and the websockets send it. message_json() alone builds one; schemas.MessageOut
    (its documentation) and the raw-SQL history (its columns) derive from this, so a new field goes here."""

    id: int
    sender_id: int
    receiver_id: int
    room: str
    content: str
    timestamp: str  # ISO 8601, UTC
    client_id: str | None


# also the columns of the messages table that hold them, in message_json's order (history passes rows by position)
MESSAGE_FIELDS = tuple(MessageJSON.__annotations__)


def message_json(
    id: int,  # noqa: A002 - the field's name
    sender_id: int,
    receiver_id: int,
    room: str,
    content: str,
    timestamp: datetime | str,
    client_id: str | None,
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
    }


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
    receiver: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "models.User", related_name="received_messages", on_delete=fields.CASCADE
    )
    room = fields.CharField(max_length=100)  # rooms.Room.name
    content = fields.TextField()
    timestamp = fields.DatetimeField(default=utcnow)
    client_id = fields.CharField(max_length=64, null=True)

    sender_id: int
    receiver_id: int

    class Meta:
        table = "messages"
        # history is always read per room by id: this index serves newest / before / after pages
        indexes = (Index(fields=("room", "id"), name="ix_messages_room_id"),)
        # the sender's idempotency key (NULLs never collide)
        unique_together = (("sender", "client_id"),)

    def public(self) -> MessageJSON:
        return message_json(
            self.id, self.sender_id, self.receiver_id, self.room, self.content, self.timestamp, self.client_id
        )


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
