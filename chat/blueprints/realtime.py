"""Real time: `GET /ws/rooms/<room>`, one websocket per conversation (docs/websocket.md is the protocol).

Delivery without gaps or duplicates: the connection subscribes to its room BEFORE it reads the backlog
from the database, then sends every message whose id is above the last one it sent, in id order. Each
connection has one bounded queue (a plain `Mailbox`) and one task (the one hypercorn runs the app in:
asgi_websocket.py), which sends and reads the client's frames in turn (a frame being handled runs in a short task of
its own, so that a send waiting for the database does not hold the room's events back); a client that cannot keep
up is closed (1013) and resumes from the database with ?after. An overflow or a shutdown interrupts that task
wherever it waits. An idle socket costs no task of its own (docs/performance.md, "Lean sockets" and part 4).

What a client sends is bounded too: at most a few frames wait unread (asgi_websocket.py), one user's sockets share
a frame budget and are limited in number (sockets.py), and each frame type has its own budget (typing is relayed
once a second, a read marker that would not move costs no query, messages count against the send limit).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from dataclasses import dataclass

import orjson
from pydantic import Field, ValidationError, field_validator
from quart import Blueprint, websocket
from quart_auth import Unauthorized
from tortoise.exceptions import OperationalError

from .. import accounts, changes, conversations, rooms
from ..activity import Activity, everyone, snapshot
from ..asgi_websocket import OVERSIZED, client_gone, take_frame
from ..broker import CHANGE_FRAMES, BrokerUnavailable, Event, Subscription, text_message
from ..errors import APIError, validation_fields
from ..lean_hypercorn import write_now
from ..models import Membership
from ..presence import ALL_PRESENCE, presence_channel, presence_events
from ..rooms import Room, parse_room
from ..schemas import MAX_ID, ClientId, Content, Cursor, FileIds, Id, Input, MessageContent, with_files_or_content
from ..security import foreign_origin, login_required, session_active, signed_in
from ..sockets import FrameBudget
from ..state import AppState, state

bp = Blueprint("realtime", __name__)

AFTER_RE = re.compile(r"[0-9]{1,10}")  # ASCII digits only: str.isdigit() also accepts "²", which int() refuses
MAX_FRAME_CHARS = 16 * 1024
QUEUE_SIZE = 256  # events waiting for one slow connection before it is closed with 1013
REPLAY_BATCH = 200
TYPING_INTERVAL = 1.0  # at most one typing frame relayed per connection per second
CLOSE_TIMEOUT = 2.0

GOING_AWAY, POLICY_VIOLATION, INTERNAL_ERROR, TRY_AGAIN_LATER = 1001, 1008, 1011, 1013
FLOODING = 4429  # far over the frame budget for a while: reconnect after a pause, and send less
NOT_A_MEMBER = 4403  # removed from the room, or left it: do not reconnect
DROP_NOTICE_INTERVAL = 1.0  # at most one too_many_frames error a second per socket
log = logging.getLogger(__name__)


class MessageFrame(Input):
    file_ids: FileIds = Field(default_factory=list)  # as /send-message's: validated before content
    content: MessageContent
    client_id: ClientId | None = None
    reply_to: Id | None = None

    _content = field_validator("content")(with_files_or_content)


class EditFrame(Input):
    message_id: Id
    content: Content


class DeleteFrame(Input):
    message_id: Id


class ReactFrame(Input):
    message_id: Id
    emoji: str = Field(min_length=1, max_length=changes.MAX_EMOJI)
    on: bool = Field(strict=True)


class ReadFrame(Input):
    up_to: Cursor


@dataclass(frozen=True, slots=True)
class Resync:
    """Ask the socket's task to acknowledge a repeated client_id with the message stored the first time."""

    message: dict


def parse_after() -> int | None:
    raw = websocket.args.get("after")
    if raw is None:
        return None
    if not AFTER_RE.fullmatch(raw) or int(raw) > MAX_ID:
        raise APIError(400, "validation_error", "after must be a message id (a whole number).")
    return int(raw)


