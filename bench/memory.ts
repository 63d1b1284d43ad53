// Memory per SKU position and per open hold. Runs in its own process with
// --expose-gc (bench/engine.ts starts it); prints one `MEMORY {json}` line.
//
//   node --expose-gc --import tsx bench/memory.ts [count]

import { limits, Partition } from "../src/engine/index.ts";
import { productIdOf, stockedPartition, warehouseId } from "./lib/partition_loop.ts";
import { round } from "./lib/stats.ts";

export interface MemoryFigure {
  count: number;
  heapBytesPerItem: number;
  rssBytesPerItem: number;
  heapDeltaBytes: number;
  rssDeltaBytes: number;
}

export interface MemoryRun {
  positions: MemoryFigure;
  holds: MemoryFigure;
  holdsWithRequestId: MemoryFigure;
  /** Released holds, remembered for the idempotency window. */
  endedHolds: MemoryFigure;
}

const nowMs = 1_763_900_000_000;
/** Positions the holds are spread over. */
const holdPositionCount = 10_000;
/** Outbox drained this often, so events are not retained. */
const drainEvery = 4096;

interface Usage {
  heap: number;
  rss: number;
}

function settle(): Usage {
  const gc = globalThis.gc;
  if (gc === undefined) throw new Error("run with --expose-gc");
  for (let i = 0; i < 4; i++) gc();
  const u = process.memoryUsage();
  return { heap: u.heapUsed, rss: u.rss };
}

function figure(before: Usage, after: Usage, count: number): MemoryFigure {
  const heapDeltaBytes = after.heap - before.heap;
  const rssDeltaBytes = after.rss - before.rss;
  return {
    count,
    heapBytesPerItem: round(heapDeltaBytes / count, 1),
    rssBytesPerItem: round(rssDeltaBytes / count, 1),
    heapDeltaBytes,
    rssDeltaBytes,
  };
}

/** `count` positions in one partition; ids made on the fly so the only
 * references to them are the engine's. */
function measurePositions(count: number): { figure: MemoryFigure; keep: Partition } {
  const before = settle();
  const p = new Partition(0, { partitionCount: 1 });
  for (let i = 0; i < count; i++) {
    const r = p.receiveStock({ productId: productIdOf(i), warehouseId, quantity: 10 }, nowMs);
    if (!r.ok) throw new Error(`receiveStock: ${r.message}`);
    if (i % drainEvery === 0) p.takeOutbox();
  }
  p.takeOutbox();
  return { figure: figure(before, settle(), count), keep: p };
}

/** `count` open holds over `holdPositionCount` stocked positions; then,
 * without request ids, the same holds released: what the partition keeps of
 * an ended hold for the idempotency window. */
function measureHolds(
  count: number,
  withRequestId: boolean,
): { open: MemoryFigure; ended: MemoryFigure | null } {
  const p = stockedPartition(holdPositionCount, nowMs);
  const before = settle();
  for (let i = 0; i < count; i++) {
    const line = { productId: productIdOf(i % holdPositionCount), warehouseId, quantity: 1 };
    const cmd = withRequestId ? { lines: [line], requestId: `order-${i}` } : { lines: [line] };
    const r = p.reserve(cmd, nowMs);
    if (!r.ok) throw new Error(`reserve: ${r.message}`);
    if (i % drainEvery === 0) p.takeOutbox();
  }
  p.takeOutbox();
  const open = figure(before, settle(), count);
  if (p.holds.size !== count) throw new Error("holds were lost");
  if (withRequestId) return { open, ended: null };
  releaseAll(p);
  const ended = figure(before, settle(), Math.min(count, limits.closedHoldCountMax));
  if (p.holds.size !== 0 || p.closedHoldCount !== Math.min(count, limits.closedHoldCountMax)) {
    throw new Error("ended holds were lost");
  }
  return { open, ended };
}

function releaseAll(p: Partition): void {
  const ids = Float64Array.from(p.holds.values(), (h) => h.id);
  for (let i = 0; i < ids.length; i++) {
    const r = p.release({ holdId: ids[i]! }, nowMs + 1);
    if (!r.ok) throw new Error(`release: ${r.message}`);
    if (i % drainEvery === 0) p.takeOutbox();
  }
  p.takeOutbox();
}

const count = Number(process.argv[2] ?? 1_000_000);
// Each measurement keeps its partition alive until its figures are taken;
// the next one starts after it is dropped.
const positions = measurePositions(count).figure;
const holds = measureHolds(count, false);
const withRequestId = measureHolds(count, true);
const result: MemoryRun = {
  positions,
  holds: holds.open,
  holdsWithRequestId: withRequestId.open,
  endedHolds: holds.ended!,
};
console.log(`MEMORY ${JSON.stringify(result)}`);
