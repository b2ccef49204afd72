// The people list: everyone else, an online dot (kept live by presence frames and a periodic refresh) and an
// unread badge (from /get-users; cleared as the open conversation's messages are seen).
import { getJSON } from "./api.js";

const REFRESH_MS = 30_000;

export class PeopleList {
  constructor({ list, empty, onChoose, onChange, onUnauthorized }) {
    this.list = list;
    this.empty = empty;
    this.onChoose = onChoose;
    this.onChange = onChange;
    this.onUnauthorized = onUnauthorized;
    this.people = new Map(); // id -> {user, item, link, dot, state, badge}
    this.currentId = null;
    this.loaded = false;
  }

  /** Refresh from /get-users now and then every REFRESH_MS (presence of people in other rooms, new unread). */
  start() {
    setInterval(() => this.refresh(), REFRESH_MS);
    return this.refresh();
  }

  async refresh() {
    const result = await getJSON("/get-users");
    if (result.status === 401) return this.onUnauthorized();
    if (!result.ok) return;
    this.render(result.data.users);
    this.loaded = true;
  }

  get(id) {
    return this.people.get(id)?.user ?? null;
  }

  render(users) {
    const seen = new Set();
    for (const user of users) {
      seen.add(user.id);
      const entry = this.people.get(user.id) ?? this.create(user);
      if (user.id === this.currentId && document.visibilityState === "visible") user.unread = 0;
      entry.user = user;
      this.list.append(entry.item); // re-appending keeps the server's order (by username)
      this.paint(entry);
    }
    for (const [id, entry] of this.people) {
      if (!seen.has(id)) {
        entry.item.remove();
        this.people.delete(id);
      }
    }
    this.empty.hidden = this.people.size > 0;
  }

  create(user) {
    const item = document.createElement("li");
    const link = document.createElement("a");
    link.className = "person";
    link.href = `/chat?user_id=${user.id}`;
    link.dataset.userId = String(user.id);
    const dot = document.createElement("span");
    dot.className = "presence-dot";
    dot.setAttribute("aria-hidden", "true");
    const name = document.createElement("span");
    name.className = "person-name";
    name.textContent = user.username;
    const state = document.createElement("span");
    state.className = "visually-hidden";
    const badge = document.createElement("span");
    badge.className = "badge";
    link.append(dot, name, state, badge);
    item.append(link);
    link.addEventListener("click", (event) => {
      if (event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
      event.preventDefault(); // same page, no reload: just open the conversation
      this.onChoose(user.id);
    });
    const entry = { user, item, link, dot, state, badge };
    this.people.set(user.id, entry);
    return entry;
  }

  paint({ user, link, dot, state, badge }) {
    dot.classList.toggle("online", user.online);
    state.textContent = user.online ? ", online" : ", offline";
    badge.hidden = user.unread === 0;
    badge.textContent = user.unread > 99 ? "99+" : String(user.unread);
    badge.title = `${user.unread} unread`;
    link.classList.toggle("has-unread", user.unread > 0);
    if (user.id === this.currentId) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
    this.onChange(user);
  }

  update(id, changes) {
    const entry = this.people.get(id);
    if (!entry) return;
    Object.assign(entry.user, changes);
    this.paint(entry);
  }

  setOnline(id, online) {
    this.update(id, { online });
  }

  setUnread(id, unread) {
    this.update(id, { unread });
  }

  addUnread(id) {
    const user = this.get(id);
    if (user) this.setUnread(id, user.unread + 1);
  }

  setCurrent(id) {
    this.currentId = id;
    for (const entry of this.people.values()) this.paint(entry);
  }
}
