// A channel's own controls: the members panel (who is in it, online dots, roles; an owner adds, removes and
// promotes members, renames, sets the topic, archives), leaving, creating a channel and browsing public ones.
// Everything that shows a name or a topic sets text, never HTML.
import { deleteJSON, getJSON, patchJSON, postJSON } from "./api.js";

const $ = (id) => document.getElementById(id);

const ERRORS = {
  room_name_taken: "A channel with that name exists already. Choose another name.",
  last_owner: "You are the last owner of this channel. Make someone else an owner, or archive the channel, before you leave.",
  forbidden: "Only an owner of this channel can do that.",
  room_archived: "This channel is archived: it is read-only.",
  room_not_found: "This channel does not exist any more, or you are not in it.",
  user_not_found: "One of those people does not exist any more.",
};

/** A readable sentence for a failed request's answer. */
export function explain(result) {
  const { data } = result;
  if (ERRORS[data.error]) return ERRORS[data.error];
  if (data.error === "validation_error" && data.fields?.length) {
    return data.fields.map((field) => `${field.field}: ${field.message}`).join(" ");
  }
  return data.message || "That did not work. Try again.";
}

const roomPath = (room) => `/rooms/${encodeURIComponent(room)}`;

// ---------------------------------------------------------------- dialogs

function openDialog(dialog, focus) {
  for (const button of dialog.querySelectorAll("[data-close]")) button.onclick = () => dialog.close();
  dialog.showModal(); // modal: focus stays inside, Esc closes, the page behind is inert
  focus?.focus();
}

/** Ask before something that cannot be undone; resolves true when confirmed. */
export function confirmAction({ title, text, yes }) {
  const dialog = $("confirm-dialog");
  $("confirm-heading").textContent = title;
  $("confirm-text").textContent = text;
  const button = $("confirm-yes");
  button.textContent = yes;
  return new Promise((resolve) => {
    let confirmed = false;
    button.onclick = () => {
      confirmed = true;
      dialog.close();
    };
    dialog.addEventListener("close", () => resolve(confirmed), { once: true });
    openDialog(dialog, dialog.querySelector("[data-close]"));
  });
}

/** "New channel": name, topic, private or public, and the first members picked from people. */
export class CreateChannelDialog {
  constructor({ people, onCreated }) {
    this.people = people; // () => [{id, username}]
    this.onCreated = onCreated;
    this.dialog = $("create-dialog");
    this.form = $("create-form");
    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.submit();
    });
  }

  open() {
    this.form.reset();
    $("create-error").textContent = "";
    $("create-name").removeAttribute("aria-invalid");
    const choices = this.people().map((person) => {
      const label = document.createElement("label");
      label.className = "check";
      const box = document.createElement("input");
      box.type = "checkbox";
      box.value = String(person.id);
      const name = document.createElement("span");
      name.textContent = person.username;
      label.append(box, name);
      return label;
    });
    $("create-members").replaceChildren(...choices);
    if (!choices.length) $("create-members").textContent = "No one else is here yet.";
    openDialog(this.dialog, $("create-name"));
  }

  async submit() {
    const name = $("create-name").value.trim();
    const error = $("create-error");
    if (!name) {
      error.textContent = "Give the channel a name.";
      $("create-name").setAttribute("aria-invalid", "true");
      $("create-name").focus();
      return;
    }
    const memberIds = [...$("create-members").querySelectorAll("input:checked")].map((box) => Number(box.value));
    const body = { name, topic: $("create-topic").value.trim(), private: $("create-private").checked, member_ids: memberIds };
    const button = this.form.querySelector("[type=submit]");
    button.disabled = true;
    const result = await postJSON("/rooms", body);
    button.disabled = false;
    if (!result.ok) {
      error.textContent = explain(result);
      return;
    }
    this.dialog.close();
    this.onCreated(result.data);
  }
}

/** "Browse": every public, unarchived channel, with Join (or Open for those I am in). */
export class BrowseDialog {
  constructor({ onJoined, onOpen }) {
    this.onJoined = onJoined;
    this.onOpen = onOpen;
    this.dialog = $("browse-dialog");
  }

  async open() {
    const status = $("browse-status");
    const list = $("public-channels");
    list.replaceChildren();
    status.textContent = "Loading channels…";
    openDialog(this.dialog, this.dialog.querySelector("[data-close]"));
    const result = await getJSON("/rooms?scope=public");
    if (!result.ok) {
      status.textContent = explain(result);
      return;
    }
    const { rooms } = result.data;
    status.textContent = rooms.length ? `${rooms.length} public ${rooms.length === 1 ? "channel" : "channels"}` : "There are no public channels yet.";
    list.replaceChildren(...rooms.map((channel) => this.item(channel)));
    list.querySelector("button")?.focus();
  }

