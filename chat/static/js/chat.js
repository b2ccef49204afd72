// The chat page: wires the sidebar (channels and people, kept live by the activity stream), the open
// conversation (a channel or a direct one), its header and members panel, the composer and the connection banner.
import { ActivityStream } from "./activity.js";
import { getJSON, postJSON } from "./api.js";
import { Attachments } from "./attachments.js";
import { BrowseDialog, CreateChannelDialog, MembersPanel, explain, joinChannel } from "./channel-ui.js";
import { ChannelList, isChannel } from "./channels.js";
import { Composer } from "./composer.js";
import { Conversation, hasUnsent } from "./conversation.js";
import { MentionCompleter } from "./mentions.js";
import { Notifier } from "./notify.js";
import { PeopleList, roomOf } from "./people.js";
import { SearchBox } from "./search.js";

const $ = (id) => document.getElementById(id);
const me = { id: Number(document.body.dataset.meId), username: document.body.dataset.meName };
const SHOW_CONNECTING_AFTER_MS = 1_000; // a quick first connection is not worth a flash of text
const REMOVED_NOTE = "You are no longer a member of this channel.";
const ARCHIVED_NOTE = "This channel is archived: it is read-only.";

let conversation = null;
let current = null; // {room, peerId} of the room on screen (peerId for a direct conversation)
let connectingTimer = null;
let showing = 0; // which call of show() is the latest: an older one that was waiting gives up
// Signing out here: the server closes this page's sockets (1008) before /logout answers; that is not a session
// ended elsewhere, so the page goes to the sign-in page without `next`
let signingOut = false;

function signInAgain() {
  if (signingOut) return;
  const here = location.pathname + location.search;
  location.assign(`/login-page?next=${encodeURIComponent(here)}`);
}

// ---------------------------------------------------------------- connection banner

const banner = $("connection");

/** The banner tells the state of the open room's socket, or of the activity stream when no room is open. */
function showConnection(source, { state, hadOpened, attempt, code }) {
  if (source !== (conversation ?? activity)) return;
  clearTimeout(connectingTimer);
  document.body.dataset.connection = state;
  if (state === "open" || state === "closed" || state === "refused") {
    banner.hidden = true;
    if (state === "open" && attempt !== 0 && !activity.isOpen) refreshLists(); // changed while we were away
    return;
  }
  const text = state === "connecting" ? "Connecting…" : "Reconnecting…";
  const show = () => {
    banner.textContent = text;
    banner.hidden = false;
  };
  if (state === "connecting") connectingTimer = setTimeout(show, SHOW_CONNECTING_AFTER_MS);
  else show();
  // 1008: the session was ended (signed out elsewhere, the account deactivated): to the sign-in page at once.
  // Refused before it ever opened, twice: perhaps the session ended (the upgrade answers 401/403)
  if (state === "reconnecting" && (code === 1008 || (hadOpened === false && attempt >= 2))) checkSession();
}

async function checkSession() {
  const result = await getJSON("/me");
  if (result.status === 401) signInAgain();
}

// ---------------------------------------------------------------- the sidebar

const thread = $("thread");
const placeholder = $("no-conversation");
const placeholderText = placeholder.querySelector("p");
const choosePrompt = placeholderText.textContent.trim();
const joinPrompt = $("join-prompt");

function paintPeer(user) {
  if (!current || current.peerId !== user.id) return;
  $("peer-dot").classList.toggle("online", user.online);
  $("peer-status").textContent = user.online ? "online" : "offline";
}

const people = new PeopleList({
  me,
  list: $("people"),
  empty: $("people-empty"),
  onChoose: (id) => navigate({ room: roomOf(me.id, id), peerId: id }),
  onChange: (user) => {
    paintPeer(user);
    paintTitle();
  },
  onUnauthorized: signInAgain,
  isLive: () => activity.isOpen,
});

const channels = new ChannelList({
  list: $("channels"),
  empty: $("channels-empty"),
  onChoose: (room) => navigate({ room }),
  onChange: paintTitle,
  onUnauthorized: signInAgain,
});

