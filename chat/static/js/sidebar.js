// What the channel list and the people list share: a link per room in the sidebar, with its unread and
// mention badges, and the counts of a room as activity frames move them.
import { getJSON } from "./api.js";

/** A sidebar link: [dot] name [unread badge] [mention badge]; a plain link that also works without this script. */
export function roomLink({ href, name, withDot, onChoose }) {
  const item = document.createElement("li");
  const link = document.createElement("a");
  link.className = "person";
  link.href = href;
  const dot = document.createElement("span");
  dot.className = withDot ? "presence-dot" : "channel-mark";
  dot.setAttribute("aria-hidden", "true");
  if (!withDot) dot.textContent = "#";
  const label = document.createElement("span");
  label.className = "person-name";
  label.textContent = name;
  const state = document.createElement("span"); // what the badges and the dot say, for screen readers
  state.className = "visually-hidden";
  const badge = document.createElement("span");
  badge.className = "badge";
  badge.setAttribute("aria-hidden", "true");
  const mentionBadge = document.createElement("span");
  mentionBadge.className = "mention-badge";
  mentionBadge.setAttribute("aria-hidden", "true");
  link.append(dot, label, state, badge, mentionBadge);
  item.append(link);
  link.addEventListener("click", (event) => {
    if (event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
    event.preventDefault(); // same page, no reload: just open the room
    onChoose();
  });
  return { item, link, dot, label, state, badge, mentionBadge };
}

const shortCount = (n) => (n > 99 ? "99+" : String(n));

/** Paint a link's badges and state: counts = {unread, mentions}, online = true | false | null (no dot). */
export function paintLink(entry, { unread, mentions, online = null, current }) {
  const { link, dot, state, badge, mentionBadge } = entry;
  const words = [];
  if (online !== null) {
    dot.classList.toggle("online", online);
    words.push(online ? "online" : "offline");
  }
  if (unread > 0) words.push(`${unread} unread`);
  if (mentions > 0) words.push(`${mentions} ${mentions === 1 ? "mention" : "mentions"}`);
  state.textContent = words.length ? `, ${words.join(", ")}` : "";
  badge.hidden = unread === 0;
  badge.textContent = shortCount(unread);
  badge.title = `${unread} unread`;
  mentionBadge.hidden = mentions === 0;
  mentionBadge.textContent = `@${shortCount(mentions)}`;
  mentionBadge.title = `${mentions} unread ${mentions === 1 ? "mention" : "mentions"} of you`;
  link.classList.toggle("has-unread", unread > 0);
  if (current) link.setAttribute("aria-current", "page");
  else link.removeAttribute("aria-current");
}

/**
 * A room's counts moved by an activity frame {unread, mention, mentions?}: the counts are the server's. A server
 * that sends no `mentions` count (the contract's frame has only `mention`, whether this message mentions me) is
 * followed by counting: one more for a new message that mentions me, never more than the unread count.
 */
export function applyActivity(counts, { unread, mention, mentions, last_message_id: lastId }) {
  const newMessage = lastId > (counts.lastMessageId ?? 0);
  let mentioned = counts.mentions ?? 0;
  if (Number.isInteger(mentions)) mentioned = mentions;
  else if (newMessage && mention) mentioned += 1;
  return { unread, mentions: Math.min(mentioned, unread), lastMessageId: Math.max(lastId, counts.lastMessageId ?? 0) };
}

/** A room's counts from a snapshot: the server's, mentions kept within unread when it does not count them. */
export function snapshotCounts(counts, { unread, mentions, last_message_id: lastId }) {
  const mentioned = Number.isInteger(mentions) ? mentions : counts.mentions;
  return { unread, mentions: Math.min(mentioned, unread), lastMessageId: lastId };
}

/**
 * What the two lists share: entries by room ("ch-7", "dm-1-2"), each with its link and counts
 * {unread, mentions, lastMessageId}; loading from the server one request at a time; the counts moved by activity
 * and snapshot frames. A subclass says where its list comes from (url, render) and how an entry is painted.
 */
export class RoomList {
  constructor({ url, onUnauthorized }) {
    this.url = url;
    this.onUnauthorized = onUnauthorized;
    this.entries = new Map(); // room -> entry
    this.current = null; // the room on screen, if it is one of this list's
    this.refreshing = null;
  }

  refresh() {
    this.refreshing ??= (async () => {
      const result = await getJSON(this.url);
      if (result.status === 401) return this.onUnauthorized();
      this.loaded(result);
    })().finally(() => {
      this.refreshing = null;
    });
    return this.refreshing;
  }

  /** The room is on screen, so whatever arrives there is read at once. */
  isSeen(room) {
    return room === this.current && document.visibilityState === "visible";
  }

  setCounts(room, counts) {
    const entry = this.entries.get(room);
    if (!entry) return;
    entry.counts = { ...entry.counts, ...counts };
    if (this.isSeen(room)) entry.counts = { ...entry.counts, unread: 0, mentions: 0 };
    this.paint(entry);
  }

  /** An activity frame: {fresh (a new message), name}, or null when the room is not one of this list's. */
  activity(frame) {
    const entry = this.entries.get(frame.room);
    if (!entry) return null;
    const fresh = frame.last_message_id > entry.counts.lastMessageId;
    this.setCounts(frame.room, applyActivity(entry.counts, frame));
    return { fresh, name: this.title(entry) };
  }

  /** A snapshot's room (its counts are the truth); false when it is not one of this list's. */
  snapshot(room) {
    const entry = this.entries.get(room.room);
    if (entry) this.setCounts(room.room, snapshotCounts(entry.counts, room));
    return entry !== undefined;
  }

  setUnread(room, unread) {
    const entry = this.entries.get(room);
    if (entry) this.setCounts(room, { unread, mentions: Math.min(entry.counts.mentions, unread) });
  }

  addUnread(room) {
    const entry = this.entries.get(room);
    if (entry) this.setUnread(room, entry.counts.unread + 1);
  }

  totalUnread() {
    let total = 0;
    for (const entry of this.entries.values()) total += entry.counts.unread;
    return total;
  }

  setCurrent(room) {
    this.current = room;
    for (const entry of this.entries.values()) this.paint(entry);
  }
}
