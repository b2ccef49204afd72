// The account page: change my password; delete my account (the password re-entered, a box ticked). The export is
// a plain link.
import { postJSON } from "./api.js";
import { FormErrors } from "./forms.js";

const form = document.getElementById("delete-account");
const password = document.getElementById("delete-password");
const confirmBox = document.getElementById("delete-confirm");
const error = document.getElementById("delete-password-error");

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  error.textContent = "";
  if (!password.value) {
    error.textContent = "Type your password to confirm.";
    return;
  }
  if (!confirmBox.checked) {
    error.textContent = "Tick the box to confirm that you want to delete your account.";
    return;
  }
  const button = form.querySelector("button");
  button.disabled = true;
  const result = await postJSON("/delete-account", { password: password.value });
  button.disabled = false;
  if (result.ok) {
    location.assign("/login-page");
  } else if (result.status === 401 && result.data.error === "unauthorized") {
    location.assign("/login-page");
  } else {
    error.textContent = result.status === 401 ? "That password is wrong." : result.data.message || "Please try again.";
  }
});

// Change my password: the current one, the new one twice. The server checks the current one (401), the new
// one's rules (400, beside the field) and the attempts' budget (429, the button waits).
const passwordForm = document.getElementById("change-password");
const passwordErrors = new FormErrors(passwordForm, { codes: { invalid_credentials: "current_password" } });
const changed = document.getElementById("password-changed");

passwordForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  passwordErrors.clear();
  changed.textContent = "";
  const fields = passwordForm.elements;
  // exactly as typed: a password of spaces is a password, so "empty" is only ""
  const current = fields.current_password.value;
  const next = fields.new_password.value;
  if (!current) return passwordErrors.field("current_password", "Type your current password.");
  if (!next) return passwordErrors.field("new_password", "Choose a new password.");
  if (next !== fields.new_password_again.value) {
    return passwordErrors.field("new_password_again", "The two new passwords are not the same.");
  }
  const result = await passwordErrors.busy(() =>
    postJSON("/change-password", { current_password: current, new_password: next }),
  );
  if (result.ok) {
    passwordForm.reset();
    changed.textContent = "Your password is changed. Your other sessions are signed out.";
  } else if (result.status === 401 && result.data.error === "unauthorized") {
    location.assign("/login-page");
  } else if (result.data.error === "invalid_credentials") {
    passwordErrors.field("current_password", "That password is wrong.");
  } else {
    passwordErrors.show(result);
  }
});