async function refreshLists() {
  await Promise.all([people.refresh(), channels.refresh()]);
  $("channels-section").hidden = !channels.available; // a server without channels: direct messages only
}
const nameOf = (id) => (id === me.id ? me.username : people.name(id));

const notifier = new Notifier({
  button: $("notify"),
  onOpen: (room) => navigate(targetOfRoom(room)),
});

/** The tab's title: the room on screen, and how many messages wait unread elsewhere. */
function paintTitle() {
  const unread = channels.totalUnread() + people.totalUnread();
  const here = current ? `${current.title} · chat` : "Chat · chat";
  document.title = unread > 0 ? `(${unread}) ${here}` : here;
}

const activity = new ActivityStream({
  snapshot(frame, first) {
    people.setOnlineSet(frame.online ?? []);
    let unknown = false;
    for (const room of frame.rooms ?? []) unknown = !(channels.snapshot(room) || people.snapshot(room)) || unknown;
    // a reconnect may have missed rooms added or removed, and mention counts: the lists give them again
    if (!first || unknown) refreshLists();
    paintTitle();
  },
  activity(frame) {
    const seen = channels.activity(frame) ?? people.activity(frame);
    if (seen === null) {
      // a room the lists do not show yet: added while they were loading, or someone new wrote to me
      (isChannel(frame.room) ? channels : people).refresh();
      return;
    }
    if (seen.fresh && frame.unread > 0 && (frame.mention || !isChannel(frame.room))) {
      notifier.tell(frame.room, frame.mention ? `You were mentioned in ${seen.name}` : `New message from ${seen.name}`);
    }
    paintTitle();
  },
  presence(frame) {
    people.setOnline(frame.user_id, Boolean(frame.online));
    panel.setOnline(frame.user_id, Boolean(frame.online));
  },
  roomAdded(channel) {
    channels.put(channel, { unread: channel.unread ?? 0, mentions: channel.mentions ?? 0 });
  },
  roomRemoved(room) {
    channels.remove(room);
    if (current?.room === room) removedFromCurrent();
  },
  state: (state) => showConnection(activity, state),
});

// ---------------------------------------------------------------- the open room

const attachments = new Attachments({
  form: $("composer"),
  input: $("message-input"),
  button: $("attach"),
  fileInput: $("file-input"),
  list: $("attachments"),
  room: () => conversation?.room ?? null,
  onError: (message) => composer.say(message),
});

const composer = new Composer({
  form: $("composer"),
  input: $("message-input"),
  counter: $("char-count"),
  error: $("composer-error"),
  note: $("composer-note"),
  maxLength: Number(document.body.dataset.maxLength),
  onSend: (content) => conversation?.send(content.trim() ? content : "", attachments.take()),
  hasFiles: () => attachments.ready,
  onTyping: () => conversation?.typed(),
  onEditLast: () => conversation?.editLast() ?? false,
});
$("reply-cancel").addEventListener("click", () => conversation?.startReply(null));

const panel = new MembersPanel({
  me,
  people: () => people.all(),
  onChannel: (channel) => showChannel(channel),
  onLeft: (room) => {
    channels.remove(room);
    navigate(null);
    placeholderText.textContent = "You left the channel.";
  },
});

composer.completer = new MentionCompleter({
  input: $("message-input"),
  list: $("mention-options"),
  candidates: () => (current?.peerId ? [people.get(current.peerId)].filter(Boolean) : panel.members()),
});

const createDialog = new CreateChannelDialog({
  people: () => people.all(),
  onCreated: (channel) => openJoined(channel),
});
const browseDialog = new BrowseDialog({
  onJoined: (channel) => openJoined(channel),
  onOpen: (room) => navigate({ room }),
});

function openJoined(channel) {
  channels.put(channel, { unread: channel.unread ?? 0, mentions: channel.mentions ?? 0 });
  navigate({ room: channel.room });
}

