// Starts local-aws-sqs (pinned in deploy/local/package.json) on the loopback
// interface for deploy/local/stack. Usage: node sqs.cjs [port]
//
// Run with the npm install dir as NODE_PATH (the stack does this), so the
// package resolves from the cache dir and no node_modules lands in the repo.
"use strict";

const fs = require("fs");
const http = require("http");
const Module = require("module");
const path = require("path");

// loadCountingOnlyReceives loads local-aws-sqs with one fix: its
// visibility change counts as a receive (ApproximateReceiveCount + 1, and
// to the DLQ at maxReceiveCount; on a first receive it also restamped
// ApproximateFirstReceiveTimestamp), which SQS never does. A worker that
// extends a message's visibility by heartbeat while working on it would
// send it to the DLQ here after a few beats. The fix is made on the
// pinned bundle's text, and refused loudly if that text is not there.
function loadCountingOnlyReceives() {
  const file = require.resolve("local-aws-sqs");
  // i: a visibility change, which neither counts nor restamps the first receive.
  const from = "let n=Number(t.record.attributes.ApproximateReceiveCount)+1;t.record.attributes.ApproximateReceiveCount=String(n),n==1&&";
  const to = "let n=Number(t.record.attributes.ApproximateReceiveCount)+(i?0:1);t.record.attributes.ApproximateReceiveCount=String(n),!i&&n==1&&";
  const src = fs.readFileSync(file, "utf8");
  if (src.split(from).length !== 2) {
    throw new Error(`local-aws-sqs at ${file} is not the version sqs.cjs patches (its receive count is set elsewhere): update the patch`);
  }
  const m = new Module(file, module);
  m.filename = file;
  m.paths = Module._nodeModulePaths(path.dirname(file));
  m._compile(src.replace(from, to), file);
  return m.exports;
}

const { createRequestHandler } = loadCountingOnlyReceives();

const port = Number(process.argv[2] || process.env.XRC_SQS_PORT || 9324);
const hostname = "127.0.0.1";

const { requestHandler, service } = createRequestHandler({
  port,
  hostname,
  region: "us-east-1",
  // AWS forbids re-creating a deleted queue name for 60 s; tests re-create freely.
  emulateQueueCreationLifecycle: false,
});

// answerEarly makes a long poll return as soon as any message is ready, as
// SQS does. local-aws-sqs 2.0.2 returns early only once MaxNumberOfMessages
// are ready, so a worker asking for 10 waited the whole WaitTimeSeconds for
// one. The poll is made of short receives (each waits the server's 40 ms)
// until one gets messages or the wait is over.
function answerEarly(proto) {
  const receive = proto.receive;
  proto.receive = async function (opts) {
    const wait = Number(opts.WaitTimeSeconds ?? this.ReceiveMessageWaitTimeSeconds ?? 0);
    const deadline = Date.now() + wait * 1000;
    for (;;) {
      const got = await receive.call(this, { ...opts, WaitTimeSeconds: 0 });
      if (got.length > 0 || Date.now() >= deadline) {
        return got;
      }
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  };
}

// The queue class is not exported: patch its prototype through the first
// queue, before any request can receive from one.
let patched = false;
const server = http.createServer((req, res) => {
  if (!patched && service.Queues.length > 0) {
    answerEarly(Object.getPrototypeOf(service.Queues[0]));
    patched = true;
  }
  requestHandler(req, res);
});

server.on("error", (err) => {
  console.error(`local-aws-sqs failed to start: ${err && err.stack ? err.stack : err}`);
  process.exit(1);
});
server.listen(port, hostname, () => {
  // Queue URLs carry the port the server listens on.
  service.PORT = server.address().port;
  console.log(`local-aws-sqs listening on http://${hostname}:${port}`);
});

for (const sig of ["SIGTERM", "SIGINT"]) {
  process.on(sig, () => process.exit(0));
}
