// Files on the page: the composer's attach button, drag and drop, an image pasted from the clipboard, each
// uploaded at once (POST /files, XHR for its progress) and shown as a chip until the message is sent with its
// id; and a message's files, images as previews (their thumbnail; a click opens the full size), the rest as chips
// with a name and a size. Everything from the server goes in as text or attributes, never as HTML.

export function humanSize(bytes) {
  const units = ["B", "KB", "MB", "GB"];
  let size = bytes;
  let unit = 0;
  while (size >= 1024 && unit < units.length - 1) {
    size /= 1024;
    unit += 1;
  }
  return `${unit === 0 ? size : size.toFixed(size < 10 ? 1 : 0)} ${units[unit]}`;
}

/** A message's files: previews for images, chips for the rest. */
export function filesNode(files) {
  const list = document.createElement("ul");
  list.className = "message-files";
  for (const file of files) {
    const item = document.createElement("li");
    const link = document.createElement("a");
    link.href = file.url;
    if (file.thumbnail_url) {
      link.target = "_blank";
      link.rel = "noopener";
      link.className = "file-preview";
      const image = document.createElement("img");
      image.src = file.thumbnail_url;
      image.alt = file.name;
      image.loading = "lazy";
      if (file.width && file.height) {
        const scale = Math.min(1, 320 / Math.max(file.width, file.height));
        image.width = Math.round(file.width * scale);
        image.height = Math.round(file.height * scale);
      }
      link.append(image);
    } else {
      link.className = "file-chip";
      link.download = file.name;
      const name = document.createElement("span");
      name.className = "file-name";
      name.textContent = file.name;
      const size = document.createElement("span");
      size.className = "file-size";
      size.textContent = humanSize(file.size);
      link.append(name, " ", size);
    }
    item.append(link);
    list.append(item);
  }
  return list;
}

/** The files waiting in the composer: uploading (with progress), uploaded, or failed. */
export class Attachments {
  constructor({ form, input, button, fileInput, list, room, onError, onChange = () => {} }) {
    this.list = list;
    this.room = room; // () => the open room's name, or null
    this.onError = onError;
    this.onChange = onChange;
    this.pending = new Map(); // chip -> {id, xhr}
    button.addEventListener("click", () => fileInput.click());
    fileInput.addEventListener("change", () => {
      this.addAll(fileInput.files);
      fileInput.value = "";
    });
    input.addEventListener("paste", (event) => {
      const files = [...(event.clipboardData?.files ?? [])];
      if (!files.length) return;
      event.preventDefault();
      this.addAll(files);
    });
    form.addEventListener("dragover", (event) => {
      if (![...event.dataTransfer.types].includes("Files")) return;
      event.preventDefault();
      form.classList.add("dropping");
    });
    form.addEventListener("dragleave", () => form.classList.remove("dropping"));
    form.addEventListener("drop", (event) => {
      form.classList.remove("dropping");
      if (!event.dataTransfer.files.length) return;
      event.preventDefault();
      this.addAll(event.dataTransfer.files);
    });
  }

  addAll(files) {
    for (const file of files) this.add(file);
  }

  add(file) {
    const room = this.room();
    if (!room) return;
    const chip = document.createElement("li");
    chip.className = "attachment uploading";
    const name = document.createElement("span");
    name.className = "file-name";
    name.textContent = file.name || "pasted image";
    const progress = document.createElement("progress");
    progress.max = 100;
    progress.value = 0;
    const remove = document.createElement("button");
    remove.type = "button";
    remove.textContent = "✕";
    remove.setAttribute("aria-label", `Remove ${name.textContent}`);
    chip.append(name, " ", progress, remove);
    this.list.append(chip);
    this.list.hidden = false;

    const body = new FormData();
    body.append("file", file, file.name || "pasted-image.png");
    const xhr = new XMLHttpRequest();
    const entry = { id: null, xhr };
    this.pending.set(chip, entry);
    remove.addEventListener("click", () => {
      xhr.abort();
      this.drop(chip);
    });
    xhr.upload.addEventListener("progress", (event) => {
      if (event.lengthComputable) progress.value = Math.round((100 * event.loaded) / event.total);
    });
    xhr.addEventListener("load", () => {
      let data = null;
      try {
        data = JSON.parse(xhr.responseText);
      } catch {
        data = null;
      }
      if (xhr.status === 201 && data) {
        entry.id = data.id;
        chip.className = "attachment uploaded";
        progress.replaceWith(document.createTextNode(humanSize(data.size)));
      } else {
        this.drop(chip);
        this.onError(data?.message ?? `The upload failed (${xhr.status}).`);
      }
      this.onChange();
    });
    xhr.addEventListener("error", () => {
      this.drop(chip);
      this.onError("The upload failed: the server could not be reached.");
    });
    xhr.open("POST", `/files?room=${encodeURIComponent(room)}`);
    xhr.setRequestHeader("Accept", "application/json");
    xhr.send(body);
    this.onChange();
  }

  drop(chip) {
    this.pending.delete(chip);
    chip.remove();
    this.list.hidden = this.pending.size === 0;
    this.onChange();
  }

  get uploading() {
    return [...this.pending.values()].some((entry) => entry.id === null);
  }

  get ready() {
    return [...this.pending.values()].some((entry) => entry.id !== null);
  }

  /** The uploaded files' ids, for the message being sent; their chips go. */
  take() {
    const ids = [];
    for (const [chip, entry] of this.pending) {
      if (entry.id === null) continue;
      ids.push(entry.id);
      this.drop(chip);
    }
    return ids;
  }

  /** Another room was opened: what waited here is not sent there. */
  clear() {
    for (const [chip, entry] of this.pending) {
      entry.xhr.abort();
      this.drop(chip);
    }
  }
}
