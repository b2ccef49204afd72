"""The original application's Socket.IO clients (API.md, "Socket.IO clients of the original application";
docs/socketio.md is the protocol mapping).

python-socketio's AsyncServer answers `/socket.io/` beside Quart, on the same ground as `/ws/rooms/<room>`:

- `connect`: the Origin rule of security/origins.py (checked by Engine.IO on every request, polling included),
  the Host and HTTPS rules, and the session cookie checked by security/sessions.py, all in a Quart request context
  made from the handshake's own ASGI scope (so the client address is the real one, not Engine.IO's 127.0.0.1);
  the socket limits of sockets.py; the user counts as online (presence.py); a logout (accounts.py's revocation
  event) disconnects.
- `join {"room"}`: rooms.admit, the websocket's admission; then a subscription to the room on this server's own
  broker, so that every send path (HTTP, /ws/..., Socket.IO) reaches the client on whichever worker it is, once,
  in id order (the websocket's rule: ids at or below the last one sent are skipped; with Redis, gaps are filled
  from the database).
- `message {"room", "content", "client_id"?}`: conversations.send_message, the one store-then-publish path.
- `leave {"room"}`: the subscription ends.

Bounded like a websocket: events are handled one at a time per client (python-socketio's async_handlers off, so
a flooding client is held back by TCP), they take from the user's FrameBudget, Engine.IO refuses packets over
MAX_PACKET_BYTES, and a client that does not read what it is sent is disconnected when its queue is full.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from dataclasses import dataclass, field

import orjson
import socketio
from pydantic import ValidationError
from quart import Quart, request
from quart_auth import Unauthorized
from tortoise.exceptions import OperationalError
from werkzeug.datastructures import Headers

from . import accounts, conversations
from .broker import BrokerUnavailable, Event, Subscription
from .errors import APIError, validation_fields
from .hosts import host_allowed
from .presence import presence_events
from .rooms import Room, admit
from .schemas import JoinIn, RoomMessageIn
from .security import origin_allowed, session_active, signed_in
from .sockets import FrameBudget
from .state import AppState

log = logging.getLogger(__name__)

SOCKETIO_PATH = "socket.io"
MAX_PACKET_BYTES = 64 * 1024  # Engine.IO closes a client that sends a larger packet; past 16 KiB events are refused
MAX_EVENT_CHARS = 16 * 1024  # as the websocket's MAX_FRAME_CHARS
MAX_JOINED_ROOMS = 100  # each is a broker subscription and a task
QUEUE_SIZE = 256  # broker events waiting for one joined room of one client before the client is disconnected
OUTBOX_SIZE = 256  # packets waiting in Engine.IO's own (unbounded) queue for one client, likewise
REPLAY_BATCH = 200
RECANCEL_SECONDS = 0.5  # a task cancelled and still running by then is cancelled again


@dataclass(frozen=True, slots=True)
class Resync:
    """A repeated client_id: make sure this client was sent the message stored the first time."""

    message: dict


@dataclass(eq=False)
class RoomFeed:
    """One joined room of one client: its broker subscription and the task that emits its messages in order."""

    room: Room
    subscription: Subscription
    task: asyncio.Task | None = None


@dataclass(eq=False)
class Client:
    sid: str
    user_id: int
    session_id: int
    address: str
    budget: FrameBudget
    revocation: Subscription  # the session's channel: a logout ends the client
    feeds: dict[str, RoomFeed] = field(default_factory=dict)
    watcher: asyncio.Task | None = None


class ChatSocketIO(socketio.AsyncServer):
    """python-socketio's server, where a packet that cannot be decoded ends its client quietly.

    Upstream raises out of the packet decoder, and Engine.IO logs the traceback of every such packet: a client could
    fill the log at will. An event's own handler never raises here (SocketIOClients answers errors as acks).
    """

    async def _handle_eio_message(self, eio_sid, data):
        try:
            await super()._handle_eio_message(eio_sid, data)
        except (ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
            log.info("socket.io: malformed packet, client disconnected (%s)", type(exc).__name__)
            await self.eio.disconnect(eio_sid)


class SocketIOClients:
    """The Socket.IO server of one application and its connected clients (in this worker)."""

    def __init__(self, app: Quart, app_state: AppState) -> None:
        self.app = app
        self.state = app_state
        settings = app_state.settings
        self.sio = ChatSocketIO(
            async_mode="asgi",
            async_handlers=False,  # one event at a time per client: a flood waits in TCP, not in tasks
            cors_allowed_origins=self._origin_allowed,
            max_http_buffer_size=MAX_PACKET_BYTES,
            cookie=None,
            transports=["polling", "websocket"],
        )
        self.allowed_origins = settings.allowed_origins
        self.clients: dict[str, Client] = {}
        self.sio.on("connect", self.on_connect)
        self.sio.on("disconnect", self.on_disconnect)
        self.sio.on("*", self.on_event)

    def asgi(self, other_app) -> socketio.ASGIApp:
        """`/socket.io/` here, everything else (lifespan included) to `other_app`."""
        return socketio.ASGIApp(self.sio, other_asgi_app=other_app, socketio_path=SOCKETIO_PATH)

    def _origin_allowed(self, origin: str | None, environ: dict) -> bool:
        return origin_allowed(origin, environ.get("HTTP_HOST", ""), self.allowed_origins)

    # ---------------------------------------------------------------- connect and disconnect

    async def on_connect(self, sid: str, environ: dict, auth: object = None) -> bool:
        scope = environ["asgi.scope"]
        try:
            async with self.app.request_context(self._handshake_request(scope)):
                return await self._admit(sid, scope)
        except (APIError, Unauthorized) as exc:
            reason = exc.error if isinstance(exc, APIError) else "unauthorized"
            raise socketio.exceptions.ConnectionRefusedError(reason) from None
        except (OperationalError, BrokerUnavailable) as exc:
            log.warning("socket.io connect refused: %r", exc)
            raise socketio.exceptions.ConnectionRefusedError("unavailable") from None

    def _handshake_request(self, scope: dict):
        """A Quart request made from the Engine.IO handshake's own ASGI scope: its headers (the cookie), host,
        scheme and client address are the real ones."""
        headers = Headers()
        # as Quart's own ASGI connection does: the address first, so that a client's Remote-Addr header comes second
        headers["Remote-Addr"] = (scope.get("client") or ["<local>"])[0]
        for name, value in scope["headers"]:
            headers.add(name.decode("latin1").title(), value.decode("latin1"))
        scheme = {"ws": "http", "wss": "https"}.get(scope.get("scheme", "http"), scope.get("scheme", "http"))
        return self.app.request_class(
            "GET",
            scheme,
            scope["path"],
            scope.get("query_string", b""),
            headers,
            scope.get("root_path", ""),
            scope.get("http_version", "1.1"),
            scope={**scope, "type": "http", "method": "GET", "scheme": scheme},
            send_push_promise=_no_push,
        )

    async def _admit(self, sid: str, scope: dict) -> bool:
        settings = self.state.settings
        if not host_allowed(request.host, settings.allowed_hosts):
            raise APIError(400, "invalid_host", "This server does not answer for that host name.")
        if settings.https_port is not None and not request.is_secure:
            raise APIError(403, "https_required", f"Connect over HTTPS on port {settings.https_port}.")
        me = await signed_in()
        revocation = await self.state.broker.subscribe((accounts.session_channel(me.session_id),), 4)
        try:
            # a logout since the session was checked above announced it before we listened
            if not await session_active(me.session_id):
                raise Unauthorized()
            budget = self.state.sockets.admit(me.user.id, me.session_id)
            if budget is None:
                raise APIError(429, "too_many_sockets", "Too many sockets are open for this session or user.")
        except BaseException:
            await self.state.broker.unsubscribe(revocation)
            raise
        client = Client(sid, me.user.id, me.session_id, request.remote_addr or "unknown", budget, revocation)
        self.clients[sid] = client
        if await self.state.presence.connect(client.user_id):
            for event in presence_events(client.user_id, True):
                await self.state.broker.publish(event)
        client.watcher = asyncio.create_task(self._watch(client), name="socketio-watch")
        log.info("socket.io client %s connected: user %s from %s", sid, client.user_id, client.address)
        return True

    async def _watch(self, client: Client) -> None:
        """Disconnect the client when its session is revoked or the server goes away."""
        await _first_of(client.revocation.queue.get(), self.state.going_away.wait())
        await self.sio.disconnect(client.sid)

    async def on_disconnect(self, sid: str, reason: object = None) -> None:
        client = self.clients.pop(sid, None)
        if client is None:
            return
        async with self.app.app_context():
            # the task that disconnects (the watcher on a logout, a feed that overflowed) is not waited for
            tasks = [feed.task for feed in client.feeds.values()] + [client.watcher]
            await _cancel_and_wait([task for task in tasks if task is not None and task is not asyncio.current_task()])
            for feed in client.feeds.values():
                await self.state.broker.unsubscribe(feed.subscription)
            await self.state.broker.unsubscribe(client.revocation)
            self.state.sockets.release(client.user_id, client.session_id)
            if await self.state.presence.disconnect(client.user_id):
                for event in presence_events(client.user_id, False):
                    await self.state.broker.publish(event)

    # ---------------------------------------------------------------- events

    async def on_event(self, event: str, sid: str, *args: object) -> dict:
        """Every event the client emits: within the user's frame budget, answered by its acknowledgement."""
        client = self.clients.get(sid)
        if client is None:
            return _error("unauthorized", "Connect with a session first.")
        if not client.budget.take():
            if client.budget.flooding:
                await self.sio.disconnect(sid)
                return _error("too_many_frames", "Disconnected: far too many events.")
            return _error("too_many_frames", "Events past the budget are dropped unread; slow down.")
        handler = {"join": self._join, "leave": self._leave, "message": self._message}.get(event)
        if handler is None:
            return _error("unknown_event", "Events are join, leave and message.")
        if len(args) != 1 or len(json.dumps(args[0])) > MAX_EVENT_CHARS:
            if len(args) == 1:
                return _error("frame_too_large", f"Events are at most {MAX_EVENT_CHARS} characters of JSON.")
            return _error("validation_error", "An event carries one object.")
        async with self.app.app_context():
            try:
                return await handler(client, args[0])
            except APIError as exc:
                return _error(exc.error, exc.message)
            except ValidationError as exc:
                return _error("validation_error", "Some fields are invalid.", fields=validation_fields(exc))
            except OperationalError as exc:
                log.warning("socket.io event failed: %s", exc)
                return _error("unavailable", "The database is busy; send the event again shortly.")
            except BrokerUnavailable:
                return _error("unavailable", "Real-time delivery is down; retry shortly.")

    async def _join(self, client: Client, data: object) -> dict:
        room = await admit(client.user_id, JoinIn.model_validate(data).room)
        if room.name not in client.feeds:
            if len(client.feeds) >= MAX_JOINED_ROOMS:
                raise APIError(429, "too_many_rooms", f"A client joins at most {MAX_JOINED_ROOMS} rooms; leave one.")
            # as the websocket: "now" read before subscribing, then whatever lands in between is replayed
            after = await conversations.newest_id(room)
            subscription = await self.state.broker.subscribe((room.channel,), QUEUE_SIZE)
            if self.clients.get(client.sid) is not client:  # disconnected (a logout) while we subscribed
                await self.state.broker.unsubscribe(subscription)
                raise APIError(401, "unauthorized", "The connection has ended.")
            feed = client.feeds[room.name] = RoomFeed(room, subscription)
            feed.task = asyncio.create_task(self._deliver(client, feed, after), name="socketio-feed")
        return {"ok": True, "room": room.name}

    async def _leave(self, client: Client, data: object) -> dict:
        name = JoinIn.model_validate(data).room
        feed = client.feeds.get(name)
        if feed is not None:
            if feed.task is not None:
                await _cancel_and_wait([feed.task])
            await self._drop_feed(client, feed)
        return {"ok": True, "room": name}

    async def _drop_feed(self, client: Client, feed: RoomFeed) -> None:
        if client.feeds.get(feed.room.name) is feed:
            del client.feeds[feed.room.name]
            await self.state.broker.unsubscribe(feed.subscription)

    async def _message(self, client: Client, data: object) -> dict:
        frame = RoomMessageIn.model_validate(data)
        message, created = await conversations.send_to_room(
            client.user_id, frame.room, frame.content, frame.client_id, file_ids=frame.file_ids
        )
        feed = client.feeds.get(message["room"])
        if not created and feed is not None:
            feed.subscription.offer(Resync(message))  # nothing was published: acknowledge from the database
        return message

    # ---------------------------------------------------------------- delivery

    async def _deliver(self, client: Client, feed: RoomFeed, after: int) -> None:
        """Emit the room's messages above `after` to the client, once each, in id order."""
        stream = _OrderedStream(feed.room, after, self.state.broker.ordered)
        try:
            await self._emit_all(client, await stream.stored())
            while not feed.subscription.overflowed.is_set():
                get, _ = await _first_of(feed.subscription.queue.get(), feed.subscription.overflowed.wait())
                if get.done() and not get.cancelled():
                    if _removes(get.result(), client.user_id):  # as the websocket's 4403: no more delivery
                        await self._drop_feed(client, feed)
                        return
                    item = get.result()
                    messages = await stream.next(item)
                    await self._emit_all(client, messages)
                    if messages and isinstance(item, Event):  # a live message (after any gap it filled)
                        self.state.metrics.message_delivered(item)
        except _Overloaded:
            pass
        except (OperationalError, ConnectionError) as exc:  # the client resumes from the history
            log.warning("socket.io delivery stopped: %r", exc)
        else:
            log.info("socket.io client %s cannot keep up: disconnected", client.sid)
        with contextlib.suppress(Exception):
            await self.sio.disconnect(client.sid)

    async def _emit_all(self, client: Client, messages: list[dict]) -> None:
        for message in messages:
            if self._outbox(client.sid) >= OUTBOX_SIZE:
                log.info("socket.io client %s does not read: disconnected", client.sid)
                raise _Overloaded()
            await self.sio.emit("message", message, to=client.sid)

    def _outbox(self, sid: str) -> int:
        """Packets waiting in Engine.IO's queue for the client: Engine.IO itself never bounds it."""
        eio_sid = self.sio.manager.eio_sid_from_sid(sid, "/")
        socket = self.sio.eio.sockets.get(eio_sid) if eio_sid else None
        return socket.queue.qsize() if socket is not None else 0


