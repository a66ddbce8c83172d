// Follow one Durable Stream live with the official client (@durable-streams/client), from
// the start until the stream is closed, and print what the client delivers; for
// tests/test_durable_streams_client.py.
//
//   node follow_run.mjs <stream-url> <sse|long-poll> [timeout-ms]
//
// stdout, one JSON object a line:
//   {"record": <item>, "offset": <batch offset>, "last": <is the batch's last item>}  each item
//   {"retry": <n>}                          the client's fetch failed and it retries by itself
//   {"resume": <offset>, "error": "<message>"}     a session failed: a new one starts at offset
//   {"closed": true, "offset": <final offset>}     the client reported the stream closed
// A batch's offset is the client's: the Stream-Next-Offset after the batch.
//
// The client retries by itself a request that fails before its response's headers (its
// fetch backoff). A connection cut in the middle of a body fails the session instead
// ("TypeError: terminated"): this script then starts a new session at the offset of the
// last batch it handled, as the client's README says to resume after a disconnect. The
// failed session is stopped and whatever it still delivers is ignored, so nothing is
// handled twice. FOLLOW_DEBUG=1 logs every request and batch on stderr.
//
// Exit 0 once the stream is reported closed; 1 after MAX_SESSIONS failed sessions; 2 on
// the timeout.
import { stream } from "@durable-streams/client"

const MAX_SESSIONS = 50
// `closed` may resolve before the subscriber has been handed the last batch.
const CLOSE_GRACE_MS = 1000
const [url, live, timeoutArg] = process.argv.slice(2)
if (!url || (live !== "sse" && live !== "long-poll")) {
  console.error("usage: node follow_run.mjs <stream-url> <sse|long-poll> [timeout-ms]")
  process.exit(64)
}
const timeoutMs = Number(timeoutArg ?? 20000)
setTimeout(() => {
  console.error(`follow_run: the stream was not closed within ${timeoutMs} ms`)
  process.exit(2)
}, timeoutMs).unref()

const debug = process.env.FOLLOW_DEBUG ? (...args) => console.error(...args) : () => {}
const print = (value) => process.stdout.write(JSON.stringify(value) + "\n")
let retries = 0
let handledOffset = "-1"

async function debugFetch(input, init) {
  try {
    const response = await fetch(input, init)
    debug(`fetch ${input} -> ${response.status} ${JSON.stringify(Object.fromEntries(response.headers))}`)
    return response
  } catch (error) {
    debug(`fetch ${input} -> ${error} ${error.cause ?? ""}`)
    throw error
  }
}

// One session from `offset`: resolves "closed" once its subscriber is handed the batch that
// closes the stream, or with the error that ended it.
async function follow(offset) {
  const controller = new AbortController()
  let active = true
  let response
  try {
    response = await stream({
      url,
      offset,
      live,
      signal: controller.signal,
      // Short delays: the proxy's cuts are expected and the test has a time budget.
      backoffOptions: {
        initialDelay: 20, maxDelay: 200, multiplier: 1.5, maxRetries: 20,
        // (Also called when this script stops a failed session: that is no retry.)
        onFailedAttempt: () => controller.signal.aborted || print({ retry: ++retries }),
      },
      warnOnHttp: false,
      ...(process.env.FOLLOW_DEBUG ? { fetch: debugFetch } : {}),
    })
  } catch (error) {
    return error
  }
  const outcome = await new Promise((resolve) => {
    response.subscribeJson((batch) => {
      debug(`batch ${batch.items.length} ${batch.offset} upToDate=${batch.upToDate} closed=${batch.streamClosed}`)
      if (!active) return
      batch.items.forEach((item, index) =>
        print({ record: item, offset: batch.offset, last: index === batch.items.length - 1 }))
      handledOffset = batch.offset
      if (batch.streamClosed) resolve("closed")
    })
    response.closed.then(
      () => setTimeout(() => resolve(new Error("the session ended without reporting the stream closed")),
        CLOSE_GRACE_MS),
      (error) => resolve(error),
    )
  })
  active = false
  controller.abort()
  return outcome
}

for (let session = 1; ; session++) {
  const outcome = await follow(handledOffset)
  if (outcome === "closed") {
    process.stdout.write(JSON.stringify({ closed: true, offset: handledOffset }) + "\n", () => process.exit(0))
    break
  }
  if (session >= MAX_SESSIONS) {
    console.error(`follow_run: gave up after ${session} sessions: ${outcome?.stack ?? outcome}`)
    process.exit(1)
  }
  print({ resume: handledOffset, error: String(outcome) })
}
