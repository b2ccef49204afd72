from tortoise import migrations
from tortoise.migrations import operations as ops
from chat.models import utcnow
from tortoise.fields.base import OnDelete
from tortoise import fields
from tortoise.indexes import Index


class Migration(migrations.Migration):
    initial = True

    operations = [
        ops.CreateModel(
            name="User",
            fields=[
                ("id", fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ("username", fields.CharField(max_length=80)),
                ("username_key", fields.CharField(unique=True, max_length=80)),
                ("email", fields.CharField(unique=True, max_length=120)),
                ("password_hash", fields.CharField(max_length=100)),
                ("created_at", fields.DatetimeField(default=utcnow, auto_now=False, auto_now_add=False)),
            ],
            options={"table": "users", "app": "models", "pk_attr": "id"},
            bases=["Model"],
        ),
        ops.CreateModel(
            name="Message",
            fields=[
                ("id", fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                (
                    "sender",
                    fields.ForeignKeyField(
                        "models.User",
                        source_field="sender_id",
                        db_constraint=True,
                        to_field="id",
                        related_name="sent_messages",
                        on_delete=OnDelete.CASCADE,
                    ),
                ),
                (
                    "receiver",
                    fields.ForeignKeyField(
                        "models.User",
                        source_field="receiver_id",
                        db_constraint=True,
                        to_field="id",
                        related_name="received_messages",
                        on_delete=OnDelete.CASCADE,
                    ),
                ),
                ("room", fields.CharField(max_length=100)),
                ("content", fields.TextField(unique=False)),
                ("timestamp", fields.DatetimeField(default=utcnow, auto_now=False, auto_now_add=False)),
                ("client_id", fields.CharField(null=True, max_length=64)),
            ],
            options={
                "table": "messages",
                "app": "models",
                "unique_together": (("sender", "client_id"),),
                "indexes": [Index(fields=["room", "id"], name="ix_messages_room_id")],
                "pk_attr": "id",
            },
            bases=["Model"],
        ),
        ops.CreateModel(
            name="ReadMarker",
            fields=[
                ("id", fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                (
                    "user",
                    fields.ForeignKeyField(
                        "models.User",
                        source_field="user_id",
                        db_constraint=True,
                        to_field="id",
                        related_name="read_markers",
                        on_delete=OnDelete.CASCADE,
                    ),
                ),
                ("room", fields.CharField(max_length=100)),
                ("up_to", fields.IntField(default=0)),
                ("updated_at", fields.DatetimeField(default=utcnow, auto_now=False, auto_now_add=False)),
            ],
            options={
                "table": "read_markers",
                "app": "models",
                "unique_together": (("user", "room"),),
                "pk_attr": "id",
                "table_description": "How far a user has read in a room: every message with id <= up_to counts as read.",
            },
            bases=["Model"],
        ),
        ops.CreateModel(
            name="Session",
            fields=[
                ("id", fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ("token_hash", fields.CharField(unique=True, max_length=64)),
                (
                    "user",
                    fields.ForeignKeyField(
                        "models.User",
                        source_field="user_id",
                        db_constraint=True,
                        to_field="id",
                        related_name="sessions",
                        on_delete=OnDelete.CASCADE,
                    ),
                ),
                ("created_at", fields.DatetimeField(default=utcnow, auto_now=False, auto_now_add=False)),
                ("expires_at", fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ("revoked_at", fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={
                "table": "sessions",
                "app": "models",
                "pk_attr": "id",
                "table_description": "A signed-in browser or client. The cookie carries a random token, of which only the SHA-256 is stored.",
            },
            bases=["Model"],
        ),
    ]
