// The Durable Streams reference server (@durable-streams/server, pinned in
// tests/durable_streams/package.json), in memory, on 127.0.0.1:<port>, for
// bench/bench_durable_streams.py. Prints "listening <url>" once it accepts connections;
// stops on SIGTERM or SIGINT (the streams are in memory: nothing to keep, so it waits at
// most a second for open connections).
//
//   node bench/ds_reference_server.mjs <port> [long-poll timeout ms]
import { DurableStreamTestServer } from "../tests/durable_streams/node_modules/@durable-streams/server/dist/index.js"

const port = Number(process.argv[2])
if (!Number.isInteger(port) || port <= 0) {
  console.error("usage: node ds_reference_server.mjs <port> [long-poll timeout ms]")
  process.exit(2)
}
const longPollTimeout = Number(process.argv[3] || 30000)

const server = new DurableStreamTestServer({ port, host: "127.0.0.1", longPollTimeout, compression: false })
const url = await server.start()
console.log(`listening ${url}`)

let stopping = false
async function stop() {
  if (stopping) return
  stopping = true
  setTimeout(() => process.exit(0), 1000).unref()
  try {
    await server.stop()
  } finally {
    process.exit(0)
  }
}
process.on("SIGTERM", stop)
process.on("SIGINT", stop)