function targetOfRoom(room) {
  const dm = /^dm-(\d+)-(\d+)$/.exec(room);
  if (!dm) return { room };
  const peerId = Number(dm[1]) === me.id ? Number(dm[2]) : Number(dm[1]);
  return { room, peerId };
}

function targetFromUrl() {
  const query = new URLSearchParams(location.search);
  const room = query.get("room");
  if (room && (isChannel(room) || room.startsWith("dm-"))) return targetOfRoom(room);
  const id = Number(query.get("user_id"));
  return Number.isInteger(id) && id > 0 ? { room: roomOf(me.id, id), peerId: id } : null;
}

/** Open target (null: none), at messageId when given (a search result), else at its end. */
function navigate(target, messageId = null) {
  let url = "/chat";
  if (target?.peerId) url = `/chat?user_id=${target.peerId}`;
  else if (target) url = `/chat?room=${encodeURIComponent(target.room)}`;
  history.pushState(null, "", url);
  show(target, messageId);
}

function showPlaceholder(text, joinRoom = null) {
  current = null;
  thread.hidden = true;
  placeholder.hidden = false;
  placeholderText.textContent = text ?? choosePrompt;
  joinPrompt.hidden = joinRoom === null;
  joinPrompt.dataset.room = joinRoom ?? "";
  document.body.classList.remove("has-thread");
  paintTitle();
}

function showThread(title) {
  placeholder.hidden = true;
  thread.hidden = false;
  document.body.classList.add("has-thread");
  $("peer-name").textContent = title;
}

/** A channel as GET /rooms/<room> tells it to me (with my role): its sidebar entry and, when open, its header. */
function showChannel(channel) {
  if (channel.role) channels.put(channel);
  paintChannelHeader(channel);
}

/** The header and the composer of the open channel (also from a room frame, which says nothing of my role). */
function paintChannelHeader(channel) {
  if (current?.room !== channel.room) return;
  current.title = `#${channel.name}`;
  $("peer-name").textContent = channel.name;
  $("room-topic").textContent = channel.topic ?? "";
  $("room-topic").hidden = !channel.topic;
  composer.input.placeholder = `Message #${channel.name}`;
  if (channel.archived) composer.setReadOnly(ARCHIVED_NOTE);
  if (conversation) conversation.target.title = channel.name;
  paintTitle();
}

/** 4403, or room_removed: the history stays on screen, nothing more can be sent or received. */
function removedFromCurrent() {
  conversation?.socket.stop();
  composer.setReadOnly(REMOVED_NOTE);
  panel.clear();
  if (current) channels.remove(current.room);
}

async function show(target, messageId = null) {
  showing += 1;
  conversation?.close();
  conversation = null;
  current = null;
  panel.clear();
  banner.hidden = true;
  people.setCurrent(target?.peerId ? target.room : null);
  channels.setCurrent(target?.peerId ? null : (target?.room ?? null));
  if (target === null) return showPlaceholder(null);
  if (target.peerId) return showDirect(target, messageId);
  return showChannelRoom(target, messageId);
}

async function showDirect(target, messageId) {
  const peer = people.get(target.peerId);
  if (!peer) return showPlaceholder("There is no one with that id here. Pick someone from the list.");
  current = { ...target, title: peer.username };
  showThread(peer.username);
  $("peer-name").classList.remove("channel-name");
  $("peer-dot").hidden = false;
  $("peer-status").hidden = false;
  $("room-topic").hidden = true;
  composer.prepare(`Message ${peer.username}`);
  paintPeer(peer);
  await openConversation({ room: target.room, title: peer.username, peer }, people, messageId);
}

