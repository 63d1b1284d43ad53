// Closed-loop clients against the real Engine: each keeps one request in
// flight (reserve, then release that hold), so N clients keep N in flight.

import { setTimeout as sleep, setImmediate as yieldTurn } from "node:timers/promises";
import { ErrorCode } from "../../src/engine/index.ts";
import type { Engine } from "../../src/host/index.ts";
import { productIdOf, warehouseId, xorshift32 } from "./partition_loop.ts";
import { LatencyHistogram, type LatencySummary, ratePerS, round } from "./stats.ts";

export interface ClientRun {
  inFlight: number;
  reservationsPerS: number;
  /** Reservations plus releases answered per second. */
  opsPerS: number;
  reserve: LatencySummary;
  release: LatencySummary;
  commitsPerS: number;
  eventsPerCommit: number;
  commitMsMean: number;
  failures: number;
  elapsedMs: number;
}

interface RunState {
  measuring: boolean;
  stopped: boolean;
  reservations: number;
  releases: number;
  failures: number;
  reserveLatency: LatencyHistogram;
  releaseLatency: LatencyHistogram;
}

/** Stocks `skuCount` positions (enough that no reservation is refused);
 * returns their product ids. */
export async function stockEngine(engine: Engine, skuCount: number): Promise<string[]> {
  const received = [];
  for (let i = 0; i < skuCount; i++) {
    received.push(
      engine.receiveStock({ productId: productIdOf(i), warehouseId, quantity: 1_000_000_000 }),
    );
  }
  for (const r of await Promise.all(received))
    if (!r.ok) throw new Error(`receiveStock: ${r.message}`);
  const productIds: string[] = [];
  for (let i = 0; i < skuCount; i++) productIds.push(productIdOf(i));
  return productIds;
}

async function client(
  engine: Engine,
  productIds: string[],
  s: RunState,
  seed: number,
): Promise<void> {
  const random = xorshift32(seed);
  while (!s.stopped) {
    const productId = productIds[Math.floor(random() * productIds.length)]!;
    const t0 = performance.now();
    const r = await engine.reserve({ lines: [{ productId, warehouseId, quantity: 1 }] });
    const t1 = performance.now();
    if (!r.ok) {
      if (r.code === ErrorCode.Unavailable) throw new Error(`reserve: ${r.message}`);
      // An overloaded engine answers at once: give the event loop a turn.
      s.failures++;
      await yieldTurn();
      continue;
    }
    const released = await engine.release({ holdId: r.reservation.holdId });
    const t2 = performance.now();
    if (!released.ok) throw new Error(`release: ${released.message}`);
    if (s.measuring) {
      s.reservations++;
      s.releases++;
      s.reserveLatency.recordMs(t1 - t0);
      s.releaseLatency.recordMs(t2 - t1);
    }
  }
}

/** Runs `inFlight` clients: a warm-up, then a measured window. */
export async function runClients(
  engine: Engine,
  productIds: string[],
  inFlight: number,
  warmupMs: number,
  durationMs: number,
): Promise<ClientRun> {
  const s: RunState = {
    measuring: false,
    stopped: false,
    reservations: 0,
    releases: 0,
    failures: 0,
    reserveLatency: new LatencyHistogram(),
    releaseLatency: new LatencyHistogram(),
  };
  const clients: Promise<void>[] = [];
  for (let c = 0; c < inFlight; c++) clients.push(client(engine, productIds, s, 0x5eed + c * 7919));
  await sleep(warmupMs);
  const before = await engine.stats();
  s.measuring = true;
  const t0 = performance.now();
  await sleep(durationMs);
  s.measuring = false;
  const elapsedMs = performance.now() - t0;
  const after = await engine.stats();
  s.stopped = true;
  await Promise.all(clients);
  const commits = after.commits - before.commits;
  const events = after.eventsJournaled - before.eventsJournaled;
  return {
    inFlight,
    reservationsPerS: ratePerS(s.reservations, elapsedMs),
    opsPerS: ratePerS(s.reservations + s.releases, elapsedMs),
    reserve: s.reserveLatency.summaryMs(),
    release: s.releaseLatency.summaryMs(),
    commitsPerS: ratePerS(commits, elapsedMs),
    eventsPerCommit: commits === 0 ? 0 : round(events / commits, 1),
    commitMsMean:
      commits === 0 ? 0 : round((after.commitMsTotal - before.commitMsTotal) / commits, 3),
    failures: s.failures,
    elapsedMs: round(elapsedMs),
  };
}
