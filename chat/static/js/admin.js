// The admin page: every account with its role and state; deactivate or reactivate, after a confirmation.
import { getJSON, postJSON } from "./api.js";

const rows = document.getElementById("admin-people");
const status = document.getElementById("admin-status");
const meId = Number(document.body.dataset.meId);

function cell(text) {
  const td = document.createElement("td");
  td.textContent = text;
  return td;
}

function actionButton(user) {
  const td = document.createElement("td");
  if (user.id === meId || user.deleted) return td;
  const button = document.createElement("button");
  button.type = "button";
  const deactivate = !user.deactivated;
  button.textContent = deactivate ? "Deactivate" : "Reactivate";
  button.className = deactivate ? "danger" : "quiet";
  button.setAttribute("aria-label", `${button.textContent} ${user.username}`);
  button.addEventListener("click", () => act(user, deactivate));
  td.append(button);
  return td;
}

function render(users) {
  rows.replaceChildren(
    ...users.map((user) => {
      const tr = document.createElement("tr");
      tr.dataset.userId = String(user.id);
      const state = user.deleted ? "deleted" : user.deactivated ? "deactivated" : "active";
      tr.append(cell(user.username), cell(user.deleted ? "" : user.email), cell(user.role), cell(state));
      tr.append(actionButton(user));
      return tr;
    }),
  );
}

/** GET a list for one table: its answer's data, or null (signed out: to the sign-in page; else said in `where`). */
async function fetchList(url, where, what) {
  const result = await getJSON(url);
  if (result.status === 401) {
    location.assign("/login-page");
    return null;
  }
  if (!result.ok) {
    where.textContent = result.data.message || `Could not load the ${what}.`;
    return null;
  }
  return result.data;
}

async function load() {
  const data = await fetchList("/admin/users", status, "people");
  if (data) render(data.users);
}

async function act(user, deactivate) {
  const question = deactivate
    ? `Deactivate ${user.username}? They are signed out everywhere at once and cannot sign in until reactivated.`
    : `Reactivate ${user.username}? They can sign in again.`;
  if (!window.confirm(question)) return;
  status.textContent = "";
  const result = await postJSON(`/admin/users/${user.id}/${deactivate ? "deactivate" : "reactivate"}`);
  if (!result.ok) status.textContent = result.data.message || "That did not work; please try again.";
  await load();
}

load();

// Channels: every one, private and archived too; archive (after a confirmation) or take over (become an owner,
// then manage it from the chat page like any owner).
const channelRows = document.getElementById("admin-channels");
const channelStatus = document.getElementById("admin-channels-status");

function channelButton(label, className, handler) {
  const button = document.createElement("button");
  button.type = "button";
  button.textContent = label;
  button.className = className;
  button.addEventListener("click", handler);
  return button;
}

function channelActions(channel) {
  const td = document.createElement("td");
  if (channel.role !== "owner") {
    const takeOver = channelButton("Take over", "quiet", () => channelAction(channel, "take-over"));
    takeOver.setAttribute("aria-label", `Take over ${channel.name}`);
    td.append(takeOver);
  } else {
    const open = document.createElement("a");
    open.href = `/chat?room=${encodeURIComponent(channel.room)}`;
    open.textContent = "Open";
    open.setAttribute("aria-label", `Open ${channel.name}`);
    td.append(open);
  }
  if (!channel.archived) {
    const archive = channelButton("Archive", "danger", () => channelAction(channel, "archive"));
    archive.setAttribute("aria-label", `Archive ${channel.name}`);
    td.append(" ", archive);
  }
  return td;
}

function renderChannels(channels) {
  channelRows.replaceChildren(
    ...channels.map((channel) => {
      const tr = document.createElement("tr");
      tr.dataset.room = channel.room;
      tr.append(
        cell(channel.name),
        cell(channel.private ? "private" : "public"),
        cell(String(channel.member_count)),
        cell(channel.archived ? "archived" : "active"),
        cell(channel.role || ""),
        channelActions(channel),
      );
      return tr;
    }),
  );
}

async function loadChannels() {
  const data = await fetchList("/admin/rooms", channelStatus, "channels");
  if (data) renderChannels(data.rooms);
}

async function channelAction(channel, action) {
  if (action === "archive") {
    const question = `Archive ${channel.name}? It becomes read-only for everyone in it, and cannot be undone.`;
    if (!window.confirm(question)) return;
  }
  channelStatus.textContent = "";
  const result = await postJSON(`/admin/rooms/${encodeURIComponent(channel.room)}/${action}`);
  if (!result.ok) channelStatus.textContent = result.data.message || "That did not work; please try again.";
  await loadChannels();
}

loadChannels();
