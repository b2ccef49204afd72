"""Files and images (issue 16): the files table, one row per uploaded file whose bytes are in the files store
(chat/file_store.py). A new table: the messages and everything else stay as they are."""

from tortoise import migrations
from tortoise.migrations import operations as ops
from chat.models import utcnow
from tortoise.fields.base import OnDelete
from tortoise import fields
from tortoise.indexes import Index


class Migration(migrations.Migration):
    dependencies = [("models", "0006_search_cost")]

    initial = False

    operations = [
        ops.CreateModel(
            name="File",
            fields=[
                ("id", fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                (
                    "uploader",
                    fields.ForeignKeyField(
                        "models.User",
                        source_field="uploader_id",
                        db_constraint=True,
                        to_field="id",
                        related_name="files",
                        on_delete=OnDelete.CASCADE,
                    ),
                ),
                ("room", fields.CharField(max_length=100)),
                ("name", fields.CharField(max_length=255)),
                ("content_type", fields.CharField(max_length=100)),
                ("size", fields.BigIntField()),
                ("key", fields.CharField(max_length=200)),
                ("width", fields.IntField(null=True)),
                ("height", fields.IntField(null=True)),
                ("thumb_key", fields.CharField(max_length=200, null=True)),
                ("message_id", fields.IntField(null=True)),
                ("created_at", fields.DatetimeField(default=utcnow, auto_now=False, auto_now_add=False)),
            ],
            options={
                "table": "files",
                "app": "models",
                "indexes": [
                    Index(fields=["message_id"], name="ix_files_message"),
                    Index(fields=["uploader_id", "message_id"], name="ix_files_uploader_message"),
                    Index(fields=["created_at"], name="ix_files_created"),
                ],
                "pk_attr": "id",
                "table_description": "An uploaded file: its bytes are in the files store under `key` (chat/file_store.py), this row is written only once they are. `message` is NULL until a message attaches it (an unsent upload is removed after a day).",
            },
            bases=["Model"],
        ),
    ]
