// The grpc-js drivers: "stockd gRPC" (unary Reserve; checkout; contention),
// "stockd gRPC batch" (ReserveBatch of 1,000) and "echo gRPC" (the bare
// grpc-js server with the same load). Reserve load comes from
// bench/lib/grpc_load.ts in a worker thread (closed loop, or calls started
// at a fixed rate); checkout and contention chain calls on a grpc-js caller
// in this thread.

import { echoPath } from "../lib/echo_grpc.ts";
import type { Sku } from "../lib/gateway_seed.ts";
import {
  type GrpcLoadResult,
  type GrpcWorkload,
  methodPaths,
  runGrpcLoadInWorker,
} from "../lib/grpc_load.ts";
import type { Driver, RunResult, RunSpec, ScenarioName } from "../lib/scenario.ts";
import { type CpuSpent, cpuMeter, type ServerChild } from "../lib/server_child.ts";
import { GrpcCaller } from "./callers.ts";
import { grpcCheckoutApi, runCheckout } from "./checkout.ts";
import {
  connectionsFor,
  countsText,
  cpuText,
  latencyOf,
  latencyOfHistogram,
  openLoopInFlightMax,
  pick,
  requireScenario,
  resultOf,
} from "./common.ts";
import { runRace } from "./contention.ts";
import type { EchoHost } from "./echo.ts";
import {
  checkoutNotes,
  contentionResult,
  echoCheckoutResult,
  stockdCheckoutHooks,
} from "./outcomes.ts";
import { reserveBatchProto, reserveProto } from "./requests.ts";
import { contentionHoldSeconds, type StockdHost } from "./stockd.ts";

/** Reservations per ReserveBatch call, and distinct batches sent. */
export const batchSize = 1000;
const batchBodyCount = 8;
/** Open loop: ReserveBatch calls outstanding at most. */
const batchInFlightOpenMax = 64;

type Info = Pick<Driver, "system" | "client" | "tool">;

interface UnaryRun {
  load: GrpcLoadResult;
  spent: CpuSpent;
  channels: number;
  inFlight: number;
}

/** Unary calls (Reserve or ReserveBatch) from a worker thread, with the
 * server's CPU over the measured window. */
async function unaryLoad(
  server: ServerChild,
  spec: RunSpec,
  workload: GrpcWorkload,
  callsInFlight: number,
  callsPerS: number | undefined,
  inFlightOpenMax: number,
  echo: boolean,
): Promise<UnaryRun> {
  const channels = connectionsFor(callsInFlight);
  const inFlight = callsPerS === undefined ? callsInFlight : inFlightOpenMax;
  const meter = cpuMeter(server);
  const load = await runGrpcLoadInWorker(
    {
      address: `127.0.0.1:${server.grpcPort}`,
      client: "grpc-js",
      channelCount: channels,
      inFlight,
      warmupMs: spec.warmupMs,
      durationMs: spec.durationMs,
      ratePerS: callsPerS ?? null,
      workload,
      echoPath: echo ? echoPath : null,
    },
    (mark) => (mark === "measure" ? meter.start() : meter.stop()),
  );
  return { load, spent: meter.spent(), channels, inFlight };
}

/** Answers by gRPC code: OK, FAILED_PRECONDITION (a Reserve's only one is
 * no stock), the rest. */
function unaryCounts(load: GrpcLoadResult): { ok: number; refused: number; errors: number } {
  let ok = 0;
  let refused = 0;
  let errors = load.skipped;
  for (const [key, n] of Object.entries(load.byCode)) {
    const code = key.slice(key.indexOf(" ") + 1);
    if (code === "OK") ok += n;
    else if (code === "FAILED_PRECONDITION") refused += n;
    else errors += n;
  }
  return { ok, refused, errors };
}

