// One open conversation: its history (latest page first, older pages as you scroll up), live frames from the
// room's websocket, your own messages from "sending" to "sent" (when their echo comes back) to "seen", typing,
// and read markers.
import { getJSON, postJSON } from "./api.js";
import { RoomSocket } from "./socket.js";
import { fullTime, shortTime } from "./time.js";

const PAGE_SIZE = 50;
const NEAR_TOP_PX = 300;
const NEAR_BOTTOM_PX = 80;
const TYPING_SEND_EVERY_MS = 2_500;
const TYPING_SHOWN_MS = 5_000;
const RETRY_BUSY_MS = 2_000;
const STATUS_TEXT = { sending: "Sending…", sent: "Sent", seen: "Seen" };
const FOUND_SHOWN_MS = 2_500;

export const roomOf = (a, b) => `dm-${Math.min(a, b)}-${Math.max(a, b)}`;

// Messages typed but not yet acknowledged, per peer. They outlive a switch to another conversation and are
// sent (again) whenever that room's socket opens: the server keeps one message per client_id.
const outboxes = new Map();
export const hasUnsent = () => [...outboxes.values()].some((outbox) => outbox.size > 0);

/** A random client_id. crypto.randomUUID exists only in secure contexts (https, localhost). */
export function newClientId() {
  if (crypto.randomUUID) return crypto.randomUUID();
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  bytes[6] = (bytes[6] & 0x0f) | 0x40;
  bytes[8] = (bytes[8] & 0x3f) | 0x80;
  const hex = [...bytes].map((byte) => byte.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

export class Conversation {
  constructor({ me, peer, people, ui, composer, onConnection, onUnauthorized }) {
    this.me = me;
    this.peer = peer;
    this.people = people;
    this.ui = ui; // {scroller, list, historyStatus, typing, jump}
    this.composer = composer;
    this.onUnauthorized = onUnauthorized;
    this.room = roomOf(me.id, peer.id);
    if (!outboxes.has(peer.id)) outboxes.set(peer.id, new Map());
    this.outbox = outboxes.get(peer.id); // client_id -> content
    this.elements = new Map(); // message id -> <li>
    this.pendingElements = new Map(); // client_id -> <li>
    this.lastSeenId = 0;
    this.oldestId = null;
    this.hasMore = false;
    this.loadingOlder = null;
    this.newestFromPeer = 0;
    this.markedUpTo = 0;
    this.peerReadUpTo = 0;
    this.lastTypingSent = 0;
    this.typingTimer = null;
    this.retryTimer = null;
    this.closed = false;
    this.onScroll = () => this.scrolled();
    this.socket = new RoomSocket(this.room, {
      lastSeenId: () => this.lastSeenId,
      onFrame: (frame) => this.receive(frame),
      onState: (state) => {
        if (state.state === "open") this.flush();
        onConnection(state);
      },
    });
  }

  /** Show the latest messages, or those around messageId (a search result), then go live. */
  async open(messageId = null) {
    this.ui.list.replaceChildren();
    this.ui.typing.textContent = "";
    this.ui.jump.hidden = true;
    this.ui.scroller.addEventListener("scroll", this.onScroll, { passive: true });
    const loaded = messageId === null ? await this.loadLatest() : await this.loadAround(messageId);
    if (!loaded || this.closed) return;
    for (const [clientId, content] of this.outbox) this.showPending(clientId, content);
    if (messageId === null || !this.showFound(messageId)) this.scrollToBottom();
    this.socket.start(); // its ?after replays whatever is newer than the page shown
    this.markSeen();
    await this.fillViewport();
  }

  close() {
    this.closed = true;
    this.ui.scroller.removeEventListener("scroll", this.onScroll);
    clearTimeout(this.typingTimer);
    clearTimeout(this.retryTimer);
    this.socket.stop();
  }

  // ---------------------------------------------------------------- history

  async fetchPage(cursor) {
    const query = new URLSearchParams({ user_id: this.peer.id, limit: PAGE_SIZE, ...cursor });
    const result = await getJSON(`/get-messages?${query}`);
    if (result.status === 401) this.onUnauthorized();
    return result;
  }

  async loadLatest() {
    this.setHistoryStatus("Loading messages…");
    const result = await this.fetchPage({});
    if (this.closed) return false;
    if (!result.ok) {
      this.setHistoryStatus(result.data.message || "The messages could not be loaded. Reload to try again.");
      return false;
    }
    for (const message of result.data.messages) this.addConfirmed(message);
    this.hasMore = result.data.has_more;
    this.updateHistoryStatus();
    return true;
  }

  /** The page that ends with messageId and the page just after it. */
  async loadAround(messageId) {
    this.setHistoryStatus("Loading messages…");
    const [older, newer] = await Promise.all([
      this.fetchPage({ before: messageId + 1 }),
      this.fetchPage({ after: messageId }),
    ]);
    if (this.closed) return false;
    if (!older.ok || !newer.ok) {
      this.setHistoryStatus("The messages could not be loaded. Reload to try again.");
      return false;
    }
    for (const message of [...older.data.messages, ...newer.data.messages]) this.addConfirmed(message);
    this.hasMore = older.data.has_more;
    this.updateHistoryStatus();
    return true;
  }

  /** Scroll to a message and mark it for a moment; false if it is not shown. */
  showFound(messageId) {
    const item = this.elements.get(messageId);
    if (!item) return false;
    item.scrollIntoView({ block: "center" });
    item.classList.add("found");
    setTimeout(() => item.classList.remove("found"), FOUND_SHOWN_MS);
    return true;
  }

  /** The page just older than what is shown, kept in place on screen (no jump). */
  loadOlder() {
    if (!this.hasMore || this.oldestId === null) return Promise.resolve();
    this.loadingOlder ??= (async () => {
      this.setHistoryStatus("Loading earlier messages…");
      const result = await this.fetchPage({ before: this.oldestId });
      if (this.closed) return;
      if (!result.ok) {
        this.setHistoryStatus("Earlier messages could not be loaded; scroll up to try again.");
        return;
      }
      const { scroller } = this.ui;
      const fromBottom = scroller.scrollHeight - scroller.scrollTop;
      const older = document.createDocumentFragment();
      for (const message of result.data.messages) {
        if (this.elements.has(message.id)) continue;
        older.append(this.element(message));
        this.oldestId = Math.min(this.oldestId, message.id);
        this.noteFromPeer(message);
      }
      this.ui.list.prepend(older);
      scroller.scrollTop = scroller.scrollHeight - fromBottom;
      this.hasMore = result.data.has_more;
      this.updateHistoryStatus();
    })().finally(() => {
      this.loadingOlder = null;
    });
    return this.loadingOlder;
  }

  /** A short conversation page leaves no room to scroll: load older pages until it can. */
  async fillViewport() {
    const { scroller } = this.ui;
    while (!this.closed && this.hasMore && scroller.scrollHeight <= scroller.clientHeight + NEAR_TOP_PX) {
      await this.loadOlder();
      if (!this.hasMore) break;
    }
  }

  setHistoryStatus(text) {
    this.ui.historyStatus.textContent = text;
  }

  updateHistoryStatus() {
    if (this.hasMore) this.setHistoryStatus("Scroll up for earlier messages.");
    else if (this.elements.size || this.outbox.size) this.setHistoryStatus(`This is the start of your conversation with ${this.peer.username}.`);
    else this.setHistoryStatus(`No messages yet. Say hello to ${this.peer.username}!`);
  }

  scrolled() {
    const { scroller } = this.ui;
    if (scroller.scrollTop < NEAR_TOP_PX) this.loadOlder();
    if (this.nearBottom()) this.ui.jump.hidden = true;
  }

  nearBottom() {
    const { scroller } = this.ui;
    return scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < NEAR_BOTTOM_PX;
  }

  scrollToBottom() {
    this.ui.scroller.scrollTop = this.ui.scroller.scrollHeight;
    this.ui.jump.hidden = true;
  }

  // ---------------------------------------------------------------- rendering

  element(message, status = null) {
    const mine = message.sender_id === this.me.id;
    const item = document.createElement("li");
    item.className = `message ${mine ? "mine" : "theirs"}`;
    if (message.id) item.dataset.id = String(message.id);
    const speaker = document.createElement("span");
    speaker.className = "visually-hidden";
    speaker.textContent = mine ? "You: " : `${this.peer.username}: `;
    const content = document.createElement("p");
    content.className = "content";
    content.textContent = message.content; // text, never HTML
    const meta = document.createElement("p");
    meta.className = "meta";
    const time = document.createElement("time");
    meta.append(time);
    if (mine) {
      const state = document.createElement("span");
      state.className = "status";
      meta.append(state);
    }
    item.append(speaker, content, meta);
    this.stamp(item, message.timestamp);
    if (mine) this.setStatus(item, status ?? (message.id <= this.peerReadUpTo ? "seen" : "sent"));
    return item;
  }

  stamp(item, timestamp) {
    const date = timestamp ? new Date(timestamp) : new Date();
    const time = item.querySelector("time");
    time.dateTime = date.toISOString();
    time.textContent = shortTime(date);
    time.title = fullTime(date);
  }

  setStatus(item, status) {
    item.dataset.status = status;
    item.querySelector(".status").textContent = STATUS_TEXT[status];
  }

  /** Put a stored message in id order: after the last shown message with a smaller id, before the unsent ones. */
  place(item, id) {
    let after = this.ui.list.lastElementChild;
    while (after && (!after.dataset.id || Number(after.dataset.id) > id)) after = after.previousElementSibling;
    if (after) after.after(item);
    else this.ui.list.prepend(item);
  }

  addConfirmed(message) {
    const item = this.element(message);
    this.place(item, message.id);
    this.remember(message, item);
  }

  remember(message, item) {
    this.elements.set(message.id, item);
    this.lastSeenId = Math.max(this.lastSeenId, message.id);
    this.oldestId = this.oldestId === null ? message.id : Math.min(this.oldestId, message.id);
    this.noteFromPeer(message);
  }

  noteFromPeer(message) {
    if (message.sender_id === this.peer.id) this.newestFromPeer = Math.max(this.newestFromPeer, message.id);
  }

  showPending(clientId, content) {
    const item = this.element({ sender_id: this.me.id, content, timestamp: null }, "sending");
    item.classList.add("pending");
    item.dataset.clientId = clientId;
    this.ui.list.append(item);
    this.pendingElements.set(clientId, item);
  }

  // ---------------------------------------------------------------- sending

  send(content) {
    const clientId = newClientId();
    this.outbox.set(clientId, content);
    this.showPending(clientId, content);
    this.updateHistoryStatus();
    this.scrollToBottom();
    this.socket.send({ type: "message", content, client_id: clientId });
  }

  /** Send every unacknowledged message (after a reconnect: the server ignores a client_id it already has). */
  flush() {
    for (const [clientId, content] of this.outbox) {
      if (!this.socket.send({ type: "message", content, client_id: clientId })) return;
    }
  }

  typed() {
    const now = Date.now();
    if (now - this.lastTypingSent < TYPING_SEND_EVERY_MS) return;
    if (this.socket.send({ type: "typing" })) this.lastTypingSent = now;
  }

  // ---------------------------------------------------------------- frames

  receive(frame) {
    if (this.closed) return;
    switch (frame.type) {
      case "message":
        return this.onMessage(frame.message);
      case "typing":
        return this.onTyping(frame.user_id);
      case "presence":
        return this.people.setOnline(frame.user_id, Boolean(frame.online));
      case "read":
        return this.onRead(frame.user_id, frame.up_to);
      case "error":
        return this.onError(frame);
      default:
        return undefined; // a newer server's frame: nothing to do with it
    }
  }

  onMessage(message) {
    if (!message || message.room !== this.room || this.elements.has(message.id)) return;
    const stickToBottom = this.nearBottom();
    const pending = message.client_id && message.sender_id === this.me.id && this.pendingElements.get(message.client_id);
    if (pending) {
      this.confirm(pending, message);
    } else {
      this.addConfirmed(message);
    }
    if (message.sender_id === this.peer.id) {
      this.hideTyping();
      if (document.visibilityState === "visible") this.markSeen();
      else this.people.addUnread(this.peer.id);
    }
    this.updateHistoryStatus();
    if (stickToBottom || pending) this.scrollToBottom();
    else this.ui.jump.hidden = false;
  }

  /** The echo of one of mine: the pending bubble becomes the stored message, in its place by id. */
  confirm(item, message) {
    this.outbox.delete(message.client_id);
    this.pendingElements.delete(message.client_id);
    item.classList.remove("pending");
    item.dataset.id = String(message.id);
    delete item.dataset.clientId;
    this.stamp(item, message.timestamp);
    this.setStatus(item, message.id <= this.peerReadUpTo ? "seen" : "sent");
    this.place(item, message.id);
    this.remember(message, item);
  }

  onError(frame) {
    if (frame.error === "unavailable") {
      // the database was busy: send what is still unacknowledged again (the server keeps one per client_id)
      clearTimeout(this.retryTimer);
      this.retryTimer = setTimeout(() => this.flush(), RETRY_BUSY_MS);
      return;
    }
    this.composer.say(frame.message || "The server could not take that.");
  }

  onTyping(userId) {
    if (userId !== this.peer.id) return;
    this.ui.typing.textContent = `${this.peer.username} is typing…`;
    clearTimeout(this.typingTimer);
    this.typingTimer = setTimeout(() => this.hideTyping(), TYPING_SHOWN_MS);
  }

  hideTyping() {
    clearTimeout(this.typingTimer);
    this.ui.typing.textContent = "";
  }

  onRead(userId, upTo) {
    if (userId === this.peer.id) {
      this.peerReadUpTo = Math.max(this.peerReadUpTo, upTo);
      for (const [id, item] of this.elements) {
        if (id <= upTo && item.dataset.status === "sent") this.setStatus(item, "seen");
      }
    } else if (userId === this.me.id) {
      this.markedUpTo = Math.max(this.markedUpTo, upTo); // read in another tab of mine
      if (upTo >= this.newestFromPeer) this.people.setUnread(this.peer.id, 0);
    }
  }

  /** The conversation is on screen: its messages are read (and the peer is told). */
  markSeen() {
    if (this.closed || document.visibilityState !== "visible") return;
    this.people.setUnread(this.peer.id, 0);
    if (this.newestFromPeer <= this.markedUpTo) return;
    this.markedUpTo = this.newestFromPeer;
    if (!this.socket.send({ type: "read", up_to: this.markedUpTo })) {
      postJSON("/mark-read", { user_id: this.peer.id, up_to: this.markedUpTo });
    }
  }
}