def check_origin() -> None:
    settings = state().settings
    problem = foreign_origin(websocket.headers.get("Origin"), websocket.host, settings.allowed_origins)
    if problem is not None:
        raise problem


@bp.websocket("/ws/rooms/<name>")
@login_required
async def room_socket(name: str) -> None:
    check_origin()
    me = await signed_in()
    room = await rooms.admit(me.user.id, name)  # 404 or 403 before the upgrade
    other = None if room.is_channel else room.other_member(me.user.id)
    after = parse_after()
    if after is None:
        # live from now on: read where "now" is BEFORE subscribing, then replay whatever lands in between
        after = await conversations.newest_id(room)

    # subscribe first: whatever is published from now on is queued, whatever was stored before is replayed
    # (a channel's sockets hear everyone's presence and keep their members')
    presence = ALL_PRESENCE if room.is_channel else presence_channel(other)
    channels = (room.channel, presence, accounts.session_channel(me.session_id))
    await serve(
        me,
        channels,
        lambda app_state, subscription, budget: Connection(app_state, subscription, room, me.user.id, other, budget),
        after,
    )


@bp.websocket("/ws/me")
@login_required
async def activity_socket() -> None:
    """The caller's activity stream: a snapshot of their rooms, then how each moves (docs/websocket.md)."""
    check_origin()
    me = await signed_in()
    channels = (conversations.inbox_channel(me.user.id), ALL_PRESENCE, accounts.session_channel(me.session_id))
    await serve(
        me,
        channels,
        lambda app_state, subscription, budget: ActivityConnection(app_state, subscription, me.user.id, budget),
        0,
    )


async def serve(me, channels: tuple[str, ...], make_connection, after: int) -> None:
    """Subscribe, admit the socket within the limits, accept it and run its connection: the same for every
    websocket (the same refusals before the upgrade, the same close codes after)."""
    app_state = state()
    try:
        subscription = await app_state.broker.subscribe(channels, QUEUE_SIZE)
    except BrokerUnavailable:
        raise broker_unavailable() from None
    try:
        # a logout since the session was checked above announced it before we listened
        if not await session_active(me.session_id):
            raise Unauthorized()
        budget = app_state.sockets.admit(me.user.id, me.session_id)
        if budget is None:
            raise too_many_sockets()
        try:
            await websocket.accept()
            connection = make_connection(app_state, subscription, budget)
            try:
                await connection.run(after)
            finally:
                await connection.release()
        finally:
            app_state.sockets.release(me.user.id, me.session_id)
    finally:
        await app_state.broker.unsubscribe(subscription)


def broker_unavailable() -> APIError:
    return APIError(503, "unavailable", "Real-time delivery is down; retry shortly.", {"Retry-After": "1"})


def too_many_sockets() -> APIError:
    limits = state().sockets
    return APIError(
        429,
        "too_many_sockets",
        f"At most {limits.per_session} sockets per session and {limits.per_user} per user are open at once; "
        "close one first.",
        {"Retry-After": "5"},
    )


