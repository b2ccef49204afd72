// The message box: Enter sends, Shift+Enter is a new line, blank messages are not sent, and the length limit
// (counted in code points, as the server counts) is shown under it. An archived channel's box is read-only.

const codePoints = (text) => [...text].length;
// what the server refuses in any text: NUL, and lone surrogates (which no UTF-8 column can hold)
const unstorable = (text) => text.includes("\0") || /\p{Cs}/u.test(text);

export class Composer {
  constructor({ form, input, counter, error, note, maxLength, onSend, onTyping, onEditLast = () => false, hasFiles = () => false }) {
    this.hasFiles = hasFiles; // files ready to send: the content may then be empty
    this.form = form;
    this.note = note;
    this.button = form.querySelector("[type=submit]");
    this.completer = null; // keys go to an open @-completion list first
    this.input = input;
    this.counter = counter;
    this.error = error;
    this.maxLength = maxLength;
    this.onSend = onSend;
    this.onTyping = onTyping;
    this.onEditLast = onEditLast; // ↑ in an empty box: true when it opened my last message for editing
    input.addEventListener("keydown", (event) => this.keydown(event));
    input.addEventListener("input", () => this.changed());
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.submit();
    });
    this.changed();
    this.button.disabled = false; // off until this script runs
  }

  keydown(event) {
    if (this.completer?.handleKey(event)) return;
    if (event.key === "ArrowUp" && !this.input.value && this.onEditLast()) {
      event.preventDefault();
      return;
    }
    // isComposing: Enter that confirms an IME candidate (Japanese, Chinese...) must not send
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      this.submit();
    }
  }

  changed() {
    const length = codePoints(this.input.value);
    const over = length > this.maxLength;
    const invalid = over || unstorable(this.input.value);
    this.counter.textContent = `${length} / ${this.maxLength}`;
    this.counter.classList.toggle("over", over);
    this.input.setAttribute("aria-invalid", String(invalid));
    if (over) this.say(`Too long by ${length - this.maxLength}: messages hold up to ${this.maxLength} characters.`);
    else if (invalid) this.say("The message holds a character that cannot be sent (a NUL or a broken emoji).");
    else this.say("");
    if (this.input.value.trim()) this.onTyping();
  }

  submit() {
    const content = this.input.value;
    if (this.input.disabled || this.input.getAttribute("aria-invalid") === "true") return;
    if (!content.trim() && !this.hasFiles()) return;
    this.onSend(content);
    this.input.value = "";
    this.changed();
    this.input.focus();
  }

  prepare(placeholder) {
    this.input.placeholder = placeholder;
    this.error.textContent = "";
    this.setReadOnly(null);
  }

  /** A note (why nothing can be sent here) makes the box read-only; null makes it writable again. */
  setReadOnly(note) {
    this.input.disabled = note !== null;
    this.button.disabled = note !== null;
    this.note.hidden = note === null;
    this.note.textContent = note ?? "";
  }

  say(message) {
    this.error.textContent = message;
  }
}
