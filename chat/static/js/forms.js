// The sign-in and sign-up forms: put each of the server's errors next to the field it is about.
import { retryAfterSeconds } from "./api.js";

function sentence(text) {
  const trimmed = String(text ?? "").trim();
  if (!trimmed) return "";
  const capital = trimmed[0].toUpperCase() + trimmed.slice(1);
  return /[.!?]$/.test(capital) ? capital : `${capital}.`;
}

function humanWait(seconds) {
  if (seconds < 60) return `${seconds} second${seconds === 1 ? "" : "s"}`;
  const minutes = Math.ceil(seconds / 60);
  return `${minutes} minute${minutes === 1 ? "" : "s"}`;
}

export class FormErrors {
  /**
   * @param form the <form>
   * @param aliases server field name -> input name, where they differ (login's "email" is the "identifier" input)
   * @param codes server error code -> input name, for errors about one field (409 username_taken ...)
   */
  constructor(form, { aliases = {}, codes = {} } = {}) {
    this.form = form;
    this.aliases = aliases;
    this.codes = codes;
    this.formError = form.querySelector(".form-error");
    this.submit = form.querySelector("[type=submit]");
    this.lockTimer = null;
    this.submit.disabled = false; // the page starts with it off: a submit before this script ran would go nowhere
  }

  clear() {
    for (const slot of this.form.querySelectorAll("[data-error-for]")) slot.textContent = "";
    for (const input of this.form.querySelectorAll("[aria-invalid]")) input.removeAttribute("aria-invalid");
    this.formError.textContent = "";
  }

  field(name, message) {
    const input = this.form.elements.namedItem(name);
    const slot = this.form.querySelector(`[data-error-for="${name}"]`);
    if (!input || !slot) return this.general(message);
    slot.textContent = sentence(message);
    input.setAttribute("aria-invalid", "true");
    if (!this.form.querySelector("[aria-invalid]:focus")) input.focus();
  }

  general(message) {
    this.formError.textContent = sentence(message);
  }

  /** Show a failed API answer: validation fields, one-field conflicts, throttling, or its message. */
  show({ status, data, headers }) {
    if (status === 400 && Array.isArray(data.fields)) {
      for (const { field, message } of data.fields) this.field(this.aliases[field] ?? field, message);
    } else if (data.error in this.codes) {
      this.field(this.codes[data.error], data.message);
    } else if (status === 429) {
      this.lockFor(retryAfterSeconds(headers) ?? 60);
    } else {
      this.general(data.message || "Something went wrong. Please try again.");
    }
  }

  /** Too many attempts: say how long to wait, and keep the button off until then. */
  lockFor(seconds) {
    clearInterval(this.lockTimer);
    const until = Date.now() + seconds * 1000;
    const tick = () => {
      const left = Math.ceil((until - Date.now()) / 1000);
      if (left <= 0) {
        clearInterval(this.lockTimer);
        this.lockTimer = null;
        this.submit.disabled = false;
        this.formError.textContent = "You can try again now.";
        return;
      }
      this.submit.disabled = true;
      this.formError.textContent = `Too many attempts. Try again in ${humanWait(left)}.`;
    };
    tick();
    this.lockTimer = setInterval(tick, 1000);
  }

  /** Run `action` with the submit button disabled, so a double press sends one request. */
  async busy(action) {
    this.submit.disabled = true;
    this.form.setAttribute("aria-busy", "true");
    try {
      return await action();
    } finally {
      this.form.removeAttribute("aria-busy");
      if (this.lockTimer === null) this.submit.disabled = false;
    }
  }

  /** Required fields left empty, named before anything is sent. */
  missing(labels) {
    let complete = true;
    for (const [name, message] of Object.entries(labels)) {
      if (!this.form.elements.namedItem(name).value.trim()) {
        this.field(name, message);
        complete = false;
      }
    }
    return complete;
  }
}

/** Where to go after signing in: back to the conversation that sent us here, never off this site. */
export function nextPage() {
  const next = new URLSearchParams(location.search).get("next");
  return next && /^\/chat(\?[^\\]*)?$/.test(next) ? next : "/chat";
}
