// The caller's activity stream, GET /ws/me: a snapshot (the truth, again after every reconnect), then activity
// in every room I am in, presence, and channels added or removed. It keeps the sidebar true without polling.
import { LiveSocket } from "./socket.js";

export class ActivityStream {
  /**
   * @param handlers {snapshot(frame, first), activity(frame), presence(frame), roomAdded(channel),
   *   roomRemoved(room), state(state)}
   */
  constructor(handlers) {
    this.handlers = handlers;
    this.snapshots = 0;
    this.socket = new LiveSocket("/ws/me", {
      onFrame: (frame) => this.receive(frame),
      onState: (state) => handlers.state(state),
    });
  }

  get isOpen() {
    return this.socket.isOpen && this.snapshots > 0;
  }

  start() {
    this.socket.start();
  }

  receive(frame) {
    switch (frame.type) {
      case "snapshot":
        this.snapshots += 1;
        return this.handlers.snapshot(frame, this.snapshots === 1);
      case "activity":
        return this.handlers.activity(frame);
      case "presence":
        return this.handlers.presence(frame);
      case "room_added":
        return frame.room && this.handlers.roomAdded(frame.room);
      case "room_removed":
        return this.handlers.roomRemoved(frame.room);
      default:
        return undefined; // a newer server's frame
    }
  }
}
