// The API as the page uses it. The bearer token lives in this tab's sessionStorage (gone
// when the tab closes) and goes out only as an Authorization header to this origin: never
// in a URL, a cookie or a log. Server-sent events are read with fetch for the same reason
// (EventSource cannot send a header).

const KEY = "stoker.token";

export class ApiError extends Error {
  constructor(status, body) {
    super(body && body.error ? body.error : `HTTP ${status}`);
    this.status = status;
    this.body = body;
  }
}

export function token() { return sessionStorage.getItem(KEY); }
export function setToken(value) { sessionStorage.setItem(KEY, value); }
export function forget() { sessionStorage.removeItem(KEY); }

const listeners = new Set();
/** Called when the API refuses the token (401): the page shows the sign-in form. */
export function onSignedOut(listener) { listeners.add(listener); }

function headers(extra = {}) {
  const value = token();
  return value ? { ...extra, Authorization: `Bearer ${value}` } : extra;
}

export async function api(path, { method = "GET", body, signal } = {}) {
  const response = await fetch(path, {
    method,
    signal,
    headers: headers(body === undefined ? {} : { "Content-Type": "application/json" }),
    body: body === undefined ? undefined : JSON.stringify(body),
    cache: "no-store",
  });
  const text = await response.text();
  const parsed = text ? JSON.parse(text) : null;
  if (response.status === 401) {
    forget();
    for (const listener of listeners) listener();
  }
  if (!response.ok) throw new ApiError(response.status, parsed);
  return parsed;
}

export function query(params) {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value !== null && value !== undefined && value !== "") search.set(key, value);
  }
  const text = search.toString();
  return text ? `?${text}` : "";
}

/**
 * Follow /v1/events (every transition and notification of the caller's team's jobs).
 * `onEvent(cloudEvent)` for each event, `onState("open" | "closed")` as the stream opens
 * and drops; it reconnects after a drop (1 s, doubling to 30 s) until `signal` aborts.
 */
export function followEvents({ onEvent, onState, signal }) {
  let delay = 1000;
  const run = async () => {
    while (!signal.aborted) {
      try {
        const response = await fetch(`/v1/events${query({ all: "true" })}`, {
          headers: headers({ Accept: "text/event-stream" }),
          signal,
          cache: "no-store",
        });
        if (response.status === 401) {
          forget();
          for (const listener of listeners) listener();
          return;
        }
        if (!response.ok || !response.body) throw new Error(`HTTP ${response.status}`);
        onState("open");
        delay = 1000;
        await readStream(response.body, onEvent);
      } catch (error) {
        if (signal.aborted) return;
      }
      onState("closed");
      await new Promise((resolve) => setTimeout(resolve, delay));
      delay = Math.min(delay * 2, 30000);
    }
  };
  run();
}

async function readStream(body, onEvent) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const data = block
        .split("\n")
        .filter((line) => line.startsWith("data:"))
        .map((line) => line.slice(5).trimStart())
        .join("\n");
      if (data) {
        try { onEvent(JSON.parse(data)); } catch (error) { /* not JSON: not ours */ }
      }
    }
  }
}

/** The W3C trace id of a CloudEvent's `traceparent` (distributed tracing extension). */
export function traceId(event) {
  const match = /^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$/.exec(event.traceparent || "");
  return match ? match[1] : null;
}
