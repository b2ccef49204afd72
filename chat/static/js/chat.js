// The chat page: wires the people list, the open conversation, the composer and the connection banner.
import { getJSON, postJSON } from "./api.js";
import { Composer } from "./composer.js";
import { Conversation, hasUnsent } from "./conversation.js";
import { PeopleList } from "./people.js";
import { SearchBox } from "./search.js";

const $ = (id) => document.getElementById(id);
const me = { id: Number(document.body.dataset.meId), username: document.body.dataset.meName };
const SHOW_CONNECTING_AFTER_MS = 1_000; // a quick first connection is not worth a flash of text

let conversation = null;
let connectingTimer = null;

function signInAgain() {
  const here = location.pathname + location.search;
  location.assign(`/login-page?next=${encodeURIComponent(here)}`);
}

// ---------------------------------------------------------------- connection banner

const banner = $("connection");

function showConnection({ state, hadOpened, attempt, code }) {
  clearTimeout(connectingTimer);
  document.body.dataset.connection = state;
  if (state === "open" || state === "closed") {
    banner.hidden = true;
    if (state === "open" && attempt !== 0) people.refresh(); // presence may have changed while we were away
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

// ---------------------------------------------------------------- people and the open conversation

const thread = $("thread");
const placeholder = $("no-conversation");
const choosePrompt = placeholder.textContent.trim();

function paintPeer(user) {
  if (!conversation || conversation.peer.id !== user.id) return;
  $("peer-dot").classList.toggle("online", user.online);
  $("peer-status").textContent = user.online ? "online" : "offline";
}

const people = new PeopleList({
  list: $("people"),
  empty: $("people-empty"),
  onChoose: (id) => navigate(id),
  onChange: paintPeer,
  onUnauthorized: signInAgain,
});

const composer = new Composer({
  form: $("composer"),
  input: $("message-input"),
  counter: $("char-count"),
  error: $("composer-error"),
  maxLength: Number(document.body.dataset.maxLength),
  onSend: (content) => conversation?.send(content),
  onTyping: () => conversation?.typed(),
});

function peerFromUrl() {
  const id = Number(new URLSearchParams(location.search).get("user_id"));
  return Number.isInteger(id) && id > 0 ? id : null;
}

function navigate(peerId, messageId = null) {
  history.pushState(null, "", peerId === null ? "/chat" : `/chat?user_id=${peerId}`);
  show(peerId, messageId);
}

function showPlaceholder(text) {
  thread.hidden = true;
  placeholder.hidden = false;
  placeholder.firstElementChild.textContent = text ?? choosePrompt;
  document.body.classList.remove("has-thread");
}

/** Show the conversation with peerId (none: null), at messageId when given (a search result), else at its end. */
async function show(peerId, messageId = null) {
  conversation?.close();
  conversation = null;
  showConnection({ state: "closed" });
  people.setCurrent(peerId);
  if (peerId === null) return showPlaceholder(null);
  const peer = people.get(peerId);
  if (!peer) return showPlaceholder("There is no one with that id here. Pick someone from the list.");
  placeholder.hidden = true;
  thread.hidden = false;
  document.body.classList.add("has-thread");
  $("peer-name").textContent = peer.username;
  document.title = `${peer.username} · chat`;
  composer.prepare(peer.username);
  conversation = new Conversation({
    me,
    peer,
    people,
    composer,
    ui: {
      scroller: $("messages"),
      list: $("message-list"),
      historyStatus: $("history-status"),
      typing: $("typing"),
      jump: $("jump"),
    },
    onConnection: showConnection,
    onUnauthorized: signInAgain,
  });
  paintPeer(peer);
  if (messageId === null) $("message-input").focus();
  await conversation.open(messageId);
}

// ---------------------------------------------------------------- search

/** The other member of a direct room "dm-a-b". */
const peerOfRoom = (room) => {
  const [low, high] = room.slice(3).split("-").map(Number);
  return low === me.id ? high : low;
};

new SearchBox({
  ui: {
    form: $("search"),
    input: $("search-input"),
    panel: $("search-panel"),
    list: $("search-groups"),
    status: $("search-status"),
    more: $("search-more"),
  },
  roomTitle: (room) => `With ${people.get(peerOfRoom(room))?.username ?? "someone"}`,
  onOpen: (message) => navigate(peerOfRoom(message.room), message.id),
  onUnauthorized: signInAgain,
});

// ---------------------------------------------------------------- page-wide events

$("back").addEventListener("click", (event) => {
  event.preventDefault();
  navigate(null);
});
$("jump").addEventListener("click", () => conversation?.scrollToBottom());
$("logout").addEventListener("submit", async (event) => {
  event.preventDefault(); // the form works without this script too; with it, the request is JSON like the rest
  await postJSON("/logout");
  location.assign("/login-page");
});
window.addEventListener("popstate", () => show(peerFromUrl()));
document.addEventListener("visibilitychange", () => {
  if (document.visibilityState !== "visible") return;
  conversation?.markSeen();
  people.refresh();
});
window.addEventListener("beforeunload", (event) => {
  if (hasUnsent()) event.preventDefault(); // the browser asks before dropping messages not yet sent
});

await people.start();
await show(peerFromUrl());