  item(channel) {
    const item = document.createElement("li");
    const text = document.createElement("div");
    const name = document.createElement("strong");
    name.textContent = `#${channel.name}`;
    const about = document.createElement("span");
    about.className = "hint";
    const members = `${channel.member_count} ${channel.member_count === 1 ? "member" : "members"}`;
    about.textContent = channel.topic ? `${channel.topic} · ${members}` : members;
    text.append(name, document.createElement("br"), about);
    const button = document.createElement("button");
    button.type = "button";
    const joined = channel.role !== null && channel.role !== undefined;
    button.textContent = joined ? "Open" : "Join";
    button.setAttribute("aria-label", `${joined ? "Open" : "Join"} #${channel.name}`);
    button.addEventListener("click", async () => {
      if (joined) {
        this.dialog.close();
        return this.onOpen(channel.room);
      }
      button.disabled = true;
      const result = await postJSON(`${roomPath(channel.room)}/join`);
      if (!result.ok) {
        button.disabled = false;
        $("browse-status").textContent = explain(result);
        return;
      }
      this.dialog.close();
      this.onJoined(result.data);
    });
    item.append(text, button);
    return item;
  }
}

/** Join a public channel; resolves to the channel, or null after saying why not. */
export async function joinChannel(room, say) {
  const result = await postJSON(`${roomPath(room)}/join`);
  if (result.ok) return result.data;
  say(explain(result));
  return null;
}

// ---------------------------------------------------------------- the members panel

export class MembersPanel {
  /**
   * @param me {id, username}
   * @param people () => [{id, username}] everyone (to offer for adding)
   * @param onChannel (channel) => void, the channel as the server answered a change
   * @param onLeft (room) => void, after leaving
   */
  constructor({ me, people, onChannel, onLeft }) {
    this.me = me;
    this.people = people;
    this.onChannel = onChannel;
    this.onLeft = onLeft;
    this.panel = $("members-panel");
    this.toggle = $("members-toggle");
    this.details = null; // GET /rooms/<room>: the channel and its members
    this.reloading = null;
    this.toggle.addEventListener("click", () => this.setOpen(this.panel.hidden));
    $("members-close").addEventListener("click", () => {
      this.setOpen(false);
      this.toggle.focus();
    });
    this.panel.addEventListener("keydown", (event) => {
      if (event.key !== "Escape") return;
      this.setOpen(false);
      this.toggle.focus();
    });
    $("channel-settings").addEventListener("submit", (event) => {
      event.preventDefault();
      this.saveSettings();
    });
    $("add-member").addEventListener("submit", (event) => {
      event.preventDefault();
      const id = Number($("add-member-select").value);
      if (id) this.change(`${roomPath(this.room)}/members`, { user_ids: [id] }, "post");
    });
    $("leave-channel").addEventListener("click", () => this.leave());
    $("archive-channel").addEventListener("click", () => this.archive());
  }

  get room() {
    return this.details?.room ?? null;
  }

  get isOwner() {
    return this.details?.role === "owner";
  }

  /** Members of the open channel, for @-completion (everyone but me). */
  members() {
    return (this.details?.members ?? []).filter((member) => member.id !== this.me.id);
  }

  setOpen(open) {
    this.panel.hidden = !open || this.details === null;
    this.toggle.setAttribute("aria-expanded", String(!this.panel.hidden));
    document.body.classList.toggle("has-panel", !this.panel.hidden);
    if (!this.panel.hidden) (this.isOwner && !this.details.archived ? $("settings-name") : $("members-close")).focus();
  }

  /** No channel open (a direct conversation or none). */
  clear() {
    this.details = null;
    this.setOpen(false);
    this.toggle.hidden = true;
  }

  /** Fetch a channel and its members: {details, result}, details null when the request failed. */
  async load(room) {
    const result = await getJSON(roomPath(room));
    return { details: result.ok ? result.data : null, result };
  }

  /** After a member or room frame: fetch again (one request at a time). */
  reload() {
    if (!this.room) return Promise.resolve();
    const room = this.room;
    this.reloading ??= getJSON(roomPath(room))
      .then((result) => {
        if (result.ok && this.room === room) this.show(result.data);
      })
      .finally(() => {
        this.reloading = null;
      });
    return this.reloading;
  }

