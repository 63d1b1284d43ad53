// The C HTTP client: wrk with lua/reserve.lua, which POSTs reservations
// (hot: one body; uniform: one of the 10,000 positions at random per
// request, from a generated Lua file of bodies), counts the answers by
// status in each thread (201 held, 409 refused, the rest errors) and prints
// them with latency percentiles as one JSON line. stockd's own counters
// over the run are given beside them as a cross-check.
//
// wrk is closed-loop only (wrk2 would pace; wrk's delay() only adds think
// time), runs whole seconds, and here one thread: the server has the
// machine's other cores.

import { spawn } from "node:child_process";
import { rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { Sku } from "../lib/gateway_seed.ts";
import type { Driver, RunSpec } from "../lib/scenario.ts";
import { type CpuSpent, cpuMeter, type ServerChild } from "../lib/server_child.ts";
import { countsText, cpuText, requireScenario, resultOf, scratchDir, sleep } from "./common.ts";
import type { EchoHost } from "./echo.ts";
import { type RequestDelta, requestDelta, scrape } from "./metrics.ts";
import { syntheticSku, syntheticSkus } from "./node_grpc.ts";
import { reserveJson } from "./requests.ts";
import type { StockdHost } from "./stockd.ts";

export const wrkProgram = "wrk";
const script = fileURLToPath(new URL("./lua/reserve.lua", import.meta.url));
/** wrk threads: one, as autocannon has one. */
const threadCount = 1;
/** Seconds wrk waits for an answer before it counts a timeout. */
const requestTimeoutS = 10;
/** Time to let answers in flight when wrk stopped reach stockd's counters. */
const settleAnswersMs = 100;
const outputTailChars = 2000;

type Info = Pick<Driver, "system" | "client" | "tool">;

/** What lua/reserve.lua prints in done(). */
interface WrkSummary {
  ok: number;
  refused: number;
  other: number;
  firstOther: string;
  requests: number;
  durationUs: number;
  connectErrors: number;
  readErrors: number;
  writeErrors: number;
  timeouts: number;
  p50Us: number;
  p99Us: number;
  p999Us: number;
}

let fileSeq = 0;

/** A Lua file returning the request bodies (long brackets: no escaping). */
function writeBodies(skus: readonly Sku[]): string {
  const file = join(scratchDir(), `${process.pid}-${++fileSeq}-bodies.lua`);
  const items = skus.map((s) => `[==[${reserveJson(s)}]==]`);
  writeFileSync(file, `return {\n${items.join(",\n")}\n}\n`);
  return file;
}

function runWrk(
  url: string,
  clients: number,
  durationS: number,
  bodiesFile: string,
  token: string,
): Promise<WrkSummary> {
  const args = [
    "-t",
    String(Math.min(threadCount, clients)),
    "-c",
    String(clients),
    "-d",
    `${durationS}s`,
    "--timeout",
    `${requestTimeoutS}s`,
    "-s",
    script,
    url,
    "--",
    bodiesFile,
    token,
  ];
  return new Promise((resolve, reject) => {
    const child = spawn(wrkProgram, args, { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    child.stdout.on("data", (c: Buffer) => {
      out += c.toString();
    });
    child.stderr.on("data", (c: Buffer) => {
      out += c.toString();
    });
    child.on("error", reject);
    child.on("close", (code) => {
      const line = out.split("\n").find((l) => l.startsWith('{"wrk":1'));
      if (code !== 0 || line === undefined) {
        reject(new Error(`wrk exited ${code}:\n${out.slice(-outputTailChars)}`));
        return;
      }
      resolve(JSON.parse(line) as WrkSummary);
    });
  });
}

interface WrkRun {
  summary: WrkSummary;
  elapsedMs: number;
  spent: CpuSpent;
  delta: RequestDelta | null;
  notes: string[];
}

async function measure(
  server: ServerChild,
  spec: RunSpec,
  skus: readonly Sku[],
  token: string,
  baseUrl: string | null,
): Promise<WrkRun> {
  const url = `http://127.0.0.1:${server.httpPort}/v1/reservations`;
  const warmupS = Math.max(1, Math.round(spec.warmupMs / 1000));
  const durationS = Math.max(1, Math.round(spec.durationMs / 1000));
  const bodies = writeBodies(skus);
  try {
    await runWrk(url, spec.clients, warmupS, bodies, token);
    const meter = cpuMeter(server);
    const before = baseUrl === null ? null : await scrape(baseUrl);
    meter.start();
    const summary = await runWrk(url, spec.clients, durationS, bodies, token);
    meter.stop();
    let delta: RequestDelta | null = null;
    if (baseUrl !== null && before !== null) {
      await sleep(settleAnswersMs);
      delta = requestDelta(before, await scrape(baseUrl), "http", "Reserve");
    }
    const notes = [
      `wrk ${Math.min(threadCount, spec.clients)} thread, ${spec.clients} connections; ` +
        `counts from the answers (lua response()); latency of every answer`,
    ];
    if (durationS * 1000 !== spec.durationMs || warmupS * 1000 !== spec.warmupMs) {
      notes.push(`wrk runs whole seconds: ${warmupS} s warm-up, ${durationS} s measured`);
    }
    if (summary.firstOther !== "") notes.push(`first other answer: ${summary.firstOther}`);
    const spent = meter.spent();
    notes.push(...cpuText(spent, summary.durationUs / 1000, "wrk"));
    return {
      summary,
      elapsedMs: summary.durationUs / 1000,
      spent,
      delta,
      notes,
    };
  } finally {
    rmSync(bodies, { force: true });
  }
}

function errorsOf(s: WrkSummary): number {
  return s.other + s.connectErrors + s.readErrors + s.writeErrors + s.timeouts;
}

function latencyOfWrk(s: WrkSummary) {
  if (s.requests === 0) return undefined;
  return { p50: s.p50Us / 1000, p99: s.p99Us / 1000, p999: s.p999Us / 1000 };
}

function unsupported(d: Info, spec: RunSpec): void {
  requireScenario(
    d,
    spec,
    ["hot", "uniform"],
    false,
    "wrk repeats independent requests in a closed loop: no chained checkout, no race that stops on a refusal, no fixed rate",
  );
}

export function stockdWrkDriver(host: StockdHost): Driver {
  const d: Info = { system: "stockd HTTP", client: "c", tool: "wrk" };
  host.acquire();
  let closed = false;
  return {
    ...d,
    run: async (spec) => {
      unsupported(d, spec);
      const r = await host.ready();
      await host.settle();
      if (spec.scenario === "hot") await host.topUpHot();
      const skus = spec.scenario === "hot" ? [r.seed.hot] : r.seed.uniform;
      const w = await measure(r.server, spec, skus, r.serviceToken, r.baseUrl);
      const check = await host.checkStock(skus.map((s) => s.productId));
      const delta = w.delta!;
      return resultOf(d, spec, {
        elapsedMs: w.elapsedMs,
        ok: w.summary.ok,
        refused: w.summary.refused,
        errors: errorsOf(w.summary),
        latency: latencyOfWrk(w.summary),
        serverUs: w.spent.serverUs,
        consistent: check.consistent,
        notes: [
          ...w.notes,
          `stockd counted ${countsText(delta.byCode) || "none"} (answers to requests in flight when wrk stopped included)`,
          ...check.notes,
        ],
      });
    },
    close: async () => {
      if (closed) return;
      closed = true;
      await host.release();
    },
  };
}

export function echoWrkDriver(echo: EchoHost): Driver {
  const d: Info = { system: "echo HTTP", client: "c", tool: "wrk" };
  echo.acquire();
  let closed = false;
  return {
    ...d,
    run: async (spec) => {
      unsupported(d, spec);
      const server = await echo.ready();
      const skus = spec.scenario === "hot" ? [syntheticSku(0)] : syntheticSkus();
      const w = await measure(server, spec, skus, "echo", null);
      return resultOf(d, spec, {
        elapsedMs: w.elapsedMs,
        ok: w.summary.ok,
        refused: w.summary.refused,
        errors: errorsOf(w.summary),
        latency: latencyOfWrk(w.summary),
        serverUs: w.spent.serverUs,
        consistent: null,
        notes: w.notes,
      });
    },
    close: async () => {
      if (closed) return;
      closed = true;
      await echo.release();
    },
  };
}
