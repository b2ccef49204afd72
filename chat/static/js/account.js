// The account page: delete my account (the password re-entered, a box ticked). The export is a plain link.
import { postJSON } from "./api.js";

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
