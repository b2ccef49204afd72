// Talking to the JSON API. State-changing requests must be JSON (the server refuses anything else), and the
// browser adds the Origin header the server checks. Every call resolves (never throws) to
// {ok, status, data, headers}; a network failure is status 0 with a readable message.

const OFFLINE = { error: "network", message: "Cannot reach the server. Check your connection and try again." };

export async function request(method, url, body) {
  const options = { method, headers: { Accept: "application/json" }, credentials: "same-origin" };
  if (body !== undefined) {
    options.headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(url, options);
  } catch {
    return { ok: false, status: 0, data: OFFLINE, headers: new Headers() };
  }
  const data = response.status === 204 ? {} : await response.json().catch(() => ({}));
  return { ok: response.ok, status: response.status, data, headers: response.headers };
}

export const getJSON = (url) => request("GET", url);
export const postJSON = (url, body) => request("POST", url, body ?? {});
export const patchJSON = (url, body) => request("PATCH", url, body);
export const deleteJSON = (url) => request("DELETE", url);

/** Seconds to wait from a Retry-After header (delta-seconds or an HTTP date), at least 1. */
export function retryAfterSeconds(headers) {
  const value = headers.get("Retry-After");
  if (!value) return null;
  const seconds = /^\d+$/.test(value.trim()) ? Number(value) : (Date.parse(value) - Date.now()) / 1000;
  return Number.isFinite(seconds) ? Math.max(1, Math.ceil(seconds)) : null;
}
