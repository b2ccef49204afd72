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

async function load() {
  const result = await getJSON("/admin/users");
  if (result.status === 401) return location.assign("/login-page");
  if (!result.ok) {
    status.textContent = result.data.message || "Could not load the people.";
    return;
  }
  render(result.data.users);
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
