// One open conversation, a direct one or a channel: its history (latest page first, older pages as you scroll
// up), live frames from the room's websocket, your own messages from "sending" to "sent" (when their echo comes
// back) to "seen", typing, read markers, and in a channel who said what, mentions of me, and member changes.
import { getJSON, postJSON } from "./api.js";
import { filesNode } from "./attachments.js";
import {
  actions,
  applyReaction,
  deleteMessage,
  editBox,
  editMessage,
  marks,
  reactionsBar,
  replyQuote,
  setReaction,
  tombstone,
} from "./changes.js";
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

// Messages typed but not yet acknowledged, per room. They outlive a switch to another conversation and are
// sent (again) whenever that room's socket opens: the server keeps one message per client_id.
const outboxes = new Map();
const replies = new Map(); // client_id -> the message it answers, while unacknowledged
const attached = new Map(); // client_id -> the ids of its files, while unacknowledged
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

/** The @names in a text, as text nodes and <mark> elements (never HTML): names is a Set of lower-cased names. */
export function withMentions(text, names) {
  const parts = [];
  const pattern = /(^|[^\p{L}\p{N}_.-])@([\p{L}\p{N}_.-]+)/gu;
  let from = 0;
  for (const match of text.matchAll(pattern)) {
    const at = match.index + match[1].length;
    // the longest mentioned name the word starts with ("@bob." is bob at the end of a sentence)
    let name = match[2];
    while (name && !names.has(name.toLowerCase())) name = name.slice(0, -1);
    if (!name || /^[\p{L}\p{N}_]/u.test(match[2].slice(name.length))) continue;
    parts.push(document.createTextNode(text.slice(from, at)));
    const mark = document.createElement("mark");
    mark.className = "mention";
    mark.textContent = `@${name}`;
    parts.push(mark);
    from = at + 1 + name.length;
  }
  parts.push(document.createTextNode(text.slice(from)));
  return parts;
}

