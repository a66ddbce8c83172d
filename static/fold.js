// The fold: journal records -> session-view messages. Pure; no DOM, no network.
//
// A record-by-record mirror of hermes_web/fold.py, so a run looks the same folded by the
// server (session view, compaction) and by the browser (live frames). The golden fixture
// test (tests/browser/test_fold_golden.py) holds the two to identical output.

export const TERMINAL_STATUS = {
  "run.completed": "completed",
  "run.failed": "failed",
  "run.cancelled": "cancelled",
  "run.interrupted": "interrupted",
};

export function attachmentUrl(sessionId, attachmentId) {
  return `/api/sessions/${sessionId}/attachments/${attachmentId}`;
}

// Legacy `[Attached files: /abs/path, ...]` markers in user text, as
// hermes_web/attachment_markers.py and hermes_web/sniff.py read them.
const MARKER_PATTERN = /\[Attached files: ([^\]\n]*)\]/g;
const MIME_BY_EXTENSION = {
  ".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".gif": "image/gif",
  ".webp": "image/webp", ".pdf": "application/pdf", ".zip": "application/zip",
  ".txt": "text/plain", ".text": "text/plain", ".log": "text/plain",
  ".md": "text/markdown", ".markdown": "text/markdown", ".json": "application/json", ".csv": "text/csv",
};

export function attachedFilePaths(text) {
  if (typeof text !== "string" || !text.includes("[Attached files:")) return [];
  const paths = [];
  for (const match of text.matchAll(MARKER_PATTERN)) {
    for (const raw of match[1].split(",")) {
      const path = raw.trim();
      if (path.startsWith("/") && !paths.includes(path)) paths.push(path);
    }
  }
  return paths;
}

function extension(name) {
  const lower = name.toLowerCase();
  const dot = lower.lastIndexOf(".");
  return dot > 0 && /[^.]/.test(lower.slice(0, dot)) ? lower.slice(dot) : "";
}

// Python's urllib.parse.quote(safe=""): encodeURIComponent leaves !'()* alone, quote does not.
const quote = (value) => encodeURIComponent(value).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);

export function legacyAttachmentChips(sessionId, text) {
  return attachedFilePaths(text).map((path) => {
    const trimmed = path.replace(/\/+$/, "");
    const name = trimmed.slice(trimmed.lastIndexOf("/") + 1) || path;
    return {
      id: null,
      name,
      mime: MIME_BY_EXTENSION[extension(name)] || "application/octet-stream",
      size: null,
      url: `/api/file/raw?session_id=${quote(sessionId)}&path=${quote(path)}`,
    };
  });
}

const get = (record, key, fallback = null) => (record[key] === undefined ? fallback : record[key]);
// A record's `choices`: its strings, in order (anything else is not a choice).
const strings = (value) => (Array.isArray(value) ? value.filter((item) => typeof item === "string") : []);
const copyRequest = (item) => ({ ...item, choices: [...item.choices] });

/** One run's records folded into its user and assistant turn; incremental like RunFold. */
export class RunFold {
  // Seeded with the run a frame names, so a run whose first line is damaged still shows.
  constructor(runId = null, sessionId = null) {
    this.runId = runId;
    this.sessionId = sessionId;
    this.started = null;
    this.user = null; // set instead of `started` when seeded from a session view
    this.status = null;
    this.title = null;
    this.error = null;
    this.reason = null;
    this.cancelledBy = null;
    this.usage = null;
    this.finishedAt = null;
    this.text = "";
    this.reasoning = "";
    this.toolCalls = new Map(); // call_id -> call, in the order they began
    this.approvals = new Map(); // approval_id -> approval, in the order they were asked
    this.questions = new Map(); // question_id -> question, likewise
    this.activity = null; // what the running turn waits on now (the last status record)
    this.records = 0;
    this.damaged = 0;
    this.offset = 0;
    this.agent = null;
    this.createdAt = null;
  }

