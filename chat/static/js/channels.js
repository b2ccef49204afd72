// The channel list ("Channels"): the channels I belong to, ordered by name, with unread and mention badges.
// GET /rooms gives the list and the counts; the activity stream adds, removes and counts live.
import { RoomList, paintLink, roomLink } from "./sidebar.js";

export const isChannel = (room) => /^ch-[1-9][0-9]*$/.test(room ?? "");

export class ChannelList extends RoomList {
  constructor({ list, empty, onChoose, onChange, onUnauthorized }) {
    super({ url: "/rooms?scope=joined", onUnauthorized });
    this.list = list;
    this.empty = empty;
    this.onChoose = onChoose;
    this.onChange = onChange; // (channel) => void, whenever what is known of a channel changes
    this.available = true; // false when this server has no channels (GET /rooms is 404)
  }

  loaded(result) {
    if (result.status === 404) this.available = false;
    if (result.ok) this.render(result.data.rooms);
  }

  get(room) {
    return this.entries.get(room)?.channel ?? null;
  }

  render(channels) {
    const seen = new Set();
    for (const channel of channels) {
      seen.add(channel.room);
      this.put(channel, { unread: channel.unread, mentions: channel.mentions ?? 0 });
    }
    for (const room of [...this.entries.keys()]) if (!seen.has(room)) this.remove(room);
  }

  /** Add a channel or update what is known of it (GET /rooms, a room_added frame, GET /rooms/<room>). */
  put(channel, counts = null) {
    let entry = this.entries.get(channel.room);
    if (!entry) {
      entry = roomLink({
        href: `/chat?room=${channel.room}`,
        name: channel.name,
        withDot: false,
        onChoose: () => this.onChoose(channel.room),
      });
      entry.link.dataset.room = channel.room;
      entry.counts = { unread: 0, mentions: 0, lastMessageId: 0 };
      this.entries.set(channel.room, entry);
      this.list.append(entry.item);
    }
    const moved = entry.channel?.name !== channel.name; // renamed, or new: its place in the order is found
    entry.channel = { ...entry.channel, ...channel };
    entry.label.textContent = entry.channel.name;
    if (moved) this.sort();
    const lastMessageId = Math.max(entry.counts.lastMessageId, channel.last_message_id ?? 0);
    this.setCounts(channel.room, { ...counts, lastMessageId });
    this.empty.hidden = true;
  }

  remove(room) {
    const entry = this.entries.get(room);
    if (!entry) return;
    entry.item.remove();
    this.entries.delete(room);
    this.empty.hidden = this.entries.size > 0;
  }

  sort() {
    const entries = [...this.entries.values()];
    entries.sort((a, b) => a.channel.name.localeCompare(b.channel.name, undefined, { sensitivity: "base" }));
    for (const entry of entries) this.list.append(entry.item);
  }

  title(entry) {
    return `#${entry.channel.name}`;
  }

  paint(entry) {
    paintLink(entry, { ...entry.counts, current: entry.channel.room === this.current });
    this.onChange(entry.channel);
  }
}
