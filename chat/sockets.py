"""What one user's websockets may take of a worker: how many may be open, and how fast their frames are read.

docs/websocket.md ("Limits") tells clients what they meet; tests/system/test_hostile_websocket.py floods past each one.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field


class FrameBudget:
    """A token bucket for the frames of one user's sockets: `rate` a second once `burst` is spent.

    A frame past the budget is dropped unread: it costs no query and no memory, and the client is told
    (`too_many_frames`). Each drop is a debt the refill must pay back first; a client deep in debt (as many drops
    unpaid as the burst) is flooding, not bursting, and its socket is closed (4429) rather than read on.
    """

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = burst
        self._tokens = float(burst)
        self._stamp = time.monotonic()

    def take(self) -> bool:
        """True when a frame may be handled now; False when it is over the budget (then drop it)."""
        now = time.monotonic()
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now
        self._tokens -= 1
        return self._tokens >= 0

    @property
    def flooding(self) -> bool:
        return self._tokens <= -self.burst


@dataclass
class SocketLimits:
    """Open sockets per session and per user in this worker, and each user's shared frame budget."""

    per_session: int
    per_user: int
    frame_rate: float  # frames a second that one user's sockets are read at together, once the burst is spent
    frame_burst: int  # frames read at once before the pace applies: a reconnect's catch-up, a quick typist
    on_change: Callable[[int], None] = lambda delta: None  # told +1 / -1 as a socket opens / closes (metrics)
    _by_session: Counter[int] = field(default_factory=Counter)
    _by_user: Counter[int] = field(default_factory=Counter)
    _budgets: dict[int, FrameBudget] = field(default_factory=dict)

    def admit(self, user_id: int, session_id: int) -> FrameBudget | None:
        """The user's frame budget for one more socket, or None when the session or the user has its fill."""
        if self._by_session[session_id] >= self.per_session or self._by_user[user_id] >= self.per_user:
            return None
        self._by_session[session_id] += 1
        self._by_user[user_id] += 1
        self.on_change(1)
        if user_id not in self._budgets:
            self._budgets[user_id] = FrameBudget(self.frame_rate, self.frame_burst)
        return self._budgets[user_id]

    def release(self, user_id: int, session_id: int) -> None:
        self.on_change(-1)
        for counts, key in ((self._by_session, session_id), (self._by_user, user_id)):
            counts[key] -= 1
            if counts[key] <= 0:
                del counts[key]
        if user_id not in self._by_user:
            self._budgets.pop(user_id, None)
