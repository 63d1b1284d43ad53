// Replay speed: a journal built from real Partition events (written with
// Store.append, many batches per transaction), then every partition
// recovered from empty.

import { digestPartition, Partition, partitionOf } from "../../src/engine/index.ts";
import { type Batch, recoverPartition, Store } from "../../src/persistence/index.ts";
import { productIdOf, warehouseId, xorshift32 } from "./partition_loop.ts";
import { ratePerS, round } from "./stats.ts";

export interface ReplayRun {
  partitionCount: number;
  events: number;
  journalBytes: number;
  buildMs: number;
  replayMs: number;
  eventsPerS: number;
  /** Recovered state equals the state that wrote the journal. */
  digestsMatch: boolean;
}

const partitionCount = 64;
const skuCount = 10_000;
/** Reservations (and releases) made across partitions per transaction. */
const pairsPerRound = 32_768;
/** One reservation in this many carries a request id, as keyed clients do. */
const requestIdEvery = 4;
const holdDurationMs = 3_600_000;
const startTimeMs = 1_763_900_000_000;

interface Builder {
  partitions: Partition[];
  /** For each SKU: its partition. */
  owner: Uint16Array;
  random: () => number;
  reservations: number;
}

function newBuilder(): Builder {
  const partitions: Partition[] = [];
  for (let id = 0; id < partitionCount; id++) {
    partitions.push(new Partition(id, { partitionCount, holdDurationMs }));
  }
  const owner = new Uint16Array(skuCount);
  for (let i = 0; i < skuCount; i++) {
    const productId = productIdOf(i);
    owner[i] = partitionOf(productId, partitionCount);
    const r = partitions[owner[i]!]!.receiveStock(
      { productId, warehouseId, quantity: 1_000_000_000 },
      startTimeMs,
    );
    if (!r.ok) throw new Error(`receiveStock: ${r.message}`);
  }
  return { partitions, owner, random: xorshift32(42), reservations: 0 };
}

/** One round: reservations, then their releases, then one batch per partition. */
function buildRound(b: Builder, nowMs: number): Batch[] {
  const open: [Partition, number][] = [];
  for (let i = 0; i < pairsPerRound; i++) {
    const sku = Math.floor(b.random() * skuCount);
    const p = b.partitions[b.owner[sku]!]!;
    const n = b.reservations++;
    const line = { productId: productIdOf(sku), warehouseId, quantity: 1 };
    const cmd =
      n % requestIdEvery === 0 ? { lines: [line], requestId: `order-${n}` } : { lines: [line] };
    const r = p.reserve(cmd, nowMs);
    if (!r.ok) throw new Error(`reserve: ${r.message}`);
    open.push([p, r.reservation.holdId]);
  }
  for (const [p, holdId] of open) {
    const r = p.release({ holdId }, nowMs + 1);
    if (!r.ok) throw new Error(`release: ${r.message}`);
  }
  return takeBatches(b.partitions);
}

function takeBatches(partitions: Partition[]): Batch[] {
  const batches: Batch[] = [];
  for (const p of partitions) {
    const events = p.takeOutbox();
    if (events.length === 0) continue;
    batches.push({ partition: p.id, firstSeq: events[0]!.seq, lastSeq: p.seq, epoch: 1, events });
  }
  return batches;
}

/** Builds a journal of at least `eventCountMin` events in `dataDir`. */
async function buildJournal(
  dataDir: string,
  eventCountMin: number,
): Promise<{ b: Builder; events: number; bytes: number }> {
  const store = Store.open(dataDir, { durability: "relaxed" });
  const b = newBuilder();
  let events = 0;
  let nowMs = startTimeMs;
  let batches = takeBatches(b.partitions);
  for (;;) {
    for (const batch of batches) events += batch.events.length;
    await store.append(batches);
    if (events >= eventCountMin) break;
    nowMs += 10;
    batches = buildRound(b, nowMs);
  }
  await store.close();
  const reader = Store.open(dataDir);
  let bytes = 0;
  for (let id = 0; id < partitionCount; id++) {
    for (const key of reader.rawJournalKeys(id)) bytes += reader.rawGetJournal(key)?.length ?? 0;
  }
  await reader.close();
  return { b, events, bytes };
}

export async function runReplay(dataDir: string, eventCountMin: number): Promise<ReplayRun> {
  const t0 = performance.now();
  const built = await buildJournal(dataDir, eventCountMin);
  const buildMs = performance.now() - t0;
  const store = Store.open(dataDir);
  const config = { partitionCount, holdDurationMs };
  const recovered: Partition[] = [];
  let events = 0;
  const t1 = performance.now();
  for (let id = 0; id < partitionCount; id++) {
    const r = recoverPartition(store, id, config, { fromEmpty: true });
    events += r.eventsReplayed;
    recovered.push(r.partition);
  }
  const replayMs = performance.now() - t1;
  await store.close();
  const digestsMatch = recovered.every(
    (p, id) => digestPartition(p) === digestPartition(built.b.partitions[id]!),
  );
  if (events !== built.events) throw new Error(`replayed ${events} events of ${built.events}`);
  return {
    partitionCount,
    events,
    journalBytes: built.bytes,
    buildMs: round(buildMs),
    replayMs: round(replayMs),
    eventsPerS: ratePerS(events, replayMs),
    digestsMatch,
  };
}
