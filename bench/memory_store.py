"""The in-memory message list that the bare servers (bare_quart, raw_asgi) serve instead of a database."""

from __future__ import annotations

from datetime import UTC, datetime

PREFILLED = 1000
PAGE = 50


class MemoryStore:
    def __init__(self) -> None:
        self.messages: list[dict] = []
        now = datetime.now(UTC)
        for number in range(PREFILLED):
            self.add(1 + number % 2, 2 - number % 2, f"seeded message {number}", None, now)

    def add(self, sender_id: int, receiver_id: int, content: str, client_id: str | None, when: datetime) -> dict:
        low, high = sorted((sender_id, receiver_id))
        message = {
            "id": len(self.messages) + 1,
            "sender_id": sender_id,
            "receiver_id": receiver_id,
            "room": f"dm-{low}-{high}",
            "content": content,
            "timestamp": when.isoformat(),
            "client_id": client_id,
        }
        self.messages.append(message)
        return message

    def page(self, before: int | None) -> tuple[list[dict], bool]:
        """The PAGE messages just older than `before` (or the newest), oldest first: a slice, no search."""
        end = len(self.messages) if before is None else max(0, min(before - 1, len(self.messages)))
        start = max(0, end - PAGE)
        return self.messages[start:end], start > 0
