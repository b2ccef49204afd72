import { postJSON } from "./api.js";
import { FormErrors } from "./forms.js";

const form = document.getElementById("register-form");
const errors = new FormErrors(form, { codes: { username_taken: "username", email_taken: "email" } });

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  errors.clear();
  const complete = errors.missing({
    username: "Choose a username.",
    email: "Enter your email address.",
    password: "Choose a password.",
  });
  if (!complete) return;
  const username = form.elements.username.value.trim();
  const email = form.elements.email.value.trim();
  const password = form.elements.password.value; // exactly as typed: never trimmed
  const signedIn = await errors.busy(async () => {
    const created = await postJSON("/register", { username, email, password });
    if (!created.ok) {
      errors.show(created);
      return false;
    }
    // registering starts no session: sign in with what was just typed
    const login = await postJSON("/login", { username, password });
    if (!login.ok) location.assign("/login-page");
    return login.ok;
  });
  if (signedIn) location.assign("/chat");
});
