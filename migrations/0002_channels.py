from tortoise import migrations
from tortoise.migrations import operations as ops
from chat.models import utcnow
from tortoise.fields.base import OnDelete
from tortoise import fields
from tortoise.indexes import Index


# SQLite cannot drop NOT NULL in place: AlterField below rebuilds the messages table, and the rebuilt table lacks
# the sender's client_id key (idempotency) and the (room, id) history index. They are made again, under their
# names in PostgreSQL's schema where that matters not: only on SQLite, whose rebuild dropped them.
SQLITE_RESTORE = (
    'CREATE UNIQUE INDEX IF NOT EXISTS "uid_messages_sender__9a6e09" ON "messages" ("sender_id", "client_id")',
    'CREATE INDEX IF NOT EXISTS "ix_messages_room_id" ON "messages" ("room", "id")',
)


async def restore_sqlite_indexes(apps, schema_editor) -> None:
    if schema_editor.client.capabilities.dialect != "sqlite":
        return
    for statement in SQLITE_RESTORE:
        await schema_editor.client.execute_script(statement)


class Migration(migrations.Migration):
    dependencies = [("models", "0001_initial")]

    initial = False

    operations = [
        ops.CreateModel(
            name="Channel",
            fields=[
                ("id", fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ("name", fields.CharField(max_length=80)),
                ("name_key", fields.CharField(unique=True, max_length=80)),
                ("topic", fields.CharField(default="", max_length=250)),
                ("private", fields.BooleanField(default=False)),
                ("archived", fields.BooleanField(default=False)),
                (
                    "created_by",
                    fields.ForeignKeyField(
                        "models.User",
                        source_field="created_by_id",
                        null=True,
                        db_constraint=True,
                        to_field="id",
                        related_name="created_channels",
                        on_delete=OnDelete.SET_NULL,
                    ),
                ),
                ("created_at", fields.DatetimeField(default=utcnow, auto_now=False, auto_now_add=False)),
            ],
            options={
                "table": "channels",
                "app": "models",
                "pk_attr": "id",
                "table_description": "A named room of any number of members: rooms.Room named ch-{id}.",
            },
            bases=["Model"],
        ),
        ops.CreateModel(
            name="Membership",
            fields=[
                ("id", fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                (
                    "channel",
                    fields.ForeignKeyField(
                        "models.Channel",
                        source_field="channel_id",
                        db_constraint=True,
                        to_field="id",
                        related_name="memberships",
                        on_delete=OnDelete.CASCADE,
                    ),
                ),
                (
                    "user",
                    fields.ForeignKeyField(
                        "models.User",
                        source_field="user_id",
                        db_constraint=True,
                        to_field="id",
                        related_name="memberships",
                        on_delete=OnDelete.CASCADE,
                    ),
                ),
                ("role", fields.CharField(default="member", max_length=10)),
                ("joined_at", fields.DatetimeField(default=utcnow, auto_now=False, auto_now_add=False)),
            ],
            options={
                "table": "memberships",
                "app": "models",
                "unique_together": (("channel", "user"),),
                "indexes": [Index(fields=["user_id", "channel_id"], name="ix_memberships_user_channel")],
                "pk_attr": "id",
                "table_description": "A user in a channel, as its owner or a member.",
            },
            bases=["Model"],
        ),
        ops.CreateModel(
            name="Mention",
            fields=[
                ("id", fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                (
                    "user",
                    fields.ForeignKeyField(
                        "models.User",
                        source_field="user_id",
                        db_constraint=True,
                        to_field="id",
                        related_name="mentions",
                        on_delete=OnDelete.CASCADE,
                    ),
                ),
                (
                    "message",
                    fields.ForeignKeyField(
                        "models.Message",
                        source_field="message_id",
                        db_constraint=True,
                        to_field="id",
                        related_name="mention_rows",
                        on_delete=OnDelete.CASCADE,
                    ),
                ),
                ("room", fields.CharField(max_length=100)),
            ],
            options={
                "table": "mentions",
                "app": "models",
                "indexes": [
                    Index(fields=["user_id", "room", "message_id"], name="ix_mentions_user_room_message"),
                    Index(fields=["message_id"], name="ix_mentions_message"),
                ],
                "pk_attr": "id",
                "table_description": "A user named in a message: counting a room's unread mentions is a range of (user, room, message).",
            },
            bases=["Model"],
        ),
        ops.AlterField(
            model_name="Message",
            name="receiver",
            field=fields.ForeignKeyField(
                "models.User",
                source_field="receiver_id",
                null=True,
                db_constraint=True,
                to_field="id",
                related_name="received_messages",
                on_delete=OnDelete.CASCADE,
            ),
        ),
        ops.RunPython(restore_sqlite_indexes),
        ops.AddField(
            model_name="Message",
            name="mentions",
            field=fields.TextField(default="", db_default="", unique=False),
        ),
        ops.AddIndex(
            model_name="Message",
            index=Index(fields=["receiver_id", "room"], name="ix_messages_receiver_room"),
        ),
    ]
