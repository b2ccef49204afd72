import { postJSON } from "./api.js";
import { FormErrors, nextPage } from "./forms.js";

const form = document.getElementById("login-form");
const errors = new FormErrors(form, { aliases: { email: "identifier", username: "identifier" } });

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  errors.clear();
  if (!errors.missing({ identifier: "Enter your email or username.", password: "Enter your password." })) return;
  const identifier = form.elements.identifier.value.trim();
  const password = form.elements.password.value; // exactly as typed: never trimmed
  const body = identifier.includes("@") ? { email: identifier, password } : { username: identifier, password };
  const result = await errors.busy(() => postJSON("/login", body));
  if (result.ok) {
    location.assign(nextPage());
  } else {
    errors.show(result);
    if (result.status === 401) form.elements.password.select();
  }
});
