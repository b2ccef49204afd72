// The message box: Enter sends, Shift+Enter is a new line, blank messages are not sent, and the length limit
// (counted in code points, as the server counts) is shown under it.

const codePoints = (text) => [...text].length;
// what the server refuses in any text: NUL, and lone surrogates (which no UTF-8 column can hold)
const unstorable = (text) => text.includes("\0") || /\p{Cs}/u.test(text);

export class Composer {
  constructor({ form, input, counter, error, maxLength, onSend, onTyping }) {
    this.form = form;
    this.input = input;
    this.counter = counter;
    this.error = error;
    this.maxLength = maxLength;
    this.onSend = onSend;
    this.onTyping = onTyping;
    input.addEventListener("keydown", (event) => this.keydown(event));
    input.addEventListener("input", () => this.changed());
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.submit();
    });
    this.changed();
    form.querySelector("[type=submit]").disabled = false; // off until this script runs
  }

  keydown(event) {
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
    if (!content.trim() || this.input.getAttribute("aria-invalid") === "true") return;
    this.onSend(content);
    this.input.value = "";
    this.changed();
    this.input.focus();
  }

  prepare(peerName) {
    this.input.placeholder = `Message ${peerName}`;
    this.error.textContent = "";
  }

  say(message) {
    this.error.textContent = message;
  }
}