  /** A fold that continues a run from the session view's `[user, assistant]` pair. */
  static fromMessages(user, assistant) {
    const run = new RunFold();
    run.runId = assistant.run_id;
    run.user = structuredClone(user);
    run.status = assistant.status;
    run.text = assistant.text || "";
    run.reasoning = assistant.reasoning || "";
    for (const call of assistant.tool_calls || []) run.toolCalls.set(call.id, { ...call });
    for (const item of assistant.approvals || []) run.approvals.set(item.id, copyRequest(item));
    for (const item of assistant.questions || []) run.questions.set(item.id, copyRequest(item));
    run.agent = assistant.agent ?? null;
    run.error = assistant.error ?? null;
    run.reason = assistant.reason ?? null;
    run.usage = assistant.usage ?? null;
    run.createdAt = assistant.created_at ?? null;
    run.finishedAt = assistant.finished_at ?? null;
    run.offset = parseCursor(assistant.cursor)?.offset ?? 0;
    run.damaged = assistant.damaged || 0;
    run.activity = assistant.activity ? { ...assistant.activity } : null;
    return run;
  }

  get finished() {
    return this.status !== null && this.status !== "running";
  }

  /** Fold one record that ends at journal byte `endOffset`; unknown types are ignored. */
  apply(record, endOffset) {
    this.records += 1;
    this.offset = endOffset;
    const kind = record === null ? "record.damaged" : record.type;
    if (kind === "record.damaged") {
      // A line that is not a record (PROTOCOL 1.4): skipped and counted.
      this.damaged += 1;
      if (this.status === null) this.status = "running";
      return;
    }
    if (kind === "run.started") {
      this.runId = get(record, "run_id") || this.runId;
      this.sessionId = get(record, "session_id") || this.sessionId;
      this.started = record;
      this.user = null;
      this.agent = get(record, "agent");
      this.createdAt = get(record, "ts");
      if (this.status === null) this.status = "running";
    } else if (kind === "text.delta") {
      this.text += get(record, "text", "") || "";
    } else if (kind === "reasoning.delta") {
      this.reasoning += get(record, "text", "") || "";
    } else if (kind === "tool.started") {
      const callId = get(record, "call_id");
      // Map.set keeps a re-used id in its first position, as a Python dict does.
      this.toolCalls.set(callId, {
        id: callId,
        name: get(record, "name"),
        args: get(record, "args"),
        status: "running",
        result: null,
        is_error: false,
        duration_ms: null,
      });
    } else if (kind === "status") {
      const state = get(record, "state");
      if (typeof state === "string" && state) {
        const detail = get(record, "detail");
        this.activity = {
          state,
          detail: typeof detail === "string" ? detail : "",
          call_id: get(record, "call_id"),
          since: get(record, "ts"),
        };
      }
    } else if (kind === "tool.output") {
      const call = this.toolCalls.get(get(record, "call_id"));
      if (call) call.result = (call.result || "") + get(record, "text", "");
    } else if (kind === "tool.finished") {
      this.settleActivity("running_tool", get(record, "call_id"));
      const call = this.toolCalls.get(get(record, "call_id"));
      if (call) {
        const isError = Boolean(record.is_error);
        call.status = isError ? "error" : "done";
        call.result = get(record, "result");
        call.is_error = isError;
        call.duration_ms = get(record, "duration_ms");
      }
    } else if (kind === "approval.requested") {
      const approvalId = get(record, "approval_id");
      this.approvals.set(approvalId, {
        id: approvalId,
        call_id: get(record, "call_id"),
        title: get(record, "title"),
        detail: get(record, "detail"),
        choices: strings(record.choices),
        status: "pending",
        choice: null,
        by: null,
      });
    } else if (kind === "approval.resolved") {
      this.settleActivity("waiting_for_approval");
      const approval = this.approvals.get(get(record, "approval_id"));
      if (approval) Object.assign(approval, { status: "resolved", choice: get(record, "choice"), by: get(record, "by") });
    } else if (kind === "question.asked") {
      const questionId = get(record, "question_id");
      this.questions.set(questionId, {
        id: questionId,
        call_id: get(record, "call_id"),
        question: get(record, "question"),
        choices: strings(record.choices),
        status: "pending",
        answer: null,
        by: null,
      });
    } else if (kind === "question.answered") {
      this.settleActivity("waiting_for_answer");
      const question = this.questions.get(get(record, "question_id"));
      if (question) Object.assign(question, { status: "resolved", answer: get(record, "answer"), by: get(record, "by") });
    } else if (kind === "title") {
      this.title = get(record, "title");
    } else if (kind === "usage") {
      this.usage = { input_tokens: get(record, "input_tokens"), output_tokens: get(record, "output_tokens") };
    } else if (kind in TERMINAL_STATUS) {
      this.status = TERMINAL_STATUS[kind];
      this.finishedAt = get(record, "ts");
      if (kind === "run.failed") this.error = get(record, "error");
      else if (kind === "run.interrupted") this.reason = get(record, "reason");
      else if (kind === "run.cancelled") this.cancelledBy = get(record, "by");
    }
    if (this.finished) {
      this.activity = null; // nothing is awaited any more
      // A terminal run has no running tool left: the card shows how it ended.
      for (const call of this.toolCalls.values()) {
        if (call.status === "running") {
          call.status = "error";
          call.is_error = true;
          if (call.result === null || call.result === undefined) call.result = `not finished: run ${this.status}`;
        }
      }
      // Nobody can answer a request of a run that ended (its server died) any more.
      for (const request of [...this.approvals.values(), ...this.questions.values()]) {
        if (request.status === "pending") request.status = "expired";
      }
    }
  }