export class Conversation {
  /**
   * @param target {room, title, peer (a direct conversation's other person; none in a channel)}
   * @param names (user id) => username or null
   * @param sidebar {setUnread(n), addUnread()} for this room's sidebar entry
   * @param on {connection(state), unauthorized(), presence(id, online), removed() (closed with 4403),
   *   room(channel), member(frame), liveCounts() (true while the activity stream counts unread for the sidebar)}
   * @param isOwner () => true while I own this channel (the API lets an owner delete anyone's message in it)
   */
  constructor({ me, target, names, sidebar, ui, composer, on, isOwner = () => false }) {
    this.me = me;
    this.target = target;
    this.peer = target.peer ?? null;
    this.names = names;
    this.sidebar = sidebar;
    this.ui = ui; // {scroller, list, historyStatus, typing, jump}
    this.composer = composer;
    this.on = on;
    this.isOwner = isOwner;
    this.onUnauthorized = on.unauthorized;
    this.room = target.room;
    if (!outboxes.has(this.room)) outboxes.set(this.room, new Map());
    this.outbox = outboxes.get(this.room); // client_id -> content
    this.elements = new Map(); // message id -> <li>
    this.messages = new Map(); // message id -> the message as it is now (edits, deletes and reactions applied)
    this.replyTo = null; // the message the next one I send answers
    this.pendingElements = new Map(); // client_id -> <li>
    this.lastSeenId = 0;
    this.oldestId = null;
    this.hasMore = false;
    this.loadingOlder = null;
    this.newestFromOthers = 0;
    this.markedUpTo = 0;
    this.peerReadUpTo = 0;
    this.lastTypingSent = 0;
    this.typists = new Map(); // user id -> the timer that forgets they were typing
    this.retryTimer = null;
    this.closed = false;
    this.onScroll = () => this.scrolled();
    this.socket = new RoomSocket(this.room, {
      lastSeenId: () => this.lastSeenId,
      onFrame: (frame) => this.receive(frame),
      onState: (state) => {
        if (state.state === "open") this.flush();
        if (state.state === "refused") this.on.removed();
        else on.connection(state);
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
    this.hideTyping();
    clearTimeout(this.retryTimer);
    this.socket.stop();
  }

  // ---------------------------------------------------------------- history

  async fetchPage(cursor) {
    const where = this.peer ? { user_id: this.peer.id } : { room: this.room };
    const query = new URLSearchParams({ ...where, limit: PAGE_SIZE, ...cursor });
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
        this.messages.set(message.id, message);
        const item = this.element(message);
        this.markMention(item, message);
        older.append(item);
        this.oldestId = Math.min(this.oldestId, message.id);
        this.noteFromOthers(message);
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
    const { title } = this.target;
    const empty = !this.elements.size && !this.outbox.size;
    if (this.hasMore) this.setHistoryStatus("Scroll up for earlier messages.");
    else if (!this.peer) this.setHistoryStatus(empty ? `No messages in #${title} yet. Say hello!` : `This is the start of #${title}.`);
    else if (!empty) this.setHistoryStatus(`This is the start of your conversation with ${title}.`);
    else this.setHistoryStatus(`No messages yet. Say hello to ${title}!`);
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

  senderName(id) {
    return this.names(id) ?? `user ${id}`;
  }

  quotedName(id) {
    return id === this.me.id ? "You" : this.senderName(id);
  }

  element(message, status = null) {
    const mine = message.sender_id === this.me.id;
    const item = document.createElement("li");
    item.className = `message ${mine ? "mine" : "theirs"}${message.deleted ? " deleted" : ""}`;
    if (message.id) item.dataset.id = String(message.id);
    const speaker = document.createElement("span");
    // in a channel several people talk: each message says whose it is
    speaker.className = this.peer || mine ? "visually-hidden" : "sender";
    speaker.textContent = mine ? "You: " : `${this.senderName(message.sender_id)}${this.peer ? ": " : ""}`;
    const content = document.createElement("p");
    content.className = "content";
    if (message.deleted) content.textContent = "This message was deleted.";
    else content.append(...this.contentNodes(message), ...marks(message)); // text, never HTML
    const meta = document.createElement("p");
    meta.className = "meta";
    const time = document.createElement("time");
    meta.append(time);
    if (mine) {
      const state = document.createElement("span");
      state.className = "status";
      meta.append(state);
    }
    item.append(speaker);
    if (message.reply_to) item.append(replyQuote(message, this.messages.get(message.reply_to), (id) => this.quotedName(id), (id) => this.showOriginal(id)));
    item.append(content);
    if (message.files?.length && !message.deleted) item.append(filesNode(message.files));
    item.append(meta);
    if (message.id && !message.deleted) {
      item.append(reactionsBar(message, this.me, (id) => this.senderName(id), (emoji, on) => this.react(message.id, emoji, on)));
      item.append(
        actions({
          mine,
          canDelete: mine || (!this.peer && this.isOwner()),
          onReact: (emoji) => this.react(message.id, emoji, true),
          onReply: () => this.startReply(message.id),
          onEdit: () => this.startEdit(message.id),
          onDelete: () => this.remove(message.id),
        }),
      );
    }
    this.stamp(item, message.timestamp);
    if (mine) this.setStatus(item, status ?? (message.id <= this.peerReadUpTo ? "seen" : "sent"));
    return item;
  }

  contentNodes(message) {
    const mentioned = message.mentions ?? [];
    if (!mentioned.length) return [document.createTextNode(message.content)];
    const names = new Set(mentioned.map((id) => (id === this.me.id ? this.me.username : this.names(id) ?? "").toLowerCase()));
    return withMentions(message.content, names);
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
    this.markMention(item, message);
    this.place(item, message.id);
    this.remember(message, item);
  }

  remember(message, item) {
    this.elements.set(message.id, item);
    this.messages.set(message.id, message);
    this.lastSeenId = Math.max(this.lastSeenId, message.id);
    this.oldestId = this.oldestId === null ? message.id : Math.min(this.oldestId, message.id);
    this.noteFromOthers(message);
  }

  noteFromOthers(message) {
    if (message.sender_id !== this.me.id) this.newestFromOthers = Math.max(this.newestFromOthers, message.id);
  }

  /** A message that mentions me stands out (and says so to screen readers). */
  markMention(item, message) {
    if (!(message.mentions ?? []).includes(this.me.id) || message.sender_id === this.me.id) return;
    item.classList.add("mentions-me");
    const note = document.createElement("span");
    note.className = "visually-hidden";
    note.textContent = " (mentions you)";
    item.querySelector(".content").after(note);
  }

  showPending(clientId, content) {
    const item = this.element({ sender_id: this.me.id, content, timestamp: null }, "sending");
    item.classList.add("pending");
    item.dataset.clientId = clientId;
    this.ui.list.append(item);
    this.pendingElements.set(clientId, item);
  }

  // ---------------------------------------------------------------- sending

  send(content, fileIds = []) {
    const clientId = newClientId();
    this.outbox.set(clientId, content);
    if (this.replyTo) replies.set(clientId, this.replyTo);
    if (fileIds.length) attached.set(clientId, fileIds);
    this.startReply(null);
    this.showPending(clientId, content);
    this.updateHistoryStatus();
    this.scrollToBottom();
    this.socket.send(this.messageFrame(clientId, content));
  }

  messageFrame(clientId, content) {
    const frame = { type: "message", content, client_id: clientId };
    if (replies.has(clientId)) frame.reply_to = replies.get(clientId);
    if (attached.has(clientId)) frame.file_ids = attached.get(clientId);
    return frame;
  }

  /** Send every unacknowledged message (after a reconnect: the server ignores a client_id it already has). */
  flush() {
    for (const [clientId, content] of this.outbox) {
      if (!this.socket.send(this.messageFrame(clientId, content))) return;
    }
  }

  // ---------------------------------------------------------------- changing messages

  /** Redraw a shown message as it is now, in its place. */
  redraw(message) {
    const old = this.elements.get(message.id);
    this.messages.set(message.id, message);
    if (!old) return;
    const item = this.element(message, old.dataset.status ?? null);
    this.markMention(item, message);
    old.replaceWith(item);
    this.elements.set(message.id, item);
    for (const quote of this.ui.list.querySelectorAll(`.reply-quote[data-reply-to="${message.id}"]`)) {
      const reply = this.messages.get(Number(quote.closest("li").dataset.id));
      if (reply) quote.replaceWith(replyQuote(reply, message, (id) => this.quotedName(id), (id) => this.showOriginal(id)));
    }
  }

  onChange(frame) {
    this.lastSeenId = Math.max(this.lastSeenId, frame.id); // a change is an event of the room's sequence
    if (frame.type === "edit") return this.redraw(frame.message);
    const message = this.messages.get(frame.message_id);
    if (!message) return; // not shown: it is drawn as it is now when its page loads
    if (frame.type === "delete") return this.redraw(tombstone(message));
    const changed = { ...message, reactions: (message.reactions ?? []).map((r) => ({ ...r, user_ids: [...r.user_ids] })) };
    applyReaction(changed, frame);
    this.redraw(changed);
  }

  async react(id, emoji, on) {
    const result = await setReaction(id, emoji, on);
    if (!result.ok) this.composer.say(result.data.message || "The reaction could not be changed.");
  }

  async remove(id) {
    if (!window.confirm("Delete this message for everyone? This cannot be undone.")) return;
    const result = await deleteMessage(id);
    if (!result.ok) this.composer.say(result.data.message || "The message could not be deleted.");
  }

  /** Edit a message of mine in place (Enter saves, Esc cancels). */
  startEdit(id) {
    const message = this.messages.get(id);
    const item = this.elements.get(id);
    if (!message || !item || message.deleted || message.sender_id !== this.me.id) return false;
    const content = item.querySelector(".content");
    const cancel = () => {
      this.redraw(this.messages.get(id));
      this.composer.input.focus();
    };
    const box = editBox(message.content, {
      onCancel: cancel,
      onSave: async (text) => {
        const result = await editMessage(id, text);
        if (!result.ok) return this.composer.say(result.data.message || "The message could not be edited.");
        this.redraw(result.data);
        this.composer.input.focus();
      },
    });
    content.replaceChildren(box);
    box.focus();
    return true;
  }

  /** ↑ in an empty message box: edit my last message. */
  editLast() {
    const mine = [...this.messages.values()].filter((m) => m.sender_id === this.me.id && !m.deleted);
    const last = mine.sort((a, b) => a.id - b.id).at(-1);
    return last ? this.startEdit(last.id) : false;
  }

  /** The next message I send answers this one (null: none); the box above the composer says so. */
  startReply(id) {
    this.replyTo = id;
    const bar = this.ui.reply;
    if (!bar) return;
    bar.hidden = id === null;
    if (id === null) return;
    const original = this.messages.get(id);
    bar.querySelector(".reply-text").textContent = `Replying to ${this.senderName(original.sender_id)}: ${original.content.slice(0, 80)}`;
    this.composer.input.focus();
  }

  /** Show the message a reply answers, loading older pages until it is there. */
  async showOriginal(id) {
    while (!this.elements.has(id) && this.hasMore && !this.closed) await this.loadOlder();
    this.showFound(id);
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
        return this.on.presence(frame.user_id, Boolean(frame.online));
      case "read":
        return this.onRead(frame.user_id, frame.up_to);
      case "member":
        return this.on.member(frame);
      case "room":
        return frame.room && this.on.room(frame.room);
      case "error":
        return this.onError(frame);
      case "edit":
      case "delete":
      case "reaction":
        return this.onChange(frame);
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
    if (message.sender_id !== this.me.id) {
      this.stoppedTyping(message.sender_id);
      if (document.visibilityState === "visible") this.markSeen();
      else if (!this.on.liveCounts()) this.sidebar.addUnread(); // else the activity stream counts it
    }
    this.updateHistoryStatus();
    if (stickToBottom || pending) this.scrollToBottom();
    else this.ui.jump.hidden = false;
  }

  /** The echo of one of mine: the pending bubble becomes the stored message, in its place by id. */
  confirm(item, message) {
    this.outbox.delete(message.client_id);
    replies.delete(message.client_id);
    attached.delete(message.client_id);
    this.pendingElements.delete(message.client_id);
    item.classList.remove("pending");
    item.dataset.id = String(message.id);
    delete item.dataset.clientId;
    this.stamp(item, message.timestamp);
    this.setStatus(item, message.id <= this.peerReadUpTo ? "seen" : "sent");
    this.place(item, message.id);
    this.remember(message, item);
    this.redraw(message); // now with what a stored message has: its reply, reactions and actions
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
    if (userId === this.me.id) return;
    clearTimeout(this.typists.get(userId));
    this.typists.set(userId, setTimeout(() => this.stoppedTyping(userId), TYPING_SHOWN_MS));
    this.showTyping();
  }

  stoppedTyping(userId) {
    clearTimeout(this.typists.get(userId));
    this.typists.delete(userId);
    this.showTyping();
  }

  showTyping() {
    const names = [...this.typists.keys()].map((id) => this.senderName(id));
    if (names.length === 0) this.ui.typing.textContent = "";
    else if (names.length === 1) this.ui.typing.textContent = `${names[0]} is typing…`;
    else if (names.length <= 3) this.ui.typing.textContent = `${names.slice(0, -1).join(", ")} and ${names.at(-1)} are typing…`;
    else this.ui.typing.textContent = "Several people are typing…";
  }

  hideTyping() {
    for (const timer of this.typists.values()) clearTimeout(timer);
    this.typists.clear();
    this.showTyping();
  }

  onRead(userId, upTo) {
    if (userId !== this.me.id) {
      // "Seen": by the other person, or in a channel by someone
      this.peerReadUpTo = Math.max(this.peerReadUpTo, upTo);
      for (const [id, item] of this.elements) {
        if (id <= upTo && item.dataset.status === "sent") this.setStatus(item, "seen");
      }
    } else if (userId === this.me.id) {
      this.markedUpTo = Math.max(this.markedUpTo, upTo); // read in another tab of mine
      if (upTo >= this.newestFromOthers) this.sidebar.setUnread(0);
    }
  }

  /** The conversation is on screen: its messages are read (and the peer is told). */
  markSeen() {
    if (this.closed || document.visibilityState !== "visible") return;
    this.sidebar.setUnread(0);
    if (this.newestFromOthers <= this.markedUpTo) return;
    this.markedUpTo = this.newestFromOthers;
    if (!this.socket.send({ type: "read", up_to: this.markedUpTo })) {
      const where = this.peer ? { user_id: this.peer.id } : { room: this.room };
      postJSON("/mark-read", { ...where, up_to: this.markedUpTo });
    }
  }
}
