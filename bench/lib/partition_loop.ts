// The no-journal loop: one Partition object, reserve batches then release
// batches, timed apart. Used on the main thread and inside worker threads.

import { Partition, type ReleaseHold } from "../../src/engine/index.ts";

export interface LoopOptions {
  /** SKU positions to spread reservations over (uniform random). */
  skuCount: number;
  /** Every reservation on one position instead. */
  hot: boolean;
  warmupMs: number;
  durationMs: number;
  /** Reservations per batch; the batch is then released. */
  batchCount: number;
  seed: number;
}

export interface LoopResult {
  /** Reservations (and as many releases) in the measured window. */
  reservations: number;
  /** Time spent inside reserve calls only. */
  reserveMs: number;
  /** Time spent inside release calls and taking the outbox. */
  releaseMs: number;
  /** Wall time of the measured window. */
  elapsedMs: number;
}

/** Units received per position: never runs out, within quantityMax. */
const stockPerPosition = 1_000_000_000;
/** Entries of the precomputed random position table (a power of two). */
const randomTableCount = 1 << 20;
const startTimeMs = 1_763_900_000_000;

export const warehouseId = "wh-1";

export function productIdOf(i: number): string {
  return `sku-${String(i).padStart(6, "0")}`;
}

/** A small, seeded generator (xorshift32): the same positions on every run. */
export function xorshift32(seed: number): () => number {
  let x = seed | 0 || 0x9e3779b9;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 4294967296;
  };
}

/** A partition that owns every product (partitionCount 1), stocked. */
export function stockedPartition(skuCount: number, nowMs: number): Partition {
  const p = new Partition(0, { partitionCount: 1, holdDurationMs: 3_600_000 });
  for (let i = 0; i < skuCount; i++) {
    const r = p.receiveStock(
      { productId: productIdOf(i), warehouseId, quantity: stockPerPosition },
      nowMs,
    );
    if (!r.ok) throw new Error(`receiveStock: ${r.message}`);
    if ((i & 4095) === 4095) p.takeOutbox();
  }
  p.takeOutbox();
  return p;
}

export function runPartitionLoop(options: LoopOptions): LoopResult {
  const p = stockedPartition(options.skuCount, startTimeMs);
  // Each reservation is a fresh command, as a gateway decodes one per
  // request; the product ids are made once. (10,000 prebuilt command objects
  // read in random order cost more in cache misses than building one.)
  const productIds: string[] = [];
  for (let i = 0; i < options.skuCount; i++) productIds.push(productIdOf(i));
  const random = xorshift32(options.seed);
  const positions = new Uint32Array(randomTableCount);
  for (let i = 0; i < randomTableCount; i++) {
    positions[i] = options.hot ? 0 : Math.floor(random() * options.skuCount);
  }
  const state: LoopState = {
    p,
    productIds,
    positions,
    cursor: 0,
    holdIds: new Float64Array(options.batchCount),
  };
  const started = performance.now();
  const clock = () => startTimeMs + Math.floor(performance.now() - started);
  const warmupEnd = performance.now() + options.warmupMs;
  while (performance.now() < warmupEnd) runBatch(state, clock());
  const result: LoopResult = { reservations: 0, reserveMs: 0, releaseMs: 0, elapsedMs: 0 };
  const t0 = performance.now();
  const end = t0 + options.durationMs;
  for (let now = t0; now < end; now = performance.now()) {
    const [reserveMs, releaseMs] = runBatch(state, clock());
    result.reserveMs += reserveMs;
    result.releaseMs += releaseMs;
    result.reservations += options.batchCount;
  }
  result.elapsedMs = performance.now() - t0;
  p.checkInvariants();
  return result;
}

interface LoopState {
  p: Partition;
  productIds: string[];
  positions: Uint32Array;
  cursor: number;
  holdIds: Float64Array;
}

/** One batch of reservations, then their releases; returns both times. */
function runBatch(s: LoopState, nowMs: number): [number, number] {
  const { p, productIds, positions, holdIds } = s;
  const mask = positions.length - 1;
  const t0 = performance.now();
  for (let i = 0; i < holdIds.length; i++) {
    const productId = productIds[positions[s.cursor++ & mask]!]!;
    const r = p.reserve({ lines: [{ productId, warehouseId, quantity: 1 }] }, nowMs);
    if (!r.ok) throw new Error(`reserve: ${r.message}`);
    holdIds[i] = r.reservation.holdId;
  }
  const t1 = performance.now();
  const release: ReleaseHold = { holdId: 0 };
  for (let i = 0; i < holdIds.length; i++) {
    release.holdId = holdIds[i]!;
    const r = p.release(release, nowMs);
    if (!r.ok) throw new Error(`release: ${r.message}`);
  }
  p.takeOutbox();
  const t2 = performance.now();
  return [t1 - t0, t2 - t1];
}
