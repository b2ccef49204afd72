"""The data model. Table names are explicit: "user" is a reserved word in PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime

from tortoise import fields
from tortoise.indexes import Index
from tortoise.models import Model


def utcnow() -> datetime:
    return datetime.now(UTC)


def room_for(a: int, b: int) -> str:
    return f"dm-{min(a, b)}-{max(a, b)}"


class User(Model):
    id = fields.IntField(primary_key=True)
    username = fields.CharField(max_length=80)
    # lower-cased username: the unique key that makes "Alice" and "alice" the same account
    username_key = fields.CharField(max_length=80, unique=True)
    email = fields.CharField(max_length=120, unique=True)  # stored lower-cased
    password_hash = fields.CharField(max_length=100)
    created_at = fields.DatetimeField(default=utcnow)

    class Meta:
        table = "users"

    def public(self) -> dict:
        return {"id": self.id, "username": self.username, "email": self.email}


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
    room = fields.CharField(max_length=100)
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

    def public(self) -> dict:
        return {
            "id": self.id,
            "sender_id": self.sender_id,
            "receiver_id": self.receiver_id,
            "room": self.room,
            "content": self.content,
            "timestamp": self.timestamp.astimezone(UTC).isoformat(),
            "client_id": self.client_id,
        }


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
