// Starts local-aws-sqs (pinned in deploy/local/package.json) on the loopback
// interface for deploy/local/stack. Usage: node sqs.cjs [port]
//
// Run with the npm install dir as NODE_PATH (the stack does this), so the
// package resolves from the cache dir and no node_modules lands in the repo.
"use strict";

const { createSqsServer } = require("local-aws-sqs");

const port = Number(process.argv[2] || process.env.XRC_SQS_PORT || 9324);
const hostname = "127.0.0.1";

createSqsServer({
  port,
  hostname,
  region: "us-east-1",
  // AWS forbids re-creating a deleted queue name for 60 s; tests re-create freely.
  emulateQueueCreationLifecycle: false,
})
  .then(() => console.log(`local-aws-sqs listening on http://${hostname}:${port}`))
  .catch((err) => {
    console.error(`local-aws-sqs failed to start: ${err && err.stack ? err.stack : err}`);
    process.exit(1);
  });

for (const sig of ["SIGTERM", "SIGINT"]) {
  process.on(sig, () => process.exit(0));
}
