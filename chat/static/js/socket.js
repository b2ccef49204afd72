// A websocket that keeps itself connected: reconnects with exponential backoff and random jitter (so that a
// restarted server is not hit by every client at the same instant). A room's socket resumes with
// ?after=<last id seen>, which makes the server replay whatever was missed; the caller's activity stream
// (/ws/me) starts over with a fresh snapshot. Close code 4403 (no longer a member) is final: no reconnect.

const FIRST_DELAY_MS = 500;
const MAX_DELAY_MS = 10_000;
const STABLE_MS = 5_000; // a connection that lasted this long starts the backoff over
export const NOT_A_MEMBER = 4403;

export class LiveSocket {
  /**
   * @param path "/ws/me"
   * @param query () => the query string to connect with ("" for none)
   * @param onFrame (frame) => void, for every JSON frame from the server
   * @param onState ({state, attempt, retryInMs, code}) => void; state is connecting | open | reconnecting |
   *   closed | refused (closed with 4403: stays closed)
   */
  constructor(path, { query = () => "", onFrame, onState }) {
    this.path = path;
    this.query = query;
    this.onFrame = onFrame;
    this.onState = onState;
    this.ws = null;
    this.failures = 0;
    this.timer = null;
    this.stopped = false;
    this.reconnectNow = () => this.retrySoon();
  }

  get isOpen() {
    return this.ws !== null && this.ws.readyState === WebSocket.OPEN;
  }

  start() {
    window.addEventListener("online", this.reconnectNow);
    this.connect();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    window.removeEventListener("online", this.reconnectNow);
    if (this.ws) this.ws.close(1000, "conversation closed");
    this.ws = null;
    this.onState({ state: "closed" });
  }

  /** Send a frame now; false (and nothing sent) when not connected. */
  send(frame) {
    if (!this.isOpen) return false;
    this.ws.send(JSON.stringify(frame));
    return true;
  }

  url() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const query = this.query();
    return `${scheme}//${location.host}${this.path}${query ? `?${query}` : ""}`;
  }

  connect() {
    clearTimeout(this.timer);
    this.timer = null;
    this.onState({ state: this.failures ? "reconnecting" : "connecting", attempt: this.failures });
    const ws = new WebSocket(this.url());
    this.ws = ws;
    let openedAt = null;
    ws.addEventListener("open", () => {
      openedAt = Date.now();
      this.onState({ state: "open", attempt: this.failures });
    });
    ws.addEventListener("message", (event) => {
      let frame;
      try {
        frame = JSON.parse(event.data);
      } catch {
        return; // not ours to understand
      }
      this.onFrame(frame);
    });
    ws.addEventListener("close", (event) => {
      if (this.ws !== ws || this.stopped) return;
      this.ws = null;
      if (event.code === NOT_A_MEMBER) {
        this.stop();
        this.onState({ state: "refused", code: event.code });
        return;
      }
      if (openedAt !== null && Date.now() - openedAt >= STABLE_MS) this.failures = 0;
      this.failures += 1;
      this.schedule(event, openedAt !== null);
    });
  }

  schedule(closeEvent, hadOpened) {
    const ceiling = Math.min(MAX_DELAY_MS, FIRST_DELAY_MS * 2 ** (this.failures - 1));
    const delay = Math.round(ceiling / 2 + (Math.random() * ceiling) / 2);
    this.onState({ state: "reconnecting", attempt: this.failures, retryInMs: delay, code: closeEvent.code, hadOpened });
    this.timer = setTimeout(() => this.connect(), delay);
  }

  /** The network came back: skip the rest of the wait. */
  retrySoon() {
    if (this.stopped || this.ws !== null) return;
    this.connect();
  }
}

/** One room's socket, resuming after the highest message id shown so far (lastSeenId()). */
export class RoomSocket extends LiveSocket {
  constructor(room, { lastSeenId, onFrame, onState }) {
    super(`/ws/rooms/${encodeURIComponent(room)}`, {
      query: () => `after=${encodeURIComponent(lastSeenId())}`,
      onFrame,
      onState,
    });
    this.room = room;
  }
}
