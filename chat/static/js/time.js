// Message times, in the viewer's own time zone and locale (the server sends UTC ISO 8601).

const clock = new Intl.DateTimeFormat(undefined, { hour: "numeric", minute: "2-digit" });
const thisYear = new Intl.DateTimeFormat(undefined, {
  weekday: "short", day: "numeric", month: "short", hour: "numeric", minute: "2-digit",
});
const anyYear = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });
const complete = new Intl.DateTimeFormat(undefined, { dateStyle: "full", timeStyle: "medium" });

const sameDay = (a, b) => a.toDateString() === b.toDateString();

/** "14:03" today, "Tue 3 Nov, 14:03" this year, "3 Nov 2025, 14:03" before. */
export function shortTime(date, now = new Date()) {
  if (sameDay(date, now)) return clock.format(date);
  return date.getFullYear() === now.getFullYear() ? thisYear.format(date) : anyYear.format(date);
}

/** The full date and time, for a tooltip. */
export const fullTime = (date) => complete.format(date);
