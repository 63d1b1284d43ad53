// The C gRPC client: h2load (nghttp2) POSTing a pre-encoded Reserve call
// (a file holding the gRPC length-prefixed ReserveRequest) with the gRPC
// headers. h2load sees only HTTP: every gRPC answer is HTTP 200, errors
// included, so stockd's successes are the change of its own counter
// stockd_requests_total{transport="grpc",method="Reserve",code="OK"} over
// the run (OUT_OF_STOCK: refused; other codes, and h2load's failed, errored
// and timed-out streams: errors). Latency percentiles come from h2load's
// --log-file (one line per answer), as its summary prints only min, max,
// mean and sd.
//
// h2load sends one body over and over, so the workload's positions are
// spread over processes: `clients` streams are split over up to 8 h2load
// processes of at least 4 streams each, each process with one body (hot:
// the hot position in every one; uniform: a different random position of
// the 10,000 in each, chosen anew per run). 16 processes of 2 streams drove
// the echo 10-30% slower than one process of 32 (2 cores); 8 of 4, about
// as fast. Warm-up is a run of its own before the measured one, so the
// counters' change covers the measured processes alone.

import { spawn } from "node:child_process";
import { readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { echoPath } from "../lib/echo_grpc.ts";
import type { Sku } from "../lib/gateway_seed.ts";
import { methodPaths } from "../lib/grpc_load.ts";
import { contentionUnits, type Driver, type RunResult, type RunSpec } from "../lib/scenario.ts";
import { type CpuSpent, cpuMeter, type ServerChild } from "../lib/server_child.ts";
import { LatencyHistogram, round } from "../lib/stats.ts";
import {
  connectionsFor,
  countsText,
  cpuText,
  latencyOfHistogram,
  pickDistinct,
  requireScenario,
  resultOf,
  scratchDir,
  sleep,
} from "./common.ts";
import type { EchoHost } from "./echo.ts";
import { type RequestDelta, requestDelta, scrape } from "./metrics.ts";
import { syntheticSku, syntheticSkus } from "./node_grpc.ts";
import { contentionRunResult, contentionVerdict } from "./outcomes.ts";
import { grpcFrame, reserveProto } from "./requests.ts";
import { contentionHoldSeconds, type StockdHost } from "./stockd.ts";

export const h2loadProgram = "h2load";
/** h2load processes at most for one run: positions a uniform run spreads over. */
export const h2loadProcessMax = 8;
/** Streams per h2load process at least (below, processes are fewer). */
const h2loadProcessStreamsMin = 4;
/** Time to let answers still in flight when h2load stopped reach stockd's
 * counters. */
const settleAnswersMs = 100;
/** Output kept for an error message. */
const outputTailChars = 2000;

type Info = Pick<Driver, "system" | "client" | "tool">;

interface H2Process {
  bodyFile: string;
  connections: number;
  streamsPerConnection: number;
}

interface H2Output {
  finishedS: number;
  done: number;
  succeeded: number;
  failed: number;
  errored: number;
  timeout: number;
}

interface Target {
  url: string;
  authorization: string;
}

let fileSeq = 0;

function scratchFile(name: string): string {
  return join(scratchDir(), `${process.pid}-${++fileSeq}-${name}`);
}

/** `clients` streams over one process per body, each with as many
 * connections as that many grpc-js calls would get. */
function planOf(clients: number, bodyFiles: readonly string[]): H2Process[] {
  const count = bodyFiles.length;
  return bodyFiles.map((bodyFile, i) => {
    const streams = Math.floor(clients / count) + (i < clients % count ? 1 : 0);
    const connections = connectionsFor(streams);
    return { bodyFile, connections, streamsPerConnection: Math.ceil(streams / connections) };
  });
}

/** How many h2load processes share `clients` streams. */
export function h2loadProcessesFor(clients: number): number {
  return Math.min(h2loadProcessMax, Math.max(1, Math.ceil(clients / h2loadProcessStreamsMin)));
}

function writeBodies(skus: readonly Sku[], holdSeconds?: number): string[] {
  return skus.map((sku) => {
    const file = scratchFile("reserve.grpc");
    writeFileSync(file, grpcFrame(reserveProto(sku, holdSeconds)));
    return file;
  });
}

function parseOutput(text: string): H2Output {
  const finished = /finished in ([\d.]+)(ms|s|us)/.exec(text);
  const requests =
    /requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout/.exec(
      text,
    );
  if (finished === null || requests === null) {
    throw new Error(`h2load: no summary in its output:\n${text.slice(-outputTailChars)}`);
  }
  const unit = finished[2] === "ms" ? 1e-3 : finished[2] === "us" ? 1e-6 : 1;
  const n = (i: number) => Number(requests[i]);
  return {
    finishedS: Number(finished[1]) * unit,
    done: n(3),
    succeeded: n(4),
    failed: n(5),
    errored: n(6),
    timeout: n(7),
  };
}

function runH2load(args: string[]): Promise<H2Output> {
  return new Promise((resolve, reject) => {
    const child = spawn(h2loadProgram, args, { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    child.stdout.on("data", (c: Buffer) => {
      out += c.toString();
    });
    child.stderr.on("data", (c: Buffer) => {
      out += c.toString();
    });
    child.on("error", reject);
    child.on("close", (code) => {
      if (code !== 0) {
        reject(new Error(`h2load exited ${code}:\n${out.slice(-outputTailChars)}`));
        return;
      }
      try {
        resolve(parseOutput(out));
      } catch (err) {
        reject(err);
      }
    });
  });
}

interface PhaseRun {
  outputs: H2Output[];
  wallMs: number;
  latency: LatencyHistogram;
}

/** Runs every process of the plan at once, for a duration or a number of
 * requests; with `log`, reads the per-answer latencies they wrote. */
async function runPhase(
  plan: readonly H2Process[],
  target: Target,
  how: { durationMs: number } | { requests: number },
  ratePerS: number | undefined,
  log: boolean,
): Promise<PhaseRun> {
  const connections = plan.reduce((n, p) => n + p.connections, 0);
  const logs: string[] = [];
  const runs = plan.map((p) => {
    const args = [
      "-c",
      String(p.connections),
      "-m",
      String(p.streamsPerConnection),
      "-t",
      "1",
      "-d",
      p.bodyFile,
      "-H",
      "content-type: application/grpc",
      "-H",
      "te: trailers",
      "-H",
      `authorization: ${target.authorization}`,
    ];
    if ("durationMs" in how) args.push("-D", `${Math.max(1, Math.round(how.durationMs))}ms`);
    else args.push("-n", String(how.requests));
    if (ratePerS !== undefined) args.push("--rps", (ratePerS / connections).toFixed(3));
    if (log) {
      const file = scratchFile("h2load.log");
      logs.push(file);
      args.push("--log-file", file);
    }
    args.push(target.url);
    return args;
  });
  const t0 = performance.now();
  const outputs = await Promise.all(runs.map(runH2load));
  const wallMs = performance.now() - t0;
  const latency = new LatencyHistogram();
  for (const file of logs) {
    // start (us since the epoch) \t HTTP status \t us to the answer's end
    for (const line of readFileSync(file, "utf8").split("\n")) {
      const us = Number(line.slice(line.lastIndexOf("\t") + 1));
      if (line !== "" && Number.isFinite(us)) latency.record(us * 1000);
    }
    rmSync(file, { force: true });
  }
  return { outputs, wallMs, latency };
}

function sum(outputs: readonly H2Output[], pickField: (o: H2Output) => number): number {
  return outputs.reduce((n, o) => n + pickField(o), 0);
}

function planText(plan: readonly H2Process[], ratePerS: number | undefined): string {
  const shapes = new Map<string, number>();
  for (const p of plan) {
    const k = `${p.connections}x${p.streamsPerConnection}`;
    shapes.set(k, (shapes.get(k) ?? 0) + 1);
  }
  const text = [...shapes].map(([k, n]) => `${n} x (${k} connections x streams)`).join(" + ");
  const rate =
    ratePerS === undefined
      ? ""
      : `; --rps per connection (h2load counts latency from each send, not from when it fell due)`;
  return `h2load processes: ${text}${rate}`;
}

/** Warm-up run, then the measured one with the server's CPU and, for
 * stockd, its counters around it. */
async function measure(
  server: ServerChild,
  plan: readonly H2Process[],
  target: Target,
  spec: RunSpec,
  baseUrl: string | null,
): Promise<{ run: PhaseRun; delta: RequestDelta | null; spent: CpuSpent }> {
  await runPhase(plan, target, { durationMs: spec.warmupMs }, spec.ratePerS, false);
  const meter = cpuMeter(server);
  const before = baseUrl === null ? null : await scrape(baseUrl);
  meter.start();
  const run = await runPhase(plan, target, { durationMs: spec.durationMs }, spec.ratePerS, true);
  meter.stop();
  let delta: RequestDelta | null = null;
  if (baseUrl !== null && before !== null) {
    await sleep(settleAnswersMs);
    delta = requestDelta(before, await scrape(baseUrl), "grpc", "Reserve");
  }
  return { run, delta, spent: meter.spent() };
}

function transportErrors(outputs: readonly H2Output[]): number {
  return sum(outputs, (o) => o.failed + o.errored + o.timeout);
}

// ---- stockd ------------------------------------------------------------------------------

export function stockdH2loadDriver(host: StockdHost): Driver {
  const d: Info = { system: "stockd gRPC", client: "c", tool: "h2load" };
  host.acquire();
  let closed = false;
  return {
    ...d,
    run: async (spec) => {
      requireScenario(
        d,
        spec,
        ["hot", "uniform", "contention"],
        true,
        "h2load repeats fixed bodies: it cannot chain a cart, a checkout and a payment",
      );
      const r = await host.ready();
      await host.settle();
      const target = {
        url: `http://127.0.0.1:${r.server.grpcPort}${methodPaths.reserve}`,
        authorization: `Bearer ${r.serviceToken}`,
      };
      if (spec.scenario === "contention") return stockdContention(d, host, spec, target);
      if (spec.scenario === "hot") await host.topUpHot();
      const processes = h2loadProcessesFor(spec.clients);
      const skus =
        spec.scenario === "hot"
          ? Array.from({ length: processes }, () => r.seed.hot)
          : pickDistinct(r.seed.uniform, processes);
      const bodies = writeBodies(skus);
      const plan = planOf(spec.clients, bodies);
      try {
        const m = await measure(r.server, plan, target, spec, r.baseUrl);
        const delta = m.delta!;
        const h2Errors = transportErrors(m.run.outputs);
        const check = await host.checkStock(skus.map((s) => s.productId));
        const notes = [
          planText(plan, spec.ratePerS),
          `ok from stockd's counters: ${countsText(delta.byCode) || "none"}; h2load: ` +
            `${sum(m.run.outputs, (o) => o.done)} answers done, ${h2Errors} failed/errored/timed out`,
          "latency from h2load's --log-file: every answer (gRPC status not in it)",
          ...cpuText(m.spent, m.run.wallMs, "h2load"),
          `seconds: wall time of the measured processes (h2load's own: ${round(Math.max(...m.run.outputs.map((o) => o.finishedS)), 2)} s)`,
          ...check.notes,
        ];
        if (spec.scenario === "uniform") {
          notes.push(
            `uniform spread over ${processes} random positions (one per process), not 10,000`,
          );
        }
        return resultOf(d, spec, {
          elapsedMs: m.run.wallMs,
          ok: delta.ok,
          refused: delta.refused,
          errors: delta.errors + h2Errors,
          latency: latencyOfHistogram(m.run.latency),
          serverUs: m.spent.serverUs,
          consistent: check.consistent,
          notes,
        });
      } finally {
        for (const f of bodies) rmSync(f, { force: true });
      }
    },
    close: async () => {
      if (closed) return;
      closed = true;
      await host.release();
    },
  };
}

/** All `clients` streams at once, `clients + contentionUnits` requests in
 * all: as many answers as the Node race gets (each client is refused once),
 * though h2load does not stop a stream on its refusal. */
async function stockdContention(
  d: Info,
  host: StockdHost,
  spec: RunSpec,
  target: Target,
): Promise<RunResult> {
  const r = await host.ready();
  const race = (plan: readonly H2Process[], log: boolean) =>
    runPhase(plan, target, { requests: spec.clients + contentionUnits }, undefined, log);
  if (spec.warmupMs > 0) {
    // A race on a position of its own first: the run's first answers are
    // otherwise cold code.
    const warm = writeBodies([await host.freshPosition(contentionUnits)], contentionHoldSeconds);
    try {
      await race(planOf(spec.clients, warm), false);
      host.heldLong(contentionUnits);
    } finally {
      for (const f of warm) rmSync(f, { force: true });
    }
  }
  const sku = await host.freshPosition(contentionUnits);
  const bodies = writeBodies([sku], contentionHoldSeconds);
  const plan = planOf(spec.clients, bodies);
  try {
    const meter = cpuMeter(r.server);
    const before = await scrape(r.baseUrl);
    meter.start();
    const run = await race(plan, true);
    meter.stop();
    await sleep(settleAnswersMs);
    const delta = requestDelta(before, await scrape(r.baseUrl), "grpc", "Reserve");
    host.heldLong(delta.ok);
    const verdict = await contentionVerdict(host, sku, delta.ok, delta);
    const h2Errors = transportErrors(run.outputs);
    const answers = delta.ok + delta.refused + delta.errors + h2Errors;
    const elapsedMs = Math.max(...run.outputs.map((o) => o.finishedS)) * 1000;
    const spent = meter.spent();
    return contentionRunResult(d, spec, answers, {
      elapsedMs,
      ok: delta.ok,
      refused: delta.refused,
      errors: delta.errors + h2Errors,
      latency: latencyOfHistogram(run.latency),
      serverUs: spent.serverUs,
      consistent: verdict.consistent,
      notes: [
        planText(plan, undefined),
        `h2load -n ${spec.clients + contentionUnits}: streams do not stop on a refusal; seconds: h2load's own; after a warm-up race`,
        ...verdict.notes,
        ...cpuText(spent, run.wallMs, "h2load"),
      ],
    });
  } finally {
    for (const f of bodies) rmSync(f, { force: true });
  }
}

// ---- echo ----------------------------------------------------------------------------------

export function echoH2loadDriver(echo: EchoHost): Driver {
  const d: Info = { system: "echo gRPC", client: "c", tool: "h2load" };
  echo.acquire();
  let closed = false;
  return {
    ...d,
    run: async (spec) => {
      requireScenario(
        d,
        spec,
        ["hot", "uniform"],
        true,
        "h2load repeats fixed bodies, and the echo holds no stock to race for",
      );
      const server = await echo.ready();
      const processes = h2loadProcessesFor(spec.clients);
      const skus =
        spec.scenario === "hot"
          ? Array.from({ length: processes }, () => syntheticSku(0))
          : pickDistinct(syntheticSkus(), processes);
      const bodies = writeBodies(skus);
      const plan = planOf(spec.clients, bodies);
      const target = {
        url: `http://127.0.0.1:${server.grpcPort}${echoPath}`,
        authorization: "Bearer echo",
      };
      try {
        const m = await measure(server, plan, target, spec, null);
        const ok = sum(m.run.outputs, (o) => o.succeeded);
        return resultOf(d, spec, {
          elapsedMs: m.run.wallMs,
          ok,
          refused: 0,
          errors: transportErrors(m.run.outputs),
          latency: latencyOfHistogram(m.run.latency),
          serverUs: m.spent.serverUs,
          consistent: null,
          notes: [
            planText(plan, spec.ratePerS),
            "ok: h2load's succeeded streams (the echo answers nothing but OK)",
            "latency from h2load's --log-file: every answer",
            ...cpuText(m.spent, m.run.wallMs, "h2load"),
          ],
        });
      } finally {
        for (const f of bodies) rmSync(f, { force: true });
      }
    },
    close: async () => {
      if (closed) return;
      closed = true;
      await echo.release();
    },
  };
}
