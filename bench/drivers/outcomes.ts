// What the drivers of both transports make of a checkout or a contention
// run: the notes, the bookkeeping hooks for the stock check, and the
// contention verdict (exactly `contentionUnits` held, the position empty).

import type { Sku } from "../lib/gateway_seed.ts";
import { contentionUnits, type Driver, type RunResult, type RunSpec } from "../lib/scenario.ts";
import { cpuMeter, type ServerChild } from "../lib/server_child.ts";
import { round } from "../lib/stats.ts";
import {
  type CheckoutApi,
  type CheckoutOptions,
  type CheckoutResult,
  runCheckout,
} from "./checkout.ts";
import {
  countsText,
  cpuText,
  latencyOfHistogram,
  openLoopInFlightMax,
  resultOf,
} from "./common.ts";
import type { RaceResult } from "./contention.ts";
import { type RequestDelta, requestDelta, scrape } from "./metrics.ts";
import type { StockdHost } from "./stockd.ts";

type Info = Pick<Driver, "system" | "client" | "tool">;

/** New customers from stockd's key; paid lines booked as fulfilled. */
export function stockdCheckoutHooks(
  host: StockdHost,
): Pick<CheckoutOptions, "newCustomer" | "onPaid" | "onPaidMaybe"> {
  return {
    newCustomer: async () => `Bearer ${await host.customerToken()}`,
    onPaid: (productIds) => {
      for (const p of productIds) host.fulfil(p, 1);
    },
    onPaidMaybe: (productIds) => {
      for (const p of productIds) host.fulfilMaybe(p, 1);
    },
  };
}

export function checkoutNotes(c: CheckoutResult): string[] {
  const perS = (n: number) => (c.elapsedMs > 0 ? round((n * 1000) / c.elapsedMs) : 0);
  const s = c.sessionLatency.summaryMs();
  const notes = [
    `ok = orders created; paid ${c.paid} (${perS(c.paid)}/s), left to expire ${c.leftToExpire}`,
    `latency: the Checkout call; from the session's start (3 cart lines + checkout) p50 ${s.p50Ms} p99 ${s.p99Ms} ms`,
    `answers: ${countsText(c.byStep) || "none"}`,
  ];
  if (c.skipped > 0) notes.push(`open loop: ${c.skipped} sessions skipped (counted as errors)`);
  if (c.failed > 0) notes.push(`${c.failed} sessions threw (errors); first: ${c.firstFailure}`);
  return notes;
}

/** A warm-up race on a position of its own (the run's first answers are
 * otherwise cold code on both sides), then the measured race on a fresh
 * one, with the server's CPU and stockd's own counts of the Reserve
 * answers, checked. `race` runs a race on a position; `transport` is the
 * one stockd counts the answers under. */
export async function contentionResult(
  d: Info,
  spec: RunSpec,
  host: StockdHost,
  transport: "grpc" | "http",
  race: (sku: Sku) => Promise<RaceResult>,
): Promise<RunResult> {
  const r = await host.ready();
  if (spec.warmupMs > 0) {
    const warm = await race(await host.freshPosition(contentionUnits));
    host.heldLong(warm.ok);
  }
  const sku = await host.freshPosition(contentionUnits);
  const meter = cpuMeter(r.server);
  const before = await scrape(r.baseUrl);
  meter.start();
  const result = await race(sku);
  meter.stop();
  const after = await scrape(r.baseUrl);
  const delta = requestDelta(before, after, transport, "Reserve");
  host.heldLong(delta.ok);
  const verdict = await contentionVerdict(host, sku, result.ok, delta);
  const spent = meter.spent();
  const answers = result.ok + result.refused + result.errors;
  return contentionRunResult(d, spec, answers, {
    elapsedMs: result.elapsedMs,
    ok: result.ok,
    refused: result.refused,
    errors: result.errors,
    latency: latencyOfHistogram(result.latency),
    serverUs: spent.serverUs,
    consistent: verdict.consistent,
    notes: [
      `answers: ${countsText(result.byReason)}`,
      ...verdict.notes,
      ...cpuText(spent, result.elapsedMs, "node"),
    ],
  });
}

/** okPerS of a contention run is answers per second: its ok is fixed. */
export function contentionRunResult(
  d: Info,
  spec: RunSpec,
  answers: number,
  m: Parameters<typeof resultOf>[2],
): RunResult {
  const r = resultOf(d, spec, m);
  r.okPerS = m.elapsedMs > 0 ? round((answers * 1000) / m.elapsedMs) : 0;
  r.notes = [
    `okPerS is answers/s (${answers} answers: every client reserves 1 unit until refused); ` +
      `after a warm-up race on a position of its own`,
    ...(r.notes ?? []),
  ];
  return r;
}

/** Exactly `contentionUnits` held by the answers and by stockd's counters,
 * and the position shows them reserved with nothing available. */
export async function contentionVerdict(
  host: StockdHost,
  sku: Sku,
  okAnswers: number,
  delta: RequestDelta,
): Promise<{ consistent: boolean; notes: string[] }> {
  const levels = await host.levels(sku.productId);
  const level = levels.find((l) => l.warehouseId === sku.warehouseId);
  const stock = await host.checkStock([sku.productId]);
  const consistent =
    okAnswers === contentionUnits &&
    delta.ok === contentionUnits &&
    level?.reserved === contentionUnits &&
    level.available === 0 &&
    stock.consistent;
  return {
    consistent,
    notes: [
      `held ${okAnswers} of ${contentionUnits} units; stockd counted ${countsText(delta.byCode)}; ` +
        `the position: available ${level?.available ?? "?"}, reserved ${level?.reserved ?? "?"}`,
      ...stock.notes,
    ],
  };
}

/** The checkout workload against a bare echo server (either transport):
 * the same calls as stockd's checkout, answered without work. */
export async function echoCheckoutResult(
  d: Info,
  server: ServerChild,
  spec: RunSpec,
  api: CheckoutApi,
  productIds: string[],
  connectionNote: string,
): Promise<RunResult> {
  const meter = cpuMeter(server);
  const c = await runCheckout({
    api,
    productIds,
    service: "Bearer echo",
    newCustomer: async () => "Bearer echo",
    onPaid: () => {},
    onPaidMaybe: () => {},
    clients: spec.clients,
    ratePerS: spec.ratePerS,
    inFlightMax: openLoopInFlightMax,
    warmupMs: spec.warmupMs,
    durationMs: spec.durationMs,
    onPhase: (mark) => (mark === "measure" ? meter.start() : meter.stop()),
  });
  const spent = meter.spent();
  return resultOf(d, spec, {
    elapsedMs: c.elapsedMs,
    ok: c.checkouts,
    refused: c.refused,
    errors: c.errors,
    latency: latencyOfHistogram(c.checkoutLatency),
    serverUs: spent.serverUs,
    consistent: null,
    notes: [
      `${connectionNote}; the same calls as stockd's checkout, to the echo`,
      ...checkoutNotes(c),
      ...cpuText(spent, c.elapsedMs, "node"),
    ],
  });
}