class Connection:
    def __init__(
        self,
        app_state: AppState,
        subscription: Subscription,
        room: Room,
        me: int,
        other: int | None,
        budget: FrameBudget,
    ) -> None:
        self.state = app_state
        self.subscription = subscription
        self.room = room
        self.me = me
        self.other = other
        self.last_sent = 0  # highest id (of a message or a change) sent on this socket
        self.first_after = 0  # the stream of this socket sends ids above it, in order
        self.acknowledged: set[int] = set()  # ids at or below first_after sent as acknowledgements
        self.last_typing = 0.0
        self.budget = budget  # shared by this user's sockets in this worker
        self.read_marker = 0  # the read marker as this socket last set it: a read at or below it changes nothing
        self.last_drop_notice = 0.0
        self.members: set[int] = set()  # a channel's members: whose presence this socket relays
        self.interrupted: int | None = None  # the close code of an overflow or a shutdown, which stop the loop
        self._task: asyncio.Task | None = None
        self._cancels = 0  # cancellations of the task by `_interrupt`, taken back when it ends
        self._handling: asyncio.Task | None = None  # the client's frame being handled, if any
        self._send = websocket.send_event  # hypercorn's send: one ASGI message (broker.text_message) per frame

    async def run(self, after: int) -> None:
        came_online = await self.state.presence.connect(self.me)
        try:
            if came_online:
                await self._publish_presence(True)
            code = await self._serve(after)
            # shutdown wins whatever else ended the socket: the client then reconnects elsewhere at once, where a
            # 1011 would make it back off
            if self.state.going_away.is_set():
                code = GOING_AWAY
            if code is not None:
                await self._close(code)
        finally:
            if await self.state.presence.disconnect(self.me):
                await self._publish_presence(False)

    async def _serve(self, after: int) -> int | None:
        """The socket's one task: send what the broker has for it and handle what the client sends, in turn, until
        a reason to close. An overflow or a shutdown interrupts it wherever it waits (a send to a client that
        stopped reading, a query): they cancel it, and that cancellation is taken back here."""
        task = asyncio.current_task()
        self._task = task
        self.subscription.overflowed.on_set = self._on_overflow
        self.state.going_away.callbacks.add(self._on_going_away)
        try:
            if self.state.going_away.is_set():
                return GOING_AWAY
            return await self._loop(after)
        except asyncio.CancelledError:
            if self.interrupted is None or task.cancelling() > self._cancels:
                raise  # the server is cancelling it (a stop past its grace period)
            return self.interrupted
        except Exception:
            log.exception("websocket connection failed")
            return INTERNAL_ERROR
        finally:
            self.state.going_away.callbacks.discard(self._on_going_away)
            self.subscription.overflowed.on_set = None
            self._task = None
            for _ in range(self._cancels):
                task.uncancel()
            if self._handling is not None:  # a frame still being handled goes with the socket
                self._handling.remove_done_callback(self._handled)
                self._handling.cancel()
                await asyncio.wait({self._handling}, timeout=CLOSE_TIMEOUT)
                self._handling = None

    async def _loop(self, after: int) -> int | None:
        inbox, outbox = websocket.inbox, self.subscription.queue
        inbox.listener = outbox  # one wait for both
        await self._start(after)
        while self.interrupted is None:
            if inbox.closed:
                return None  # the client went (take_frame took its disconnect)
            if self.subscription.overflowed.is_set():
                return TRY_AGAIN_LATER
            for _ in range(outbox.qsize()):  # what is queued now; then the client's turn
                code = await self._deliver(outbox.get_nowait())
                if code is not None:
                    return code
            handling = self._handling
            if handling is not None and handling.done():
                self._handling = handling = None
            if handling is None and not inbox.empty():
                frame = take_frame(inbox)
                code = None if frame is None else self._take(frame)
                if code is not None:
                    return code
            elif outbox.empty():
                self.subscription.deliver_now = self._deliver_now
                try:
                    await outbox.wait()  # an event, a frame, or the end of the frame being handled
                finally:
                    self.subscription.deliver_now = None
        return self.interrupted

    def _deliver_now(self, item: object) -> bool:
        """While the socket waits with nothing queued: a message or change event written at once by whoever
        publishes it (Subscription.offer), by the rules of `_send_message_event`, without waking this socket's task
        (at 10 000 sockets, waking each one's task was most of a fan-out's time). Only where events come in order
        (the memory broker: with Redis a gap may need filling from the database first, which waits) and the
        connection takes the frame without waiting (lean_hypercorn.write_now); anything else is queued as
        before, and so is everything after it until the task has taken the queue."""
        if not (
            type(item) is Event
            and item.message_id is not None
            and self.interrupted is None
            and self.state.broker.ordered
            and self.subscription.queue.empty()
        ):
            return False
        if item.message_id > self.last_sent:  # else sent already, from the backlog
            if not write_now(self._send, item.asgi):
                return False
            self.last_sent = item.message_id
            self.state.metrics.message_delivered(item)
        return True

    def _interrupt_with_error(self, error: BaseException) -> None:
        log.error("websocket frame handling failed", exc_info=error)
        self._interrupt(INTERNAL_ERROR)

    def _on_overflow(self) -> None:
        self._interrupt(TRY_AGAIN_LATER)

    def _on_going_away(self) -> None:
        self._interrupt(GOING_AWAY)

    def _interrupt(self, code: int) -> None:
        if self.interrupted is not None:
            return
        self.interrupted = code
        if self._task is not None and self._task is not asyncio.current_task():
            self._cancels += 1
            self._task.cancel()  # the loop itself sees `interrupted` at its next turn

    async def release(self) -> None:
        """Give back what the connection took besides its subscription (nothing, for a room's socket)."""

    async def _publish_presence(self, online: bool) -> None:
        for event in presence_events(self.me, online):
            await self.state.broker.publish(event)

    async def _close(self, code: int) -> None:
        # a client that stopped reading may never take the close frame: don't wait for it forever
        with contextlib.suppress(Exception):
            await asyncio.wait_for(websocket.close(code), CLOSE_TIMEOUT)

    # ---------------------------------------------------------------- server -> client

    async def _send_presence(self) -> None:
        if self.other is not None:
            online = bool(await self.state.presence.online([self.other]))
            await self._send_frame({"type": "presence", "user_id": self.other, "online": online})
            return
        self.members = set(await Membership.filter(channel_id=self.room.channel_id).values_list("user_id", flat=True))
        for user_id in sorted(await self.state.presence.online(sorted(self.members - {self.me}))):
            await self._send_frame({"type": "presence", "user_id": user_id, "online": True})

    async def _start(self, after: int) -> None:
        """What a socket sends first: presence, then the stored frames after `after`."""
        await self._send_presence()
        self.first_after = self.last_sent = after
        await self._send_stored()

    async def _deliver(self, item: Event | Resync | str) -> int | None:
        """One item of the subscription's queue: sent or skipped; or the close code when it ends the socket."""
        if isinstance(item, Resync):
            await self._acknowledge(item.message)
        elif isinstance(item, str):
            await self._send(text_message(item))
        elif item.type == accounts.SESSION_REVOKED:
            return POLICY_VIOLATION
        elif item.type == "message" or item.type in CHANGE_FRAMES:
            await self._send_message_event(item)
        elif item.type == "member" and not self._on_member(item):
            return NOT_A_MEMBER
        elif item.type == "presence" and self.other is None and item.user_id not in self.members:
            pass  # someone outside this channel
        elif not (item.type == "typing" and item.user_id == self.me):
            await self._send(item.asgi)
        return None

    def _on_member(self, event: Event) -> bool:
        """Follow the channel's members; False when this socket's user is no longer one (the socket closes)."""
        joined = orjson.loads(event.text)["joined"]
        if joined:
            self.members.add(event.user_id)
        else:
            self.members.discard(event.user_id)
        return joined or event.user_id != self.me

    async def _send_message_event(self, event: Event) -> None:
        if event.message_id <= self.last_sent:
            return  # already sent from the backlog
        if not self.state.broker.ordered:
            await self._send_stored(event.message_id - 1)  # fill any gap first, in id order
        await self._send(event.asgi)
        self.last_sent = event.message_id
        self.state.metrics.message_delivered(event)

    async def _acknowledge(self, message: dict) -> None:
        """Make sure this socket has sent the message of a repeated client_id, once."""
        if message["id"] <= self.first_after:  # stored before this socket's stream began
            if message["id"] not in self.acknowledged:
                self.acknowledged.add(message["id"])
                await self._send_frame({"type": "message", "message": message})
        else:
            await self._send_stored(message["id"])  # sent already, or now, in id order

    async def _send_stored(self, up_to: int | None = None) -> None:
        """Send the stored messages and changes of the room after last_sent (up to `up_to`), in id order."""
        while True:
            batch = await conversations.frames_after(self.room, self.last_sent, REPLAY_BATCH, up_to)
            for frame in batch:
                await self._send_frame(frame)
                self.last_sent = frame["message"]["id"] if frame["type"] == "message" else frame["id"]
            if len(batch) < REPLAY_BATCH or client_gone(websocket.inbox):
                return  # all sent; or nobody is left to send the rest to (a reconnect storm replays nothing more)

    async def _send_frame(self, frame: dict) -> None:
        await self._send(text_message(orjson.dumps(frame).decode()))

    # ---------------------------------------------------------------- client -> server

    def _take(self, data: str | bytes | object) -> int | None:
        """Start handling one of the client's frames, or drop it over the budget; FLOODING when the client floods
        (the socket is then closed). A frame is handled in a task of its own, while the socket goes on sending:
        a send that waits for the database must not hold the room's events back (the queue would overflow)."""
        if not self.budget.take():
            if self.budget.flooding:
                return FLOODING
            self._notice_drop()
            return None
        self._handling = asyncio.ensure_future(self._receive(data))
        self._handling.add_done_callback(self._handled)
        return None

    def _handled(self, task: asyncio.Task) -> None:
        if not task.cancelled() and task.exception() is not None:
            # the loop ends with 1011 and logs it
            self._interrupt_with_error(task.exception())
        self.subscription.queue.wake()

    async def _receive(self, data: str | bytes | object) -> None:
        try:
            await self._handle(data)
        except APIError as exc:
            self._reply_error(exc.error, exc.message)
        except ValidationError as exc:
            self._reply_error("validation_error", "Some fields are invalid.", fields=validation_fields(exc))
        except OperationalError as exc:  # the database is locked or full: this frame failed, retry it
            log.warning("websocket frame failed: %s", exc)
            self._reply_error("unavailable", "The database is busy; send the frame again shortly.")

    def _notice_drop(self) -> None:
        now = time.monotonic()
        if now - self.last_drop_notice >= DROP_NOTICE_INTERVAL:
            self.last_drop_notice = now
            limits = self.state.sockets
            self._reply_error(
                "too_many_frames",
                f"Frames past {limits.frame_rate:g} a second (after a burst of {limits.frame_burst}) are dropped "
                "unread; slow down and send again what was not acknowledged.",
            )

    def _reply_error(self, error: str, message: str, **extra: object) -> None:
        # through the queue, in turn with what the broker has for this socket
        self.subscription.offer(orjson.dumps({"type": "error", "error": error, "message": message, **extra}).decode())

    async def _handle(self, data: str | bytes | object) -> None:
        if data is OVERSIZED or (isinstance(data, str) and len(data) > MAX_FRAME_CHARS):
            raise APIError(413, "frame_too_large", f"Frames are at most {MAX_FRAME_CHARS} characters.")
        if not isinstance(data, str):
            raise APIError(400, "invalid_frame", "Frames are JSON text.")
        try:
            frame = orjson.loads(data)
        except orjson.JSONDecodeError:
            raise APIError(400, "invalid_json", "The frame is not valid JSON.") from None
        kind = frame.get("type") if isinstance(frame, dict) else None
        if kind == "message":
            await self._on_message(MessageFrame.model_validate(frame))
        elif kind == "typing":
            await self._on_typing()
        elif kind == "read":
            await self._on_read(ReadFrame.model_validate(frame))
        elif kind == "edit":
            edit = EditFrame.model_validate(frame)
            await changes.edit(self.me, edit.message_id, edit.content)
        elif kind == "delete":
            await changes.delete(self.me, DeleteFrame.model_validate(frame).message_id)
        elif kind == "react":
            react = ReactFrame.model_validate(frame)
            await changes.react(self.me, react.message_id, react.emoji, react.on)
        else:
            raise APIError(400, "unknown_type", "A frame's type is message, typing, read, edit, delete or react.")

    async def _on_message(self, frame: MessageFrame) -> None:
        if self.other is None:
            send = conversations.send_to_room(
                self.me, self.room.name, frame.content, frame.client_id, frame.reply_to, frame.file_ids
            )
        else:
            send = conversations.send_message(
                self.me, self.other, frame.content, frame.client_id, frame.reply_to, frame.file_ids
            )
        message, created = await send
        if not created:
            # a repeated client_id: nothing new was published, so acknowledge from the database
            self.subscription.offer(Resync(message))

    async def _on_read(self, frame: ReadFrame) -> None:
        if frame.up_to <= self.read_marker:
            return  # the marker never moves back: nothing to ask the database
        self.read_marker = await conversations.mark_room_read(self.me, self.room, frame.up_to)

    async def _on_typing(self) -> None:
        now = time.monotonic()
        if now - self.last_typing < TYPING_INTERVAL:
            return
        self.last_typing = now
        await conversations.publish(self.room, {"type": "typing", "user_id": self.me})


