// The Node HTTP drivers: "stockd HTTP" and "echo HTTP" with autocannon.
// Closed-loop reservations come from autocannon (a warm-up run, then the
// measured one; it ends a run on a whole second). The open loop, checkout
// and contention use the bare keep-alive pool of callers.ts instead, one
// connection per client: autocannon's overallRate sends each second's quota
// in a burst, and it can neither give each customer a token of their own
// nor stop a client on its first refusal.

import autocannon from "autocannon";
import type { Driver, RunResult, RunSpec } from "../lib/scenario.ts";
import { cpuMeter, type ServerChild } from "../lib/server_child.ts";
import { LatencyHistogram } from "../lib/stats.ts";
import { HttpPool } from "./callers.ts";
import { httpCheckoutApi, httpStep, runCheckout } from "./checkout.ts";
import {
  countsText,
  cpuText,
  latencyOfHistogram,
  openLoopInFlightMax,
  requireScenario,
  resultOf,
} from "./common.ts";
import { runRace } from "./contention.ts";
import type { EchoHost } from "./echo.ts";
import { syntheticSku, syntheticSkus } from "./node_grpc.ts";
import {
  checkoutNotes,
  contentionResult,
  echoCheckoutResult,
  stockdCheckoutHooks,
} from "./outcomes.ts";
import { Phased } from "./phased.ts";
import { reserveJson } from "./requests.ts";
import { contentionHoldSeconds, type StockdHost } from "./stockd.ts";

/** Seconds autocannon waits for an answer before it counts a timeout. */
const requestTimeoutS = 10;
const reservePath = "/v1/reservations";

type Info = Pick<Driver, "system" | "client" | "tool">;

/** Answers of a reservation load by status: 2xx held, 409 refused. */
class Tally {
  readonly byStatus: Record<string, number> = {};
  readonly latency = new LatencyHistogram();
  ok = 0;
  refused = 0;
  other = 0;

  answer(status: number, latencyMs: number): void {
    this.byStatus[status] = (this.byStatus[status] ?? 0) + 1;
    this.latency.recordMs(latencyMs);
    if (status >= 200 && status <= 299) this.ok++;
    else if (status === 409) this.refused++;
    else this.other++;
  }
}

interface LoadRun {
  elapsedMs: number;
  tally: Tally;
  /** No answer at all (connection errors, timeouts, open-loop skips). */
  noAnswer: number;
  serverUs: number | null;
  notes: string[];
}

function cannon(
  url: string,
  connections: number,
  durationS: number,
  bodies: readonly string[],
  token: string,
  tally: Tally | null,
): Promise<{ elapsedMs: number; result: autocannon.Result }> {
  const headers = { "content-type": "application/json", authorization: `Bearer ${token}` };
  const request: autocannon.Request =
    bodies.length === 1
      ? { method: "POST", path: reservePath, headers, body: bodies[0]! }
      : {
          method: "POST",
          path: reservePath,
          headers,
          setupRequest: (req: autocannon.Request) => ({
            ...req,
            body: bodies[Math.floor(Math.random() * bodies.length)]!,
          }),
        };
  const t0 = performance.now();
  return new Promise((resolve, reject) => {
    const instance = autocannon(
      { url, connections, duration: durationS, timeout: requestTimeoutS, requests: [request] },
      (err, result) => (err ? reject(err) : resolve({ elapsedMs: performance.now() - t0, result })),
    );
    if (tally !== null) {
      instance.on("response", (_client, status, _bytes, responseTimeMs) =>
        tally.answer(status, responseTimeMs),
      );
    }
  });
}