  /** The wait the activity names is over (a tool finished, a person decided). */
  settleActivity(state, callId = undefined) {
    const activity = this.activity;
    if (activity !== null && activity.state === state && (callId === undefined || activity.call_id === callId)) {
      this.activity = null;
    }
  }

  /** The run as `[userMessage, assistantMessage]` (fresh objects). */
  messages() {
    if (this.started === null && this.user === null && !(this.damaged && this.runId)) return [];
    const runId = this.runId;
    let user = this.user;
    if (user === null) {
      const started = this.started || {};
      const turn = started.user || {};
      user = {
        id: turn.id || `${runId}-user`,
        role: "user",
        run_id: runId,
        text: turn.text === undefined ? "" : turn.text,
        attachments: (turn.attachments || [])
          .filter((item) => item !== null && typeof item === "object" && !Array.isArray(item))
          .map((item) => ({
            id: get(item, "id"),
            name: get(item, "name"),
            mime: get(item, "mime"),
            size: get(item, "size"),
            url: attachmentUrl(this.sessionId, get(item, "id")),
          }))
          // Older transcripts name their files only in a marker in the text: show those too.
          .concat(legacyAttachmentChips(this.sessionId, turn.text)),
        created_at: get(started, "ts"),
      };
      if (started.replaces) user.replaces = started.replaces;
    }
    const assistant = {
      id: `${runId}-assistant`,
      role: "assistant",
      run_id: runId,
      status: this.status,
      text: this.text,
      reasoning: this.reasoning,
      tool_calls: [...this.toolCalls.values()].map((call) => ({ ...call })),
      agent: this.agent,
      error: this.error,
      reason: this.reason,
      usage: this.usage,
      created_at: this.createdAt,
      finished_at: this.finishedAt,
      cursor: `${runId}:${this.offset}`,
    };
    if (this.approvals.size) assistant.approvals = [...this.approvals.values()].map(copyRequest);
    if (this.questions.size) assistant.questions = [...this.questions.values()].map(copyRequest);
    if (this.damaged) assistant.damaged = this.damaged;
    if (this.activity !== null) assistant.activity = { ...this.activity };
    return [structuredClone(user), assistant];
  }
}

/** Fold `[record, endOffset]` pairs of one or more consecutive runs into messages. */
export function fold(entries) {
  const messages = [];
  let run = null;
  for (const [record, endOffset] of entries) {
    if (record !== null && record.type === "run.started") {
      if (run !== null) messages.push(...run.messages());
      run = new RunFold();
    }
    if (run !== null) run.apply(record, endOffset);
  }
  if (run !== null) messages.push(...run.messages());
  return messages;
}

/** `"<run_id>:<offset>"` -> `{runId, offset}`, or null when malformed or absent. */
export function parseCursor(cursor) {
  if (typeof cursor !== "string") return null;
  const match = /^([A-Za-z0-9_-]{1,64}):(\d{1,18})$/.exec(cursor);
  return match ? { runId: match[1], offset: Number(match[2]) } : null;
}

