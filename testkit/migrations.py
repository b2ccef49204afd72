"""The frame of every migration test: a database stopped at an earlier migration, filled by raw SQL as the code
of that time filled it (today's models have columns that later migrations add), then migrated the rest of the way."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from quart import Quart
from tortoise.connection import get_connection
from tortoise.migrations.executor import MigrationExecutor, MigrationTarget

from chat.db import param_prefix, tortoise_config
from chat.rooms import Room

from .app import started_app


@dataclass
class EarlierSchema:
    app: Quart
    executor: MigrationExecutor

    @property
    def mark(self) -> str:
        """The numbered parameter marker's prefix on this backend: `{mark}1` is ?1 or $1."""
        return param_prefix()

    async def query(self, sql: str, values: list | None = None) -> list[dict]:
        return await get_connection("default").execute_query_dict(sql, values or [])

    async def execute(self, sql: str, values: list | None = None) -> None:
        await get_connection("default").execute_query(sql, values or [])

    async def add_user(self, name: str) -> int:
        """A user row with only the first schema's columns; its id."""
        await self.execute(
            "INSERT INTO users (username, username_key, email, password_hash, created_at) "
            f"VALUES ({self.mark}1, {self.mark}1, {self.mark}2, 'x', '2026-11-01 00:00:00+00:00')",
            [name, f"{name}@example.org"],
        )
        return (await self.query(f"SELECT id FROM users WHERE username = {self.mark}1", [name]))[0]["id"]

    async def add_direct_message(self, sender: int, receiver: int, content: str, client_id: str) -> None:
        """A direct message with the columns of 0002 to 0007 (mentions and none of the later ones), sent now."""
        mark = self.mark
        await self.execute(
            "INSERT INTO messages (sender_id, receiver_id, room, content, timestamp, client_id, mentions) "
            f"VALUES ({mark}1, {mark}2, {mark}3, {mark}4, {mark}5, {mark}6, '')",
            [sender, receiver, Room.direct(sender, receiver).name, content, datetime.now(UTC), client_id],
        )

    async def migrate_the_rest(self) -> list[str]:
        """Apply every later migration; the names of all applied ones, in order."""
        await self.executor.migrate()
        return [row["name"] for row in await self.query("SELECT name FROM tortoise_migrations ORDER BY id")]


@contextlib.asynccontextmanager
async def schema_at(tmp_path: Path, migration: str) -> AsyncIterator[EarlierSchema]:
    """A started application whose database (in the configuration under test) stops at `migration`."""
    async with started_app(tmp_path, migrate=False) as app:
        settings = app.extensions["chat"].settings
        executor = MigrationExecutor(get_connection("default"), tortoise_config(settings)["apps"])
        await executor.migrate([MigrationTarget("models", migration)])
        yield EarlierSchema(app, executor)
