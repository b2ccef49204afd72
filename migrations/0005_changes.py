"""Messages people can fix and answer (issue 14): edited_at, deleted and reply_to on messages, the reactions
table, and change events as rows of messages (`event`, `target_id`), so that a change takes its id from the same
sequence as messages and `?after` replays both in one range of the (room, id) index. Adding columns is an ALTER
TABLE on both databases (no rebuild): the indexes, the client_id key and search's FTS5 triggers stay.
"""

from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise.fields.base import OnDelete
from tortoise import fields


class Migration(migrations.Migration):
    dependencies = [("models", "0004_search")]

    initial = False

    operations = [
        ops.CreateModel(
            name="Reaction",
            fields=[
                ("id", fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                (
                    "message",
                    fields.ForeignKeyField(
                        "models.Message",
                        source_field="message_id",
                        db_constraint=True,
                        to_field="id",
                        related_name="reactions",
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
                        related_name="reactions",
                        on_delete=OnDelete.CASCADE,
                    ),
                ),
                ("emoji", fields.CharField(max_length=32)),
            ],
            options={
                "table": "reactions",
                "app": "models",
                "unique_together": (("message", "user", "emoji"),),
                "pk_attr": "id",
                "table_description": "One person's emoji on a message (at most once each): GET /get-messages counts them, by first use.",
            },
            bases=["Model"],
        ),
        ops.AddField(
            model_name="Message",
            name="deleted",
            field=fields.BooleanField(default=False, db_default=False),
        ),
        ops.AddField(
            model_name="Message",
            name="edited_at",
            field=fields.DatetimeField(null=True, auto_now=False, auto_now_add=False),
        ),
        ops.AddField(
            model_name="Message",
            name="event",
            field=fields.CharField(default="", db_default="", max_length=10),
        ),
        ops.AddField(
            model_name="Message",
            name="reply_to",
            field=fields.IntField(null=True),
        ),
        ops.AddField(
            model_name="Message",
            name="target_id",
            field=fields.IntField(null=True),
        ),
    ]
