// One session stream per tab, reconnected by us rather than by EventSource.
//
// A native EventSource retries by itself after a dropped connection, but gives up forever
// after any non-200 answer (a proxy's 502, a restarting server's refused connection
// followed by an error page). So on every error we close it and open a fresh one after a
// backoff with jitter, passing the cursor of the last frame the page applied: the server
// resumes with a seek, and the fold ignores anything at or before that cursor anyway.

import { toLogin } from "/static/api.js";

const RECORD_TYPES = [
  "run.started", "text.delta", "reasoning.delta", "tool.started", "tool.output", "tool.finished",
  "title", "usage", "status", "approval.requested", "approval.resolved", "question.asked", "question.answered",
  "run.completed", "run.failed", "run.cancelled", "run.interrupted",
  "record.damaged", // a line that is not a record: its cursor still counts (PROTOCOL 1.4)
];
const BACKOFF_FIRST_MS = 500;
const BACKOFF_MAX_MS = 8000;
// The server sends `: ping` at least every 15 s; twice that without a byte means a dead link.
const SILENCE_LIMIT_MS = 35000;

/** Delay before reconnect attempt `attempt` (0-based): exponential, capped, full jitter on half. */
export function backoffDelay(attempt, random = Math.random) {
  const ceiling = Math.min(BACKOFF_MAX_MS, BACKOFF_FIRST_MS * 2 ** attempt);
  return Math.round(ceiling / 2 + random() * (ceiling / 2));
}

export class SessionStream {
  /**
   * @param {string} sessionId
   * @param {object} handlers  onRecord(id, record), onSession(event, data), onState(state),
   *                           cursor() -> the last applied cursor or null, onGone()
   */
  constructor(sessionId, handlers) {
    this.sessionId = sessionId;
    this.handlers = handlers;
    this.source = null;
    this.attempt = 0;
    this.timer = null;
    this.watchdog = null;
    this.fedAt = 0;
    this.closed = false;
    this.state = null;
  }

  open() {
    if (this.closed) return;
    const cursor = this.handlers.cursor();
    const query = cursor ? `?cursor=${encodeURIComponent(cursor)}` : "";
    const source = new EventSource(`/api/sessions/${this.sessionId}/events${query}`);
    this.source = source;
    this._setState(this.attempt === 0 ? "connecting" : "reconnecting");
    source.onopen = () => {
      if (source !== this.source) return;
      this.attempt = 0;
      this._setState("open");
      this._feed();
    };
    source.onerror = () => {
      if (source === this.source) this._retry();
    };
    const onRecord = (event) => {
      if (source !== this.source) return;
      this._feed();
      let record;
      try {
        record = JSON.parse(event.data);
      } catch {
        return;
      }
      this.handlers.onRecord(event.lastEventId, record);
    };
    for (const type of RECORD_TYPES) source.addEventListener(type, onRecord);
    // EventSource hands a named event only to listeners of that name: a record type missing
    // from RECORD_TYPES never reaches the page. The server names an event "message" only
    // when a type could not be a frame's event name.
    source.addEventListener("message", onRecord);
    for (const type of ["session.updated", "session.deleted"]) {
      source.addEventListener(type, (event) => {
        if (source !== this.source) return;
        this._feed();
        this.handlers.onSession(type, JSON.parse(event.data));
      });
    }
  }

  close() {
    this.closed = true;
    this._stop();
    this._setState("closed");
  }

  /** Drop the current connection now and reconnect (e.g. the browser came back online). */
  kick() {
    if (this.closed) return;
    this.attempt = 0;
    this._stop();
    this.open();
  }

  /** The link is known to be gone (the browser went offline): drop it and back off. */
  interrupt() {
    if (!this.closed && this.source !== null) this._retry();
  }

  /** Something arrived. Only a time is noted: a busy stream brings a thousand frames a second. */
  _feed() {
    this.fedAt = Date.now();
    if (this.watchdog === null) this._watch(SILENCE_LIMIT_MS);
  }

  _watch(delay) {
    this.watchdog = setTimeout(() => {
      const silent = Date.now() - this.fedAt;
      if (silent >= SILENCE_LIMIT_MS) this._retry();
      else this._watch(SILENCE_LIMIT_MS - silent);
    }, delay);
  }

  _stop() {
    clearTimeout(this.timer);
    clearTimeout(this.watchdog);
    this.timer = null;
    this.watchdog = null;
    if (this.source) {
      this.source.close();
      this.source = null;
    }
  }

  async _retry() {
    this._stop();
    if (this.closed) return;
    this._setState("reconnecting");
    const delay = backoffDelay(this.attempt);
    this.attempt += 1;
    this.timer = setTimeout(async () => {
      // An EventSource never shows us the status of a refused request: ask once, so a
      // deleted session stops the loop instead of retrying forever. One run is enough to know.
      try {
        const response = await fetch(`/api/sessions/${this.sessionId}?limit=1`, { method: "GET", cache: "no-store" });
        if (response.status === 404) {
          this.handlers.onGone();
          return;
        }
        if (response.status === 401) {
          toLogin();
          return;
        }
      } catch {
        // Still unreachable: the stream attempt below fails too and backs off again.
      }
      if (!this.closed && this.source === null) this.open();
    }, delay);
  }

  _setState(state) {
    if (state === this.state) return;
    this.state = state;
    this.handlers.onState(state);
  }
}
