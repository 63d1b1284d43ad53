// The contention race: `clients` clients start at once, each reserving 1
// unit of one fresh position again and again until it is refused for want
// of stock. With `contentionUnits` units, exactly that many reservations
// must succeed and every client ends with one refusal: clients + units
// answers in all, whatever the number of clients.

import { LatencyHistogram } from "../lib/stats.ts";

/** Overload answers a client takes before it gives up. */
const overloadRetriesMax = 100;

const refusals = new Set(["OUT_OF_STOCK", "INSUFFICIENT_STOCK"]);
const overloads = new Set(["OVERLOADED", "RESOURCE_EXHAUSTED"]);

export interface RaceResult {
  elapsedMs: number;
  ok: number;
  refused: number;
  errors: number;
  /** reason -> answers */
  byReason: Record<string, number>;
  latency: LatencyHistogram;
}

/** `reserve` answers "OK", an error code (OUT_OF_STOCK, ...) or NO_ANSWER. */
export async function runRace(
  clients: number,
  reserve: () => Promise<string>,
): Promise<RaceResult> {
  const r: RaceResult = {
    elapsedMs: 0,
    ok: 0,
    refused: 0,
    errors: 0,
    byReason: {},
    latency: new LatencyHistogram(),
  };
  const client = async () => {
    let overloads_ = 0;
    for (;;) {
      const t0 = performance.now();
      const reason = await reserve();
      r.latency.recordMs(performance.now() - t0);
      r.byReason[reason] = (r.byReason[reason] ?? 0) + 1;
      if (reason === "OK") {
        r.ok++;
        continue;
      }
      if (refusals.has(reason)) {
        r.refused++;
        return;
      }
      r.errors++;
      if (!overloads.has(reason) || ++overloads_ > overloadRetriesMax) return;
    }
  };
  const t0 = performance.now();
  await Promise.all(Array.from({ length: clients }, client));
  r.elapsedMs = performance.now() - t0;
  return r;
}
