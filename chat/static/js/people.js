// The people list ("Direct messages"): everyone else, an online dot and unread / mention badges. The list comes
// from /get-users; the activity stream (/ws/me) keeps dots and badges live, and polling takes over only while
// that stream is down.
import { RoomList, paintLink, roomLink } from "./sidebar.js";

const POLL_MS = 30_000;

export const roomOf = (a, b) => `dm-${Math.min(a, b)}-${Math.max(a, b)}`;

export class PeopleList extends RoomList {
  constructor({ me, list, empty, onChoose, onChange, onUnauthorized, isLive }) {
    super({ url: "/get-users", onUnauthorized });
    this.me = me;
    this.list = list;
    this.empty = empty;
    this.onChoose = onChoose;
    this.onChange = onChange;
    this.ids = new Map(); // user id -> the room of our direct conversation
    setInterval(() => isLive() || this.refresh(), POLL_MS);
  }

  loaded(result) {
    if (result.ok) this.render(result.data.users);
  }

  entry(id) {
    return this.entries.get(this.ids.get(id));
  }

  get(id) {
    return this.entry(id)?.user ?? null;
  }

  name(id) {
    return this.get(id)?.username ?? null;
  }

  all() {
    return [...this.entries.values()].map((entry) => entry.user);
  }

  render(users) {
    const seen = new Set();
    for (const user of users) {
      const room = roomOf(this.me.id, user.id);
      seen.add(room);
      const entry = this.entries.get(room) ?? this.create(user, room);
      entry.user = user;
      this.list.append(entry.item); // re-appending keeps the server's order (by username)
      this.setCounts(room, { unread: user.unread, mentions: user.mentions ?? 0 });
    }
    for (const [room, entry] of this.entries) {
      if (seen.has(room)) continue;
      entry.item.remove();
      this.entries.delete(room);
      this.ids.delete(entry.user.id);
    }
    this.empty.hidden = this.entries.size > 0;
  }

  create(user, room) {
    const entry = roomLink({
      href: `/chat?user_id=${user.id}`,
      name: user.username,
      withDot: true,
      onChoose: () => this.onChoose(user.id),
    });
    entry.link.dataset.userId = String(user.id);
    entry.counts = { unread: 0, mentions: 0, lastMessageId: 0 };
    this.entries.set(room, entry);
    this.ids.set(user.id, room);
    return entry;
  }

  title(entry) {
    return entry.user.username;
  }

  paint(entry) {
    const { user, counts } = entry;
    paintLink(entry, { ...counts, online: user.online, current: this.ids.get(user.id) === this.current });
    this.onChange(user);
  }

  /** A presence frame; someone not in the list yet has just signed up: fetch the list again. */
  setOnline(id, online) {
    if (id === this.me.id) return;
    const entry = this.entry(id);
    if (!entry) {
      this.refresh();
      return;
    }
    entry.user.online = online;
    this.paint(entry);
  }

  /** A snapshot's list of who is online: the truth for everyone in the list. */
  setOnlineSet(ids) {
    const online = new Set(ids);
    for (const entry of this.entries.values()) {
      entry.user.online = online.has(entry.user.id);
      this.paint(entry);
    }
  }
}