async function showChannelRoom(target, messageId) {
  const ticket = showing;
  const { details, result } = await panel.load(target.room);
  if (ticket !== showing) return; // another room was chosen meanwhile
  if (!details) {
    if (result.status === 401) return signInAgain();
    const text = result.status === 404 ? "There is no such channel, or it is private and you are not in it." : explain(result);
    return showPlaceholder(text);
  }
  if (!details.role) {
    return showPlaceholder(`#${details.name} is a public channel you are not in. Join it to read and write.`, target.room);
  }
  current = { ...target, title: `#${details.name}` };
  showThread(details.name);
  $("peer-name").classList.add("channel-name");
  $("peer-dot").hidden = true;
  $("peer-status").hidden = true;
  composer.prepare(`Message #${details.name}`);
  panel.show(details); // and so showChannel(details)
  await openConversation({ room: target.room, title: details.name }, channels, messageId);
}

/** Open a room's conversation; list is the sidebar list (people or channels) that counts its unread messages. */
async function openConversation(target, list, messageId = null) {
  paintTitle();
  conversation = new Conversation({
    me,
    target,
    names: (id) => nameOf(id) ?? panel.members().find((member) => member.id === id)?.username ?? null,
    isOwner: () => panel.room === target.room && panel.isOwner, // the members panel knows my role in the open channel
    sidebar: { setUnread: (n) => list.setUnread(target.room, n), addUnread: () => list.addUnread(target.room) },
    composer,
    ui: {
      scroller: $("messages"),
      list: $("message-list"),
      historyStatus: $("history-status"),
      typing: $("typing"),
      jump: $("jump"),
      reply: $("reply-bar"),
    },
    on: {
      connection: (state) => showConnection(conversationOf(target.room), state),
      unauthorized: signInAgain,
      presence: (id, online) => {
        people.setOnline(id, online);
        panel.setOnline(id, online);
      },
      removed: removedFromCurrent,
      room: (channel) => {
        paintChannelHeader(channel);
        panel.reload(); // and so the sidebar entry, with my own role and counts
      },
      member: () => panel.reload(),
      liveCounts: () => activity.isOpen,
    },
  });
  if (!composer.input.disabled && messageId === null) composer.input.focus();
  await conversation.open(messageId);
}

const conversationOf = (room) => (conversation?.room === room ? conversation : null);

// ---------------------------------------------------------------- search

function titleOfRoom(room) {
  const target = targetOfRoom(room);
  if (target.peerId) return `With ${people.get(target.peerId)?.username ?? "someone"}`;
  const channel = channels.get(room);
  return channel ? `#${channel.name}` : room;
}

new SearchBox({
  ui: {
    form: $("search"),
    input: $("search-input"),
    panel: $("search-panel"),
    list: $("search-groups"),
    status: $("search-status"),
    more: $("search-more"),
  },
  roomTitle: titleOfRoom,
  onOpen: (message) => navigate(targetOfRoom(message.room), message.id),
  onUnauthorized: signInAgain,
});

// ---------------------------------------------------------------- page-wide events

$("back").addEventListener("click", (event) => {
  event.preventDefault();
  navigate(null);
});
$("jump").addEventListener("click", () => conversation?.scrollToBottom());
const channelButtons = [
  [$("new-channel"), createDialog],
  [$("browse-channels"), browseDialog],
];
for (const [button, dialog] of channelButtons) button.addEventListener("click", () => dialog.open());
joinPrompt.addEventListener("click", async () => {
  const channel = await joinChannel(joinPrompt.dataset.room, (text) => {
    placeholderText.textContent = text;
  });
  if (channel) openJoined(channel);
});
$("logout").addEventListener("submit", async (event) => {
  event.preventDefault(); // the form works without this script too; with it, the request is JSON like the rest
  signingOut = true;
  await postJSON("/logout");
  location.assign("/login-page");
});
window.addEventListener("popstate", () => show(targetFromUrl()));
document.addEventListener("visibilitychange", () => {
  if (document.visibilityState !== "visible") return;
  conversation?.markSeen();
  if (!activity.isOpen) refreshLists();
});
window.addEventListener("beforeunload", (event) => {
  if (hasUnsent()) event.preventDefault(); // the browser asks before dropping messages not yet sent
});

await refreshLists();
for (const [button] of channelButtons) button.disabled = false; // off until the people to pick from are known
activity.start();
await show(targetFromUrl());