/** Closed loop: autocannon with `clients` connections. */
async function closedLoop(
  server: ServerChild,
  spec: RunSpec,
  bodies: readonly string[],
  token: string,
): Promise<LoadRun> {
  const url = `http://127.0.0.1:${server.httpPort}`;
  const warmupS = Math.max(1, Math.round(spec.warmupMs / 1000));
  const durationS = Math.max(1, Math.round(spec.durationMs / 1000));
  await cannon(url, spec.clients, warmupS, bodies, token, null);
  const tally = new Tally();
  const meter = cpuMeter(server);
  meter.start();
  const { elapsedMs, result } = await cannon(url, spec.clients, durationS, bodies, token, tally);
  meter.stop();
  const spent = meter.spent();
  const notes = [`${spec.clients} connections; latency of every answer`];
  if (durationS * 1000 !== spec.durationMs || warmupS * 1000 !== spec.warmupMs) {
    notes.push(`autocannon runs whole seconds: ${warmupS} s warm-up, ${durationS} s measured`);
  }
  notes.push(...cpuText(spent, elapsedMs, "node"));
  return { elapsedMs, tally, noAnswer: result.errors, serverUs: spent.serverUs, notes };
}

/** Open loop: requests started evenly at `spec.ratePerS` on the pool. */
async function openLoop(
  server: ServerChild,
  spec: RunSpec,
  bodies: readonly string[],
  token: string,
): Promise<LoadRun> {
  const pool = await HttpPool.open(`http://127.0.0.1:${server.httpPort}`, spec.clients);
  const raws = bodies.map((b) => pool.request("POST", reservePath, `Bearer ${token}`, b));
  let tally = new Tally();
  let noAnswer = 0;
  const meter = cpuMeter(server);
  const phased = new Phased({
    clients: spec.clients,
    ratePerS: spec.ratePerS,
    inFlightMax: openLoopInFlightMax,
    warmupMs: spec.warmupMs,
    durationMs: spec.durationMs,
    onPhase: (mark) => {
      if (mark === "measure") {
        tally = new Tally();
        meter.start();
      } else meter.stop();
    },
  });
  try {
    const { elapsedMs } = await phased.run(async (_slot, dueMs) => {
      const a = await pool.send(raws[Math.floor(Math.random() * raws.length)]!);
      if (!phased.measuring) return;
      if (a.status === 0) noAnswer++;
      else tally.answer(a.status, performance.now() - dueMs);
    });
    const spent = meter.spent();
    const notes = [
      `requests started evenly at ${spec.ratePerS}/s over ${spec.clients} keep-alive connections ` +
        `(bare sockets, not autocannon); latency from when each fell due`,
      ...cpuText(spent, elapsedMs, "node"),
    ];
    if (phased.skipped > 0) notes.push(`${phased.skipped} requests skipped (counted as errors)`);
    if (phased.failed > 0) notes.push(`${phased.failed} sends threw: ${phased.firstFailure}`);
    return {
      elapsedMs,
      tally,
      noAnswer: noAnswer + phased.skipped + phased.failed,
      serverUs: spent.serverUs,
      notes,
    };
  } finally {
    pool.close();
  }
}

function reserveLoad(server: ServerChild, spec: RunSpec, bodies: readonly string[], token: string) {
  return spec.ratePerS === undefined
    ? closedLoop(server, spec, bodies, token)
    : openLoop(server, spec, bodies, token);
}

function loadResult(
  d: Info,
  spec: RunSpec,
  l: LoadRun,
  consistent: boolean | null,
  more: string[],
): RunResult {
  return resultOf(d, spec, {
    elapsedMs: l.elapsedMs,
    ok: l.tally.ok,
    refused: l.tally.refused,
    errors: l.tally.other + l.noAnswer,
    latency: latencyOfHistogram(l.tally.latency),
    serverUs: l.serverUs,
    consistent,
    notes: [
      `answers by status: ${countsText(l.tally.byStatus) || "none"}, no answer ${l.noAnswer}`,
      ...l.notes,
      ...more,
    ],
  });
}

// ---- stockd HTTP ----------------------------------------------------------------------

export function stockdHttpDriver(host: StockdHost): Driver {
  const d: Info = { system: "stockd HTTP", client: "node", tool: "autocannon" };
  host.acquire();
  let closed = false;
  return {
    ...d,
    run: async (spec) => {
      requireScenario(d, spec, ["hot", "uniform", "checkout", "contention"], true, "");
      const r = await host.ready();
      await host.settle();
      if (spec.scenario === "checkout") return stockdCheckout(d, host, spec);
      if (spec.scenario === "contention") return stockdContention(d, host, spec);
      if (spec.scenario === "hot") await host.topUpHot();
      const skus = spec.scenario === "hot" ? [r.seed.hot] : r.seed.uniform;
      const l = await reserveLoad(
        r.server,
        spec,
        skus.map((s) => reserveJson(s)),
        r.serviceToken,
      );
      const check = await host.checkStock(skus.map((s) => s.productId));
      return loadResult(d, spec, l, check.consistent, check.notes);
    },
    close: async () => {
      if (closed) return;
      closed = true;
      await host.release();
    },
  };
}

