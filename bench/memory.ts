// Memory per SKU position and per open hold. Runs in its own process with
// --expose-gc (bench/engine.ts starts it); prints one `MEMORY {json}` line.
//
//   node --expose-gc --import tsx bench/memory.ts [count]

import { limits, Partition } from "../src/engine/index.ts";
import { productIdOf, stockedPartition, warehouseId } from "./lib/partition_loop.ts";
import { round } from "./lib/stats.ts";

/** "heap" is the V8 heap used plus typed-array backing stores, which live
 * outside the heap. */
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
  // Typed arrays keep their elements outside the V8 heap (open holds,
  // remembered requests and ended holds live in them): count both.
  return { heap: u.heapUsed + u.arrayBuffers, rss: u.rss };
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

/** `count` open holds over `holdPositionCount` stocked positions. */
function measureOpenHolds(count: number, withRequestId: boolean): MemoryFigure {
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
  if (p.holdCount !== count) throw new Error("holds were lost");
  return open;
}

/** What the partition keeps of an ended hold for the idempotency window:
 * holds placed and released one at a time (so that the open-hold table
 * stays small), as many as the partition remembers. */
function measureEndedHolds(count: number): MemoryFigure {
  const p = stockedPartition(holdPositionCount, nowMs);
  const ended = Math.min(count, limits.closedHoldCountMax);
  const before = settle();
  for (let i = 0; i < ended; i++) {
    const line = { productId: productIdOf(i % holdPositionCount), warehouseId, quantity: 1 };
    const r = p.reserve({ lines: [line] }, nowMs);
    if (!r.ok) throw new Error(`reserve: ${r.message}`);
    const released = p.release({ holdId: r.reservation.holdId }, nowMs);
    if (!released.ok) throw new Error(`release: ${released.message}`);
    if (i % drainEvery === 0) p.takeOutbox();
  }
  p.takeOutbox();
  const figureEnded = figure(before, settle(), ended);
  if (p.holdCount !== 0 || p.closedHoldCount !== ended) throw new Error("ended holds were lost");
  return figureEnded;
}

const count = Number(process.argv[2] ?? 1_000_000);
// Each measurement keeps its partition alive until its figures are taken;
// the next one starts after it is dropped.
const positions = measurePositions(count).figure;
const result: MemoryRun = {
  positions,
  holds: measureOpenHolds(count, false),
  holdsWithRequestId: measureOpenHolds(count, true),
  endedHolds: measureEndedHolds(count),
};
console.log(`MEMORY ${JSON.stringify(result)}`);
