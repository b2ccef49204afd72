// The people list ("Direct messages"): everyone else, an online dot and unread / mention badges. The list comes
// from /get-users; the activity stream (/ws/me) keeps dots and badges live, and polling takes over only while
// that stream is down.
import { getJSON } from "./api.js";
import { applyActivity, paintLink, roomLink, snapshotCounts } from "./sidebar.js";

const POLL_MS = 30_000;

export const roomOf = (a, b) => `dm-${Math.min(a, b)}-${Math.max(a, b)}`;

export class PeopleList {
  constructor({ me, list, empty, onChoose, onChange, onUnauthorized, isLive }) {
    this.me = me;
    this.list = list;
    this.empty = empty;
    this.onChoose = onChoose;
    this.onChange = onChange;
    this.onUnauthorized = onUnauthorized;
    this.people = new Map(); // id -> {user, counts, item, link, dot, state, badge, mentionBadge}
    this.rooms = new Map(); // "dm-1-2" -> the peer's id
    this.online = new Set();
    this.currentId = null;
    this.refreshing = null;
    setInterval(() => isLive() || this.refresh(), POLL_MS);
  }

  /** The list from /get-users (everyone, their unread and mention counts, who is online). */
  refresh() {
    this.refreshing ??= (async () => {
      const result = await getJSON("/get-users");
      if (result.status === 401) return this.onUnauthorized();
      if (result.ok) this.render(result.data.users);
    })().finally(() => {
      this.refreshing = null;
    });
    return this.refreshing;
  }

  get(id) {
    return this.people.get(id)?.user ?? null;
  }

  name(id) {
    return this.get(id)?.username ?? null;
  }

  all() {
    return [...this.people.values()].map((entry) => entry.user);
  }

  render(users) {
    const seen = new Set();
    for (const user of users) {
      seen.add(user.id);
      const entry = this.people.get(user.id) ?? this.create(user);
      entry.user = { ...user, online: user.online };
      entry.counts = { unread: user.unread, mentions: user.mentions ?? 0, lastMessageId: entry.counts.lastMessageId };
      if (this.isSeen(user.id)) entry.counts = { ...entry.counts, unread: 0, mentions: 0 };
      this.list.append(entry.item); // re-appending keeps the server's order (by username)
      this.paint(entry);
    }
    for (const [id, entry] of this.people) {
      if (!seen.has(id)) {
        entry.item.remove();
        this.people.delete(id);
        this.rooms.delete(roomOf(this.me.id, id));
      }
    }
    this.empty.hidden = this.people.size > 0;
  }

  create(user) {
    const entry = roomLink({
      href: `/chat?user_id=${user.id}`,
      name: user.username,
      withDot: true,
      onChoose: () => this.onChoose(user.id),
    });
    entry.link.dataset.userId = String(user.id);
    entry.user = user;
    entry.counts = { unread: 0, mentions: 0, lastMessageId: 0 };
    this.people.set(user.id, entry);
    this.rooms.set(roomOf(this.me.id, user.id), user.id);
    return entry;
  }

  /** The conversation with this person is on screen, so whatever arrives there is read at once. */
  isSeen(id) {
    return id === this.currentId && document.visibilityState === "visible";
  }

  paint(entry) {
    const { user, counts } = entry;
    paintLink(entry, { ...counts, online: user.online, current: user.id === this.currentId });
    this.onChange(user);
  }

  update(id, changes) {
    const entry = this.people.get(id);
    if (!entry) return;
    Object.assign(entry.user, changes);
    this.paint(entry);
  }

  /** A presence frame; someone not in the list yet has just signed up: fetch the list again. */
  setOnline(id, online) {
    if (id === this.me.id) return;
    if (!this.people.has(id)) {
      this.refresh();
      return;
    }
    this.update(id, { online });
  }

  /** A snapshot's list of who is online: the truth for everyone in the list. */
  setOnlineSet(ids) {
    const online = new Set(ids);
    for (const [id, entry] of this.people) {
      entry.user.online = online.has(id);
      this.paint(entry);
    }
  }

  setCounts(id, counts) {
    const entry = this.people.get(id);
    if (!entry) return;
    entry.counts = { ...entry.counts, ...counts };
    this.paint(entry);
  }

  setUnread(id, unread) {
    const entry = this.people.get(id);
    if (entry) this.setCounts(id, { unread, mentions: Math.min(entry.counts.mentions, unread) });
  }

  addUnread(id) {
    const entry = this.people.get(id);
    if (entry) this.setUnread(id, entry.counts.unread + 1);
  }

  /** An activity frame of a direct conversation: {fresh (a new message), name}, or null when not one of mine. */
  activity(frame) {
    const id = this.rooms.get(frame.room);
    if (id === undefined) return null;
    const entry = this.people.get(id);
    const fresh = frame.last_message_id > entry.counts.lastMessageId;
    entry.counts = applyActivity(entry.counts, frame);
    if (this.isSeen(id)) entry.counts = { ...entry.counts, unread: 0, mentions: 0 };
    this.paint(entry);
    return { fresh, name: entry.user.username };
  }

  /** A snapshot's room: its counts are the truth. */
  snapshot(room) {
    const id = this.rooms.get(room.room);
    if (id === undefined) return false;
    const entry = this.people.get(id);
    entry.counts = snapshotCounts(entry.counts, room);
    if (this.isSeen(id)) entry.counts = { ...entry.counts, unread: 0, mentions: 0 };
    this.paint(entry);
    return true;
  }

  totalUnread() {
    let total = 0;
    for (const entry of this.people.values()) total += entry.counts.unread;
    return total;
  }

  setCurrent(id) {
    this.currentId = id;
    for (const entry of this.people.values()) this.paint(entry);
  }
}