function unaryNotes(spec: RunSpec, u: UnaryRun): string[] {
  const load =
    spec.ratePerS === undefined
      ? `${u.inFlight} calls in flight`
      : `calls started at a fixed rate, ${u.inFlight} outstanding at most`;
  const notes = [
    `${u.channels} channels, ${load}; latency of every answer`,
    `answers: ${countsText(u.load.byCode) || "none"}`,
    ...cpuText(u.spent, u.load.elapsedMs, "node"),
  ];
  if (u.load.skipped > 0)
    notes.push(`open loop: ${u.load.skipped} sends skipped (counted as errors)`);
  for (const [k, msg] of Object.entries(u.load.errorSamples)) notes.push(`first ${k}: ${msg}`);
  return notes;
}

function reserveWorkload(bodies: Uint8Array[], token: string): GrpcWorkload {
  return { kind: "unary", path: methodPaths.reserve, bodies, token, reservationsPerCall: 0 };
}

function skusOf(scenario: ScenarioName, hot: Sku, uniform: readonly Sku[]): readonly Sku[] {
  return scenario === "hot" ? [hot] : uniform;
}

// ---- stockd gRPC ---------------------------------------------------------------------

export function stockdGrpcDriver(host: StockdHost): Driver {
  const d: Info = { system: "stockd gRPC", client: "node", tool: "grpc-js" };
  host.acquire();
  let closed = false;
  return {
    ...d,
    run: async (spec) => {
      requireScenario(d, spec, ["hot", "uniform", "checkout", "contention"], true, "");
      if (spec.scenario === "checkout") return stockdCheckout(d, host, spec);
      if (spec.scenario === "contention") return stockdContention(d, host, spec);
      const r = await host.ready();
      await host.settle();
      if (spec.scenario === "hot") await host.topUpHot();
      const skus = skusOf(spec.scenario, r.seed.hot, r.seed.uniform);
      const workload = reserveWorkload(
        skus.map((s) => reserveProto(s)),
        r.serviceToken,
      );
      const u = await unaryLoad(
        r.server,
        spec,
        workload,
        spec.clients,
        spec.ratePerS,
        openLoopInFlightMax,
        false,
      );
      const counts = unaryCounts(u.load);
      const check = await host.checkStock(skus.map((s) => s.productId));
      return resultOf(d, spec, {
        elapsedMs: u.load.elapsedMs,
        ...counts,
        latency: latencyOf(u.load.latency),
        serverUs: u.spent.serverUs,
        consistent: check.consistent,
        notes: [...unaryNotes(spec, u), ...check.notes],
      });
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
  await host.settle();
  const caller = await GrpcCaller.open(r.grpcAddress, connectionsFor(spec.clients));
  const meter = cpuMeter(r.server);
  try {
    const c = await runCheckout({
      api: grpcCheckoutApi(caller, null),
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
        `${connectionsFor(spec.clients)} channels`,
        ...checkoutNotes(c),
        ...cpuText(spent, c.elapsedMs, "node"),
        ...check.notes,
      ],
    });
  } finally {
    caller.close();
  }
}

async function stockdContention(d: Info, host: StockdHost, spec: RunSpec): Promise<RunResult> {
  const r = await host.ready();
  await host.settle();
  const service = `Bearer ${r.serviceToken}`;
  const caller = await GrpcCaller.open(r.grpcAddress, connectionsFor(spec.clients));
  try {
    return await contentionResult(d, spec, host, "grpc", (sku) => {
      const body = reserveProto(sku, contentionHoldSeconds);
      return runRace(
        spec.clients,
        async () => (await caller.call(methodPaths.reserve, body, service)).reason,
      );
    });
  } finally {
    caller.close();
  }
}

// ---- stockd gRPC batch -----------------------------------------------------------------

/** ReserveBatch calls in flight for `clients` reservations in flight. */
export function batchCallsFor(clients: number): number {
  return Math.max(1, Math.ceil(clients / batchSize));
}

export function stockdBatchDriver(host: StockdHost): Driver {
  const d: Info = { system: "stockd gRPC batch", client: "node", tool: "grpc-js" };
  host.acquire();
  let closed = false;
  return {
    ...d,
    run: async (spec) => {
      requireScenario(
        d,
        spec,
        ["hot", "uniform"],
        true,
        "ReserveBatch has no checkout, and a race of single units is what contention measures",
      );
      const r = await host.ready();
      await host.settle();
      if (spec.scenario === "hot") await host.topUpHot();
      const skus = skusOf(spec.scenario, r.seed.hot, r.seed.uniform);
      const bodies = Array.from({ length: spec.scenario === "hot" ? 1 : batchBodyCount }, () =>
        reserveBatchProto(Array.from({ length: batchSize }, () => pick(skus))),
      );
      const workload: GrpcWorkload = {
        kind: "unary",
        path: methodPaths.reserveBatch,
        bodies,
        token: r.serviceToken,
        reservationsPerCall: batchSize,
      };
      const calls = batchCallsFor(spec.clients);
      const callsPerS = spec.ratePerS === undefined ? undefined : spec.ratePerS / batchSize;
      const u = await unaryLoad(
        r.server,
        spec,
        workload,
        calls,
        callsPerS,
        batchInFlightOpenMax,
        false,
      );
      const failedCalls = unaryCounts(u.load);
      const check = await host.checkStock(skus.map((s) => s.productId));
      return resultOf(d, spec, {
        elapsedMs: u.load.elapsedMs,
        ok: u.load.reservationsOk,
        refused: u.load.reservationsRefused,
        errors: (failedCalls.errors + failedCalls.refused) * batchSize,
        latency: latencyOf(u.load.latency),
        serverUs: u.spent.serverUs,
        consistent: check.consistent,
        notes: [
          `${batchSize} reservations per call, ${calls} call(s) in flight ` +
            `(clients = reservations in flight, rounded up to whole calls); latency is per call`,
          ...unaryNotes(spec, u),
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

// ---- echo gRPC ---------------------------------------------------------------------------

export function echoGrpcDriver(echo: EchoHost): Driver {
  const d: Info = { system: "echo gRPC", client: "node", tool: "grpc-js" };
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
      // The echo ignores what it is sent: hot and uniform differ only in the
      // bytes the client picks.
      const skus = spec.scenario === "hot" ? [syntheticSku(0)] : syntheticSkus();
      const u = await unaryLoad(
        server,
        spec,
        reserveWorkload(
          skus.map((s) => reserveProto(s)),
          "echo",
        ),
        spec.clients,
        spec.ratePerS,
        openLoopInFlightMax,
        true,
      );
      const counts = unaryCounts(u.load);
      return resultOf(d, spec, {
        elapsedMs: u.load.elapsedMs,
        ...counts,
        latency: latencyOf(u.load.latency),
        serverUs: u.spent.serverUs,
        consistent: null,
        notes: unaryNotes(spec, u),
      });
    },
    close: async () => {
      if (closed) return;
      closed = true;
      await echo.release();
    },
  };
}

async function echoCheckout(d: Info, server: ServerChild, spec: RunSpec): Promise<RunResult> {
  const caller = await GrpcCaller.open(
    `127.0.0.1:${server.grpcPort}`,
    connectionsFor(spec.clients),
  );
  try {
    const api = grpcCheckoutApi(caller, echoPath);
    const ids = syntheticSkus().map((s) => s.productId);
    const note = `${connectionsFor(spec.clients)} channels`;
    return await echoCheckoutResult(d, server, spec, api, ids, note);
  } finally {
    caller.close();
  }
}

/** Ids shaped like stockd's for the echo runs (the echo never reads them). */
export function syntheticSku(i: number): Sku {
  // As long as stockd's ids (a prefix and a UUID), so the bytes sent match.
  const id = (prefix: string, n: number) =>
    `${prefix}_00000000-0000-4000-8000-${n.toString(16).padStart(12, "0")}`;
  return { productId: id("prd", Math.floor(i / 100)), warehouseId: id("wh", i % 100) };
}

export function syntheticSkus(): Sku[] {
  return Array.from({ length: 10_000 }, (_, i) => syntheticSku(i));
}
