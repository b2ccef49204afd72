// The search box: Ctrl+K (or /) focuses it; results come from GET /search grouped by room, newest first, the
// matched words marked by the server's offsets (text nodes and <mark>, never HTML), and a click opens the
// conversation at that message.
import { getJSON } from "./api.js";
import { shortTime, fullTime } from "./time.js";

const PAGE_SIZE = 20;
const TYPE_PAUSE_MS = 300;

/** content with [start, end] code-point offsets marked: a fragment of text nodes and <mark>s. */
export function highlighted(content, matches) {
  const chars = Array.from(content); // the server counts code points; JavaScript strings count UTF-16 units
  const fragment = document.createDocumentFragment();
  let at = 0;
  for (const [start, end] of matches) {
    if (start < at || end <= start || end > chars.length) continue;
    fragment.append(chars.slice(at, start).join(""));
    const mark = document.createElement("mark");
    mark.textContent = chars.slice(start, end).join("");
    fragment.append(mark);
    at = end;
  }
  fragment.append(chars.slice(at).join(""));
  return fragment;
}

export class SearchBox {
  /** ui: {form, input, panel, list, status, more}; roomTitle(room) names a room; onOpen(message) opens one. */
  constructor({ ui, roomTitle, onOpen, onUnauthorized }) {
    this.ui = ui;
    this.roomTitle = roomTitle;
    this.onOpen = onOpen;
    this.onUnauthorized = onUnauthorized;
    this.query = "";
    this.oldestId = null;
    this.groups = new Map(); // room -> its <ul> of results
    this.timer = null;
    this.asked = 0; // answers to an older query are dropped
    ui.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.run(ui.input.value);
    });
    ui.input.addEventListener("input", () => {
      clearTimeout(this.timer);
      this.timer = setTimeout(() => this.run(ui.input.value), TYPE_PAUSE_MS);
    });
    ui.more.addEventListener("click", () => this.fetch());
    ui.panel.addEventListener("keydown", (event) => event.key === "Escape" && this.close());
    ui.input.addEventListener("keydown", (event) => event.key === "Escape" && this.close());
    document.addEventListener("keydown", (event) => this.shortcut(event));
    document.addEventListener("click", (event) => {
      if (!ui.form.contains(event.target)) ui.panel.hidden = true;
    });
    ui.input.addEventListener("focus", () => {
      if (this.query) ui.panel.hidden = false;
    });
  }

  shortcut(event) {
    const typing = event.target.closest?.("input, textarea, [contenteditable]");
    if ((event.ctrlKey || event.metaKey) && event.key.toLowerCase() === "k") {
      event.preventDefault();
      this.focus();
    } else if (event.key === "/" && !typing && !event.ctrlKey && !event.metaKey && !event.altKey) {
      event.preventDefault();
      this.focus();
    }
  }

  focus() {
    this.ui.input.focus();
    this.ui.input.select();
  }

  close() {
    clearTimeout(this.timer);
    this.asked += 1;
    this.ui.panel.hidden = true;
    this.ui.input.value = "";
    this.query = "";
  }

  run(text) {
    clearTimeout(this.timer);
    const query = text.trim();
    if (query === this.query && !this.ui.panel.hidden) return;
    this.query = query;
    this.oldestId = null;
    this.groups.clear();
    this.ui.list.replaceChildren();
    this.ui.more.hidden = true;
    if (!query) {
      this.ui.panel.hidden = true;
      return;
    }
    this.ui.panel.hidden = false;
    this.fetch();
  }

  async fetch() {
    const asked = ++this.asked;
    const params = new URLSearchParams({ q: this.query, limit: PAGE_SIZE });
    if (this.oldestId !== null) params.set("before", this.oldestId);
    this.ui.status.textContent = "Searching…";
    this.ui.more.hidden = true;
    const result = await getJSON(`/search?${params}`);
    if (asked !== this.asked) return;
    if (result.status === 401) return this.onUnauthorized();
    if (!result.ok) {
      const field = result.data.fields?.[0]?.message;
      this.ui.status.textContent = field ? `Cannot search for that: ${field}.` : result.data.message || "Search failed.";
      return;
    }
    for (const message of result.data.messages) {
      this.groupOf(message.room).append(this.item(message));
      this.oldestId = message.id;
    }
    const none = this.groups.size === 0;
    this.ui.status.textContent = none ? `No messages match “${this.query}”.` : "";
    this.ui.more.hidden = !result.data.has_more;
  }

  groupOf(room) {
    let list = this.groups.get(room);
    if (list) return list;
    const section = document.createElement("li");
    section.className = "search-group";
    const title = document.createElement("h3");
    title.textContent = this.roomTitle(room);
    list = document.createElement("ul");
    list.className = "search-group-results";
    section.append(title, list);
    this.ui.list.append(section);
    this.groups.set(room, list);
    return list;
  }

  item(message) {
    const item = document.createElement("li");
    const button = document.createElement("button");
    button.type = "button";
    button.className = "search-result";
    button.dataset.id = String(message.id);
    const text = document.createElement("span");
    text.className = "search-text";
    text.append(highlighted(message.content, message.matches));
    const time = document.createElement("time");
    const date = new Date(message.timestamp);
    time.dateTime = date.toISOString();
    time.textContent = shortTime(date);
    time.title = fullTime(date);
    button.append(text, time);
    button.addEventListener("click", () => {
      this.ui.panel.hidden = true;
      this.onOpen(message);
    });
    item.append(button);
    return item;
  }
}