async function stockdCheckout(d: Info, host: StockdHost, spec: RunSpec): Promise<RunResult> {
  const r = await host.ready();
  const pool = await HttpPool.open(r.baseUrl, spec.clients);
  const meter = cpuMeter(r.server);
  try {
    const c = await runCheckout({
      api: httpCheckoutApi(pool),
      productIds: r.seed.flowProductIds,
      service: `Bearer ${r.serviceToken}`,
      ...stockdCheckoutHooks(host),
      clients: spec.clients,
      ratePerS: spec.ratePerS,
      inFlightMax: openLoopInFlightMax,
      warmupMs: spec.warmupMs,
      durationMs: spec.durationMs,
      onPhase: (mark) => (mark === "measure" ? meter.start() : meter.stop()),
    });
    const check = await host.checkStock(r.seed.flowProductIds);
    const spent = meter.spent();
    return resultOf(d, spec, {
      elapsedMs: c.elapsedMs,
      ok: c.checkouts,
      refused: c.refused,
      errors: c.errors,
      latency: latencyOfHistogram(c.checkoutLatency),
      serverUs: spent.serverUs,
      consistent: check.consistent,
      notes: [
        `${spec.clients} keep-alive connections (bare sockets, not autocannon)`,
        ...checkoutNotes(c),
        ...cpuText(spent, c.elapsedMs, "node"),
        ...check.notes,
      ],
    });
  } finally {
    pool.close();
  }
}

async function stockdContention(d: Info, host: StockdHost, spec: RunSpec): Promise<RunResult> {
  const r = await host.ready();
  const pool = await HttpPool.open(r.baseUrl, spec.clients);
  try {
    const result = await contentionResult(d, spec, host, "http", (sku) => {
      const body = reserveJson(sku, contentionHoldSeconds);
      const raw = pool.request("POST", reservePath, `Bearer ${r.serviceToken}`, body);
      return runRace(spec.clients, async () => httpStep(await pool.send(raw)).reason);
    });
    result.notes = [
      `${spec.clients} keep-alive connections (bare sockets, not autocannon)`,
      ...(result.notes ?? []),
    ];
    return result;
  } finally {
    pool.close();
  }
}

// ---- echo HTTP ------------------------------------------------------------------------------

export function echoHttpDriver(echo: EchoHost): Driver {
  const d: Info = { system: "echo HTTP", client: "node", tool: "autocannon" };
  echo.acquire();
  let closed = false;
  return {
    ...d,
    run: async (spec) => {
      requireScenario(
        d,
        spec,
        ["hot", "uniform", "checkout"],
        true,
        "the echo holds no stock to race for",
      );
      const server = await echo.ready();
      if (spec.scenario === "checkout") return echoCheckout(d, server, spec);
      const skus = spec.scenario === "hot" ? [syntheticSku(0)] : syntheticSkus();
      const l = await reserveLoad(
        server,
        spec,
        skus.map((s) => reserveJson(s)),
        "echo",
      );
      return loadResult(d, spec, l, null, []);
    },
    close: async () => {
      if (closed) return;
      closed = true;
      await echo.release();
    },
  };
}

async function echoCheckout(d: Info, server: ServerChild, spec: RunSpec): Promise<RunResult> {
  const pool = await HttpPool.open(`http://127.0.0.1:${server.httpPort}`, spec.clients);
  try {
    const ids = syntheticSkus().map((s) => s.productId);
    const note = `${spec.clients} keep-alive connections`;
    return await echoCheckoutResult(d, server, spec, httpCheckoutApi(pool), ids, note);
  } finally {
    pool.close();
  }
}
