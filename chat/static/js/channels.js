// The channel list ("Channels"): the channels I belong to, ordered by name, with unread and mention badges.
// GET /rooms gives the list and the counts; the activity stream adds, removes and counts live.
import { getJSON } from "./api.js";
import { applyActivity, paintLink, roomLink, snapshotCounts } from "./sidebar.js";

export const isChannel = (room) => /^ch-[1-9][0-9]*$/.test(room ?? "");

export class ChannelList {
  constructor({ list, empty, onChoose, onChange, onUnauthorized }) {
    this.list = list;
    this.empty = empty;
    this.onChoose = onChoose;
    this.onChange = onChange; // (channel) => void, whenever what is known of a channel changes
    this.onUnauthorized = onUnauthorized;
    this.channels = new Map(); // "ch-7" -> {channel, counts, item, link, ...}
    this.current = null;
    this.refreshing = null;
    this.available = true; // false when this server has no channels (GET /rooms is 404)
  }

  refresh() {
    this.refreshing ??= (async () => {
      const result = await getJSON("/rooms?scope=joined");
      if (result.status === 401) return this.onUnauthorized();
      if (result.status === 404) this.available = false;
      if (result.ok) this.render(result.data.rooms);
    })().finally(() => {
      this.refreshing = null;
    });
    return this.refreshing;
  }

  get(room) {
    return this.channels.get(room)?.channel ?? null;
  }

  render(channels) {
    const seen = new Set();
    for (const channel of channels) {
      seen.add(channel.room);
      this.put(channel, { unread: channel.unread, mentions: channel.mentions ?? 0 });
    }
    for (const room of [...this.channels.keys()]) if (!seen.has(room)) this.remove(room);
    this.sort();
  }

  /** Add a channel or update what is known of it (a room_added frame, a PATCH's answer, a room frame). */
  put(channel, counts = null) {
    let entry = this.channels.get(channel.room);
    if (!entry) {
      entry = roomLink({
        href: `/chat?room=${channel.room}`,
        name: channel.name,
        withDot: false,
        onChoose: () => this.onChoose(channel.room),
      });
      entry.link.dataset.room = channel.room;
      entry.counts = { unread: channel.unread ?? 0, mentions: channel.mentions ?? 0, lastMessageId: 0 };
      this.channels.set(channel.room, entry);
      this.list.append(entry.item);
    }
    const renamed = entry.channel?.name !== channel.name; // or new: its place in the order is found
    entry.channel = { ...entry.channel, ...channel };
    entry.label.textContent = entry.channel.name;
    if (counts) entry.counts = { ...entry.counts, ...counts };
    entry.counts.lastMessageId = Math.max(entry.counts.lastMessageId, channel.last_message_id ?? 0);
    if (this.isSeen(channel.room)) entry.counts = { ...entry.counts, unread: 0, mentions: 0 };
    if (renamed) this.sort();
    this.paint(entry);
    this.empty.hidden = this.channels.size > 0;
  }

  remove(room) {
    const entry = this.channels.get(room);
    if (!entry) return;
    entry.item.remove();
    this.channels.delete(room);
    this.empty.hidden = this.channels.size > 0;
  }

  sort() {
    const entries = [...this.channels.values()];
    entries.sort((a, b) => a.channel.name.localeCompare(b.channel.name, undefined, { sensitivity: "base" }));
    for (const entry of entries) this.list.append(entry.item);
  }

  isSeen(room) {
    return room === this.current && document.visibilityState === "visible";
  }

  paint(entry) {
    paintLink(entry, { ...entry.counts, current: entry.channel.room === this.current });
    this.onChange(entry.channel);
  }

  /** An activity frame of a channel: {fresh (a new message), name}, or null when the room is not one of mine. */
  activity(frame) {
    const entry = this.channels.get(frame.room);
    if (!entry) return null;
    const fresh = frame.last_message_id > entry.counts.lastMessageId;
    entry.counts = applyActivity(entry.counts, frame);
    if (this.isSeen(frame.room)) entry.counts = { ...entry.counts, unread: 0, mentions: 0 };
    this.paint(entry);
    return { fresh, name: `#${entry.channel.name}` };
  }

  snapshot(room) {
    const entry = this.channels.get(room.room);
    if (!entry) return false;
    entry.counts = snapshotCounts(entry.counts, room);
    if (this.isSeen(room.room)) entry.counts = { ...entry.counts, unread: 0, mentions: 0 };
    this.paint(entry);
    return true;
  }

  setUnread(room, unread) {
    const entry = this.channels.get(room);
    if (!entry) return;
    entry.counts = { ...entry.counts, unread, mentions: Math.min(entry.counts.mentions, unread) };
    this.paint(entry);
  }

  addUnread(room) {
    const entry = this.channels.get(room);
    if (entry) this.setUnread(room, entry.counts.unread + 1);
  }

  totalUnread() {
    let total = 0;
    for (const entry of this.channels.values()) total += entry.counts.unread;
    return total;
  }

  setCurrent(room) {
    this.current = room;
    for (const entry of this.channels.values()) this.paint(entry);
  }
}
