// Changing messages on the page: the edited / deleted marks, the reactions under a message, the quoted message a
// reply answers, the edit box and the reaction picker. conversation.js applies the room's edit, delete and
// reaction frames (docs/websocket.md) and calls these to draw; the changes themselves go over HTTP.

import { deleteJSON, patchJSON, request } from "./api.js";

export const COMMON_EMOJI = ["👍", "❤️", "😂", "🎉", "😮", "🙏"];

/** A reaction frame applied to a message's reactions: that person now has (or has not) that emoji. */
export function applyReaction(message, { emoji, user_id: userId, added }) {
  const reactions = message.reactions ?? (message.reactions = []);
  let entry = reactions.find((reaction) => reaction.emoji === emoji);
  if (added) {
    if (!entry) reactions.push((entry = { emoji, count: 0, user_ids: [] }));
    if (!entry.user_ids.includes(userId)) {
      entry.user_ids.push(userId);
      entry.count += 1;
    }
  } else if (entry && entry.user_ids.includes(userId)) {
    entry.user_ids = entry.user_ids.filter((id) => id !== userId);
    entry.count -= 1;
    if (!entry.count) reactions.splice(reactions.indexOf(entry), 1);
  }
}

export function tombstone(message) {
  return { ...message, deleted: true, content: "", mentions: [], reactions: [] };
}

/** The small marks after a message's text. */
export function marks(message) {
  const nodes = [];
  if (message.edited_at && !message.deleted) {
    const edited = document.createElement("span");
    edited.className = "edited";
    edited.textContent = " (edited)";
    edited.title = `Edited ${new Date(message.edited_at).toLocaleString()}`;
    nodes.push(edited);
  }
  return nodes;
}

/** The quoted preview of the message a reply answers; a click shows the original. */
export function replyQuote(message, original, senderName, onOpen) {
  const quote = document.createElement("button");
  quote.type = "button";
  quote.className = "reply-quote";
  quote.dataset.replyTo = String(message.reply_to);
  const text = !original ? "an earlier message" : original.deleted ? "a deleted message" : original.content;
  const who = original ? senderName(original.sender_id) : "";
  quote.textContent = `↪ ${who ? `${who}: ` : ""}${text.length > 80 ? `${text.slice(0, 80)}…` : text}`;
  quote.title = "Show the message this answers";
  quote.addEventListener("click", () => onOpen(message.reply_to));
  return quote;
}

/** The reactions under a message: one button each, with its count; its title says who reacted. */
export function reactionsBar(message, me, senderName, onToggle) {
  const bar = document.createElement("div");
  bar.className = "reactions";
  for (const reaction of message.reactions ?? []) {
    const chip = document.createElement("button");
    chip.type = "button";
    chip.className = "reaction";
    const mine = reaction.user_ids.includes(me.id);
    chip.setAttribute("aria-pressed", String(mine));
    chip.textContent = `${reaction.emoji} ${reaction.count}`;
    chip.title = reaction.user_ids.map((id) => (id === me.id ? "you" : senderName(id))).join(", ");
    chip.setAttribute("aria-label", `${reaction.emoji} ${reaction.count}: ${chip.title}`);
    chip.addEventListener("click", () => onToggle(reaction.emoji, !mine));
    bar.append(chip);
  }
  return bar;
}

/** The buttons of a message: react (with its picker), reply, for its sender edit, and delete for its sender or
 * (canDelete) a channel owner. */
export function actions({ mine, canDelete = mine, onReact, onReply, onEdit, onDelete }) {
  const box = document.createElement("div");
  box.className = "message-actions";
  const button = (label, text, handler) => {
    const element = document.createElement("button");
    element.type = "button";
    element.className = `action-${label.toLowerCase()}`;
    element.textContent = text;
    element.setAttribute("aria-label", label);
    element.title = label;
    element.addEventListener("click", handler);
    box.append(element);
    return element;
  };
  const picker = document.createElement("div");
  picker.className = "emoji-picker";
  picker.hidden = true;
  for (const emoji of COMMON_EMOJI) {
    const choice = document.createElement("button");
    choice.type = "button";
    choice.textContent = emoji;
    choice.setAttribute("aria-label", `React with ${emoji}`);
    choice.addEventListener("click", () => {
      picker.hidden = true;
      onReact(emoji);
    });
    picker.append(choice);
  }
  button("React", "☺", () => (picker.hidden = !picker.hidden));
  box.append(picker);
  button("Reply", "↩", onReply);
  if (mine) button("Edit", "✎", onEdit);
  if (mine || canDelete) button("Delete", "🗑", onDelete);
  return box;
}

/** Edit a message's text in place: Enter saves, Shift+Enter is a new line, Esc cancels. */
export function editBox(content, { onSave, onCancel }) {
  const box = document.createElement("textarea");
  box.className = "edit-box";
  box.value = content;
  box.setAttribute("aria-label", "Edit message");
  box.rows = Math.min(6, content.split("\n").length + 1);
  box.addEventListener("keydown", (event) => {
    if (event.key === "Escape") {
      event.preventDefault();
      onCancel();
    } else if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      if (box.value.trim()) onSave(box.value);
    }
  });
  return box;
}

export const editMessage = (id, content) => patchJSON(`/messages/${id}`, { content });
export const deleteMessage = (id) => deleteJSON(`/messages/${id}`);
export const setReaction = (id, emoji, on) =>
  request(on ? "PUT" : "DELETE", `/messages/${id}/reactions/${encodeURIComponent(emoji)}`);
