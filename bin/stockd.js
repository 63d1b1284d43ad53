#!/usr/bin/env node
// The stockd command line. It runs from the TypeScript sources: tsx's loader
// is registered before the CLI module is imported.
import { setFlagsFromString } from "node:v8";
import { register } from "tsx/esm/api";

// A larger young generation (default 16 MB semi-spaces): a server holds
// thousands of requests in flight across a journal sync, and with small
// semi-spaces they survive a scavenge and get promoted, so the old
// generation collects what should have died young, in pauses of 100-250 ms
// on the gateway's thread under load. Set here, the flag reaches only the
// isolates made from now on (the worker threads): the main thread's heap is
// already made, so `npm start` passes `--max-semi-space-size=64` on the
// command line (which, given, wins here too).
if (!process.execArgv.some((a) => a.startsWith("--max-semi-space-size"))) {
  setFlagsFromString("--max-semi-space-size=64");
}
register();
await import("../src/cli/main.ts");