class ActivityConnection(Connection):
    """GET /ws/me: the caller's rooms as a snapshot, then `activity` as messages land in them and the caller's
    marker moves, everyone's `presence`, `room_added` / `room_removed`. It listens to the caller's inbox (direct
    messages, their own reads, rooms added and removed), to everyone's presence and to each of their channels,
    whose subscriptions come and go with their memberships; counts move without a query (chat/activity.py)."""

    def __init__(self, app_state: AppState, subscription: Subscription, me: int, budget: FrameBudget) -> None:
        super().__init__(app_state, subscription, Room.direct(me, me), me, me, budget)
        self.activity = Activity(me, {})
        self.channel_subscriptions: dict[str, Subscription] = {}

    async def release(self) -> None:
        for subscription in self.channel_subscriptions.values():
            await self.state.broker.unsubscribe(subscription)
        self.channel_subscriptions.clear()

    async def _listen(self, room: str) -> None:
        if room in self.channel_subscriptions:
            return
        channel = parse_room(room).channel
        try:
            subscribed = await self.state.broker.subscribe((channel,), QUEUE_SIZE, into=self.subscription)
        except BrokerUnavailable:
            self.subscription.overflowed.set()  # close with 1013: the client reconnects and gets a new snapshot
            return
        self.channel_subscriptions[room] = subscribed

    async def _stop_listening(self, room: str) -> None:
        subscription = self.channel_subscriptions.pop(room, None)
        if subscription is not None:
            await self.state.broker.unsubscribe(subscription)

    async def _start(self, after: int) -> None:
        # listen to the channels first, then count: what lands in between is counted once (activity.RoomCount)
        for room in await rooms.rooms_of(self.me):
            if room.is_channel:
                await self._listen(room.name)
        self.activity.rooms = await snapshot(self.me)
        online = await self.state.presence.online(await everyone())
        await self._send_frame(self.activity.snapshot_frame(online))

    async def _deliver(self, item: Event | str) -> int | None:
        if isinstance(item, str):
            await self._send(text_message(item))
        elif item.type == accounts.SESSION_REVOKED:
            return POLICY_VIOLATION
        elif item.type == "presence":
            await self._send(item.asgi)
        elif item.type == "message":
            frame = self.activity.on_message(orjson.loads(item.text)["message"])
            if frame is not None:
                await self._send_frame(frame)
        elif item.type == "read" and item.user_id == self.me and item.channel == self.subscription.channels[0]:
            await self._send_frame(await self.activity.recount(orjson.loads(item.text)["room"]))
        elif item.type == "room_added":
            await self._on_room_added(orjson.loads(item.text)["room"])
        elif item.type == "room_removed":
            room = orjson.loads(item.text)["room"]
            await self._stop_listening(room)
            self.activity.remove(room)
            await self._send(item.asgi)
        return None

    async def _on_room_added(self, channel: dict) -> None:
        await self._listen(channel["room"])
        await self.activity.recount(channel["room"])  # what was sent before this socket listened
        count = self.activity.rooms[channel["room"]]
        channel = {**channel, "unread": count.unread, "mentions": count.mentions}
        await self._send_frame({"type": "room_added", "room": {**channel, "last_message_id": count.last_message_id}})

    def _deliver_now(self, item: object) -> bool:
        return False  # its frames are made from each event as it comes (counts, snapshots): always by its task

    async def _handle(self, data: str | bytes | object) -> None:
        raise APIError(400, "unknown_type", "This socket only sends: it takes no frames.")