async def _cancel_and_wait(tasks: list[asyncio.Task]) -> None:
    """Cancel the tasks and wait for their end, cancelling again any that lived on: a cancellation that lands as a
    database query completes can be lost below us (asgi_websocket.py, 4.). Their cancellation cleans nothing up, so
    a second one breaks nothing."""
    while tasks := [task for task in tasks if not task.done()]:
        for task in tasks:
            task.cancel()
        await asyncio.wait(tasks, timeout=RECANCEL_SECONDS)


async def _first_of(*awaitables) -> list[asyncio.Future]:
    """Wait until one of the awaitables is done and cancel the others; their futures, in the order given."""
    futures = [asyncio.ensure_future(awaitable) for awaitable in awaitables]
    try:
        await asyncio.wait(futures, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for future in futures:
            if not future.done():
                future.cancel()
    return futures


def _removes(item: Event | Resync, user_id: int) -> bool:
    """Whether this event of a channel takes `user_id` out of it (removed, or left from another client)."""
    return (
        isinstance(item, Event)
        and item.type == "member"
        and item.user_id == user_id
        and not orjson.loads(item.text)["joined"]
    )


class _Overloaded(Exception):
    pass


class _OrderedStream:
    """The websocket's delivery rule for one room: ids above the last one sent, in order, once each."""

    def __init__(self, room: Room, after: int, ordered: bool) -> None:
        self.room = room
        self.first_after = self.last_sent = after
        self.ordered = ordered
        self.acknowledged: set[int] = set()

    async def stored(self, up_to: int | None = None) -> list[dict]:
        """The stored messages after the last one sent (up to `up_to`), oldest first."""
        found: list[dict] = []
        while True:
            batch = await conversations.messages_after(self.room, self.last_sent, REPLAY_BATCH, up_to)
            found += batch
            if batch:
                self.last_sent = batch[-1]["id"]
            if len(batch) < REPLAY_BATCH:
                return found

    async def next(self, item: Event | Resync) -> list[dict]:
        if isinstance(item, Resync):
            message = item.message
            if message["id"] > self.first_after:
                return await self.stored(message["id"])
            if message["id"] in self.acknowledged:
                return []
            self.acknowledged.add(message["id"])
            return [message]
        if item.type != "message" or item.message_id <= self.last_sent:
            return []  # typing, read markers: not part of the original protocol; or sent from the backlog
        if not self.ordered:
            gap = await self.stored(item.message_id - 1)  # fill any gap first, in id order
            self.last_sent = item.message_id
            return [*gap, orjson.loads(item.text)["message"]]
        self.last_sent = item.message_id
        return [orjson.loads(item.text)["message"]]


async def _no_push(path: str, headers: Headers) -> None:
    """The handshake request pushes nothing (Quart's Request wants a function for HTTP/2 pushes)."""


def _error(error: str, message: str, **extra: object) -> dict:
    return {"ok": False, "error": error, "message": message, **extra}


def install_socketio(app: Quart, app_state: AppState) -> SocketIOClients:
    """Serve `/socket.io/` beside the Quart application (lifespan events still reach Quart)."""
    clients = app.extensions["socketio"] = SocketIOClients(app, app_state)
    app.asgi_app = clients.asgi(app.asgi_app)
    return clients
