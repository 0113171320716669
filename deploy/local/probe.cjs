// One readiness probe for deploy/local/stack (curl is not assumed on a fresh box).
// Usage: node probe.cjs URL [CA_FILE] [WANT_STATUS]
// Exits 0 when URL answers (with WANT_STATUS if given), 1 otherwise; never hangs past 3 s.
"use strict";

const fs = require("fs");

const [url, caFile, want] = process.argv.slice(2);
const u = new URL(url);
const mod = require(u.protocol === "https:" ? "https" : "http");
const opts = { method: "GET", timeout: 3000 };
if (caFile) opts.ca = fs.readFileSync(caFile);

const req = mod.request(u, opts, (res) => {
  res.resume();
  process.exit(!want || String(res.statusCode) === want ? 0 : 1);
});
req.on("timeout", () => req.destroy(new Error("timeout")));
req.on("error", (err) => {
  if (process.env.XRC_PROBE_VERBOSE) console.error(`${url}: ${err.message}`);
  process.exit(1);
});
req.end();
