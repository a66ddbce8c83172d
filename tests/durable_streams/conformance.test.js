// The official Durable Streams conformance suite, pointed at a running hermes-web serve.
// DS_BASE_URL is the generic streams' base (http://127.0.0.1:<port>/ds/streams);
// DS_LONG_POLL_MS is the server's HERMES_WEB_LONG_POLL_S in milliseconds.
import { runConformanceTests } from "@durable-streams/server-conformance-tests"

const baseUrl = process.env.DS_BASE_URL
if (!baseUrl) throw new Error("DS_BASE_URL is required (the server's /ds/streams base URL)")

runConformanceTests({
  baseUrl,
  longPollTimeoutMs: Number(process.env.DS_LONG_POLL_MS || 20000),
})