/** True when cursor `a` lies strictly after `b` (null is before everything). */
export function isAfter(a, b) {
  if (b === null) return true;
  if (a.runId !== b.runId) return a.runId > b.runId;
  return a.offset > b.offset;
}

/**
 * A whole session: the runs of its view (the active branch), advanced by stream frames.
 *
 * `applyFrame` ignores any frame at or before the cursor already applied, so a replayed
 * frame (a reconnect that overlaps, a second delivery) changes nothing. A `run.started`
 * that replaces run R drops R and every run after it first (PROTOCOL 1.6), and lists the
 * versions of the turn on the new run's user message, as the server's view does.
 */
export class SessionFold {
  constructor(view) {
    this.runs = new Map(); // run_id -> RunFold, in start order: the active branch
    this.versions = new Map(); // run_id -> [run ids of the versions of its turn]
    this.cursor = parseCursor(view.cursor);
    const pending = new Map();
    for (const message of view.messages || []) {
      if (message.role === "user") pending.set(message.run_id, message);
      else if (message.role === "assistant" && pending.has(message.run_id)) {
        const user = pending.get(message.run_id);
        this.runs.set(message.run_id, RunFold.fromMessages(user, message));
        if (Array.isArray(user.alternatives)) this.versions.set(message.run_id, user.alternatives);
        pending.delete(message.run_id);
      }
    }
  }

  /** Apply one record frame; returns the run it changed, or null when it was ignored. */
  applyFrame(id, record) {
    const cursor = parseCursor(id);
    if (cursor === null || !isAfter(cursor, this.cursor)) return null;
    this.cursor = cursor;
    let run = this.runs.get(cursor.runId);
    if (record !== null && record.type === "run.started" && run === undefined) {
      if (typeof record.replaces === "string") this._replace(record.replaces, cursor.runId);
      run = new RunFold(cursor.runId);
      this.runs.set(cursor.runId, run);
    }
    if (run === undefined || cursor.offset <= run.offset) return null;
    run.apply(record, cursor.offset);
    return run;
  }

  /** Cut the branch at `replaced` before `runId` takes its place. */
  _replace(replaced, runId) {
    const loaded = [...this.runs.keys()];
    let cut = loaded.indexOf(replaced);
    // Run ids sort in start order: a run older than every loaded one lies before the page.
    if (cut < 0 && loaded.length && replaced < loaded[0]) cut = 0;
    if (cut < 0) return;
    const versions = this.versions.get(replaced) || [replaced];
    for (const dropped of loaded.slice(cut)) {
      this.runs.delete(dropped);
      this.versions.delete(dropped);
    }
    if (loaded.includes(replaced) || versions.length > 1) this.versions.set(runId, [...versions, runId]);
  }

  get activeRun() {
    for (const run of this.runs.values()) if (run.status === "running") return run;
    return null;
  }

  messages() {
    return [...this.runs.keys()].flatMap((runId) => this.messagesOf(runId));
  }

  /** One run's messages as `messages()` lists them (none for a run not on the branch). */
  messagesOf(runId) {
    const run = this.runs.get(runId);
    if (run === undefined) return [];
    const messages = run.messages();
    const versions = this.versions.get(runId);
    if (versions && versions.length > 1 && messages.length) messages[0].alternatives = [...versions];
    return messages;
  }

  get cursorText() {
    return this.cursor ? `${this.cursor.runId}:${this.cursor.offset}` : null;
  }

  /**
   * Put an older page of the view (its `messages`) before the runs loaded. Those runs are
   * finished, so they are seeded like the view's and the cursor is left alone: the stream
   * goes on from where it was. Runs already loaded are kept as they are.
   */
  prependPage(messages) {
    const older = new SessionFold({ messages, cursor: null });
    const runs = new Map();
    for (const [runId, run] of older.runs) if (!this.runs.has(runId)) runs.set(runId, run);
    for (const [runId, run] of this.runs) runs.set(runId, run);
    this.runs = runs;
    for (const [runId, versions] of older.versions) if (!this.versions.has(runId)) this.versions.set(runId, versions);
  }
}