  show(details) {
    this.details = details;
    this.toggle.hidden = false;
    const count = details.member_count ?? details.members.length;
    $("member-count").textContent = `${count} ${count === 1 ? "member" : "members"}`;
    this.toggle.setAttribute("aria-label", `${count} ${count === 1 ? "member" : "members"}: show the channel's details`);
    $("members-heading").textContent = `About #${details.name}`;
    const owner = this.isOwner && !details.archived;
    $("channel-settings").hidden = !owner;
    if (owner && !this.panel.contains(document.activeElement)) {
      $("settings-name").value = details.name;
      $("settings-topic").value = details.topic ?? "";
    }

    $("archive-channel").hidden = !owner;
    $("leave-channel").hidden = details.role === null || details.role === undefined;
    this.renderMembers();
    this.renderAddChoices();
    this.onChannel(details);
  }

  renderMembers() {
    const owner = this.isOwner && !this.details.archived;
    const members = [...this.details.members].sort(
      (a, b) => (a.role === "owner" ? 0 : 1) - (b.role === "owner" ? 0 : 1) || a.username.localeCompare(b.username),
    );
    $("member-list").replaceChildren(
      ...members.map((member) => {
        const item = document.createElement("li");
        item.className = "member";
        item.dataset.userId = String(member.id);
        const dot = document.createElement("span");
        dot.className = `presence-dot${member.online ? " online" : ""}`;
        dot.setAttribute("aria-hidden", "true");
        const name = document.createElement("span");
        name.className = "member-name";
        name.textContent = member.id === this.me.id ? `${member.username} (you)` : member.username;
        const state = document.createElement("span");
        state.className = "visually-hidden";
        state.textContent = member.online ? ", online" : ", offline";
        const role = document.createElement("span");
        role.className = "role";
        role.textContent = member.role === "owner" ? "owner" : "";
        item.append(dot, name, state, role);
        if (owner && member.id !== this.me.id) item.append(...this.memberActions(member));
        return item;
      }),
    );
  }

  memberActions(member) {
    const actions = [];
    if (member.role !== "owner") {
      const promote = document.createElement("button");
      promote.type = "button";
      promote.className = "small";
      promote.textContent = "Make owner";
      promote.setAttribute("aria-label", `Make ${member.username} an owner`);
      promote.addEventListener("click", () =>
        this.change(`${roomPath(this.room)}/members`, { user_ids: [member.id], role: "owner" }, "post"),
      );
      actions.push(promote);
    }
    const remove = document.createElement("button");
    remove.type = "button";
    remove.className = "small";
    remove.textContent = "Remove";
    remove.setAttribute("aria-label", `Remove ${member.username} from the channel`);
    remove.addEventListener("click", () => this.change(`${roomPath(this.room)}/members/${member.id}`, null, "delete"));
    actions.push(remove);
    return actions;
  }

  renderAddChoices() {
    const inside = new Set(this.details.members.map((member) => member.id));
    const choices = this.people().filter((person) => !inside.has(person.id));
    const options = choices.map((person) => {
      const option = document.createElement("option");
      option.value = String(person.id);
      option.textContent = person.username;
      return option;
    });
    $("add-member-select").replaceChildren(...options);
    $("add-member").hidden = !this.isOwner || this.details.archived || options.length === 0; // everyone is in
  }

  /** A presence frame: the dot of that member, if they are one. */
  setOnline(id, online) {
    const member = this.details?.members.find((candidate) => candidate.id === id);
    if (!member || member.online === online) return;
    member.online = online;
    this.renderMembers();
  }

  say(text) {
    $("panel-error").textContent = text;
  }

  async change(path, body, method) {
    this.say("");
    const result = method === "delete" ? await deleteJSON(path) : await postJSON(path, body);
    if (!result.ok) return this.say(explain(result));
    await this.reload();
  }

  async saveSettings() {
    const name = $("settings-name").value.trim();
    if (!name) return this.say("A channel needs a name.");
    const changes = { name, topic: $("settings-topic").value.trim() };
    this.say("");
    const result = await patchJSON(roomPath(this.room), changes);
    if (!result.ok) return this.say(explain(result));
    await this.reload();
  }

  async leave() {
    const room = this.room;
    this.say("");
    const result = await postJSON(`${roomPath(room)}/leave`);
    if (!result.ok) return this.say(explain(result));
    this.onLeft(room);
  }

  async archive() {
    const sure = await confirmAction({
      title: `Archive #${this.details.name}?`,
      text: "Nobody can send messages in an archived channel any more. Its history stays readable for its members.",
      yes: "Archive channel",
    });
    if (!sure) return;
    this.say("");
    const result = await postJSON(`${roomPath(this.room)}/archive`);
    if (!result.ok) return this.say(explain(result));
    await this.reload();
  }
}
