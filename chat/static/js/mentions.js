// @-completion in the message box: typing "@" and the start of a name offers the room's members; ↑/↓ choose,
// Enter or Tab inserts "@name ", Esc closes the list. Names are inserted as text.

const MAX_OPTIONS = 8;
// "@" after a start, a space or punctuation (not inside an e-mail address), then what is typed of the name
const TYPED_MENTION = /(^|[^\p{L}\p{N}_.-])@([\p{L}\p{N}_.-]*)$/u;

export class MentionCompleter {
  /**
   * @param input the textarea
   * @param list an empty <ul> for the options
   * @param candidates () => [{id, username}] who may be mentioned here (empty: no completion)
   */
  constructor({ input, list, candidates }) {
    this.input = input;
    this.list = list;
    this.candidates = candidates;
    this.options = [];
    this.active = 0;
    this.typed = null; // {start, end} of "@query" in the text
    list.setAttribute("role", "listbox");
    input.setAttribute("aria-autocomplete", "list");
    input.setAttribute("aria-controls", list.id);
    input.addEventListener("input", () => this.update());
    input.addEventListener("click", () => this.update());
    input.addEventListener("blur", () => this.close());
    list.addEventListener("mousedown", (event) => {
      const option = event.target.closest("[role=option]");
      if (!option) return;
      event.preventDefault(); // keep the focus in the message box
      this.choose(Number(option.dataset.index));
    });
    this.close();
  }

  get isOpen() {
    return this.options.length > 0;
  }

  /** Keys while the list is open; true when the key was the list's (the composer must not act on it). */
  handleKey(event) {
    if (!this.isOpen || event.isComposing) return false;
    if (event.key === "ArrowDown" || event.key === "ArrowUp") {
      const step = event.key === "ArrowDown" ? 1 : -1;
      this.active = (this.active + step + this.options.length) % this.options.length;
      this.paint();
    } else if (event.key === "Enter" || event.key === "Tab") {
      this.choose(this.active);
    } else if (event.key === "Escape") {
      this.close();
    } else {
      return false;
    }
    event.preventDefault();
    return true;
  }

  update() {
    const { value, selectionStart, selectionEnd } = this.input;
    const match = selectionStart === selectionEnd && TYPED_MENTION.exec(value.slice(0, selectionStart));
    if (!match) return this.close();
    const query = match[2].toLowerCase();
    const people = this.candidates();
    const starts = people.filter((person) => person.username.toLowerCase().startsWith(query));
    const contains = people.filter(
      (person) => !person.username.toLowerCase().startsWith(query) && person.username.toLowerCase().includes(query),
    );
    const options = [...starts, ...contains].slice(0, MAX_OPTIONS);
    if (!options.length) return this.close();
    this.typed = { start: selectionStart - match[2].length - 1, end: selectionStart };
    this.options = options;
    this.active = Math.min(this.active, options.length - 1);
    this.render();
  }

  render() {
    this.list.replaceChildren(
      ...this.options.map((person, index) => {
        const option = document.createElement("li");
        option.id = `${this.list.id}-${index}`;
        option.setAttribute("role", "option");
        option.dataset.index = String(index);
        option.textContent = `@${person.username}`; // text, never HTML
        return option;
      }),
    );
    this.list.hidden = false;
    this.paint();
  }

  paint() {
    for (const option of this.list.children) {
      const selected = Number(option.dataset.index) === this.active;
      option.setAttribute("aria-selected", String(selected));
      if (selected) option.scrollIntoView({ block: "nearest" });
    }
    this.input.setAttribute("aria-activedescendant", `${this.list.id}-${this.active}`);
  }

  choose(index) {
    const person = this.options[index];
    if (!person || !this.typed) return this.close();
    const { value } = this.input;
    const { start, end } = this.typed;
    const inserted = `@${person.username} `;
    this.input.value = value.slice(0, start) + inserted + value.slice(end).replace(/^ /, "");
    const caret = start + inserted.length;
    this.input.setSelectionRange(caret, caret);
    this.close();
    this.input.dispatchEvent(new Event("input", { bubbles: true })); // the counter and typing see the change
  }

  close() {
    this.options = [];
    this.active = 0;
    this.typed = null;
    this.list.hidden = true;
    this.list.replaceChildren();
    this.input.removeAttribute("aria-activedescendant");
  }
}
