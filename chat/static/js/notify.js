// Desktop notifications (the browser's Notification API) for mentions and direct messages while the tab is
// hidden. Permission is asked once, when the person clicks the offer; the offer is never shown again after that.
const ASKED = "chat.notifications-asked";

export class Notifier {
  constructor({ button, onOpen }) {
    this.button = button;
    this.onOpen = onOpen;
    this.supported = "Notification" in window;
    button.hidden = !this.supported || Notification.permission !== "default" || localStorage.getItem(ASKED) !== null;
    button.addEventListener("click", async () => {
      localStorage.setItem(ASKED, "1");
      button.hidden = true;
      await Notification.requestPermission();
    });
  }

  /** Tell of a new message in a room, unless the page is on screen or notifications are off. */
  tell(room, text) {
    if (!this.supported || Notification.permission !== "granted" || document.visibilityState === "visible") return;
    const notification = new Notification(text, { tag: room, icon: "/static/favicon.svg" });
    notification.addEventListener("click", () => {
      window.focus();
      notification.close();
      this.onOpen(room);
    });
  }
}
