import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import {
  digestPartition,
  EventType,
  Partition,
  type PartitionConfig,
  partitionOf,
} from "../../src/engine/index.ts";
import { Engine, StartupError } from "../../src/host/index.ts";
import {
  type Batch,
  CorruptionError,
  DataDirError,
  encodeBatch,
  encodeSnapshot,
  frame,
  recoverPartition,
  Store,
  snapshotPartition,
} from "../../src/persistence/index.ts";

// The LMDB store, for real, in temp directories: the journal keyed by
// [partition, lastSeq], its checks (checksum, decoding, key, gaps),
// snapshots, and what the engine does at start-up with a damaged directory.

const partitionCount = 4;
const holdDurationMs = 3_600_000;
const config: PartitionConfig = { partitionCount, holdDurationMs, paranoid: true };
const startMs = 1_763_900_000_000;

const dirs: string[] = [];
const stores: Store[] = [];
const engines: Engine[] = [];

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), "stockd-store-"));
  dirs.push(dir);
  return dir;
}

function openStore(dir: string): Store {
  const store = Store.open(dir);
  stores.push(store);
  return store;
}

async function closeStore(store: Store): Promise<void> {
  stores.splice(stores.indexOf(store), 1);
  await store.close();
}

async function openEngine(options: Parameters<typeof Engine.open>[0]): Promise<Engine> {
  const engine = await Engine.open(options);
  engines.push(engine);
  return engine;
}

async function closeEngine(engine: Engine): Promise<void> {
  engines.splice(engines.indexOf(engine), 1);
  await engine.close();
}

afterEach(async () => {
  for (const e of engines.splice(0)) await e.close();
  for (const s of stores.splice(0)) await s.close();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

/** Products whose partition (of 4) is `id`. */
function productsOf(id: number, n: number): string[] {
  const out: string[] = [];
  for (let i = 0; out.length < n; i++) {
    const p = `sku-${i}`;
    if (partitionOf(p, partitionCount) === id) out.push(p);
  }
  return out;
}

/**
 * Drives a real partition with a mix of commands and cuts its events into
 * journal batches of about `eventsPerBatch` events.
 */
class JournalWriter {
  readonly partition: Partition;
  readonly batches: Batch[] = [];
  private readonly products: string[];
  private nowMs = startMs;
  private step = 0;

  constructor(readonly id: number) {
    this.partition = new Partition(id, config);
    this.products = productsOf(id, 3);
  }

  nextBatch(eventsPerBatch: number): Batch {
    const p = this.partition;
    while (p.outbox.length < eventsPerBatch) this.command();
    const events = p.takeOutbox();
    const batch: Batch = {
      partition: this.id,
      firstSeq: events[0]!.seq,
      lastSeq: events[events.length - 1]!.seq,
      epoch: 1,
      events,
    };
    this.batches.push(batch);
    return batch;
  }

  private command(): void {
    const p = this.partition;
    const k = this.step++;
    this.nowMs += 7;
    const productId = this.products[k % this.products.length]!;
    const holds = p.holdsInOrder().map((h) => h.id);
    switch (k % 6) {
      case 0:
      case 3:
        p.receiveStock({ productId, warehouseId: `w${k % 2}`, quantity: 10 + (k % 5) }, this.nowMs);
        break;
      case 1:
      case 4:
        p.reserve(
          {
            lines: [
              { productId, warehouseId: "w0", quantity: 1 + (k % 3) },
              { productId, warehouseId: "w1", quantity: 1 },
            ],
            ...(k % 4 === 1 ? { requestId: `req-${k}` } : {}),
          },
          this.nowMs,
        );
        break;
      case 2:
        if (holds.length > 0) p.release({ holdId: holds[0]! }, this.nowMs);
        else p.adjustStock({ productId, warehouseId: "w0", delta: 3, reason: 5 }, this.nowMs);
        break;
      default:
        if (holds.length > 0)
          p.fulfil({ holdId: holds[holds.length - 1]!, quantities: [1, 0] }, this.nowMs);
        else p.adjustStock({ productId, warehouseId: "w1", delta: 2, reason: 3 }, this.nowMs);
    }
  }
}

/** Writes `rounds` transactions, each with one batch per partition in `ids`. */
async function writeJournal(
  store: Store,
  ids: number[],
  rounds: number,
  eventsPerBatch = 3,
  writers = new Map(ids.map((id) => [id, new JournalWriter(id)])),
): Promise<Map<number, JournalWriter>> {
  for (let r = 0; r < rounds; r++) {
    await store.append(ids.map((id) => writers.get(id)!.nextBatch(eventsPerBatch)));
  }
  return writers;
}

function readAll(store: Store, id: number, fromSeq = 1): Batch[] {
  return [...store.readJournal(id, fromSeq)].map((r) => r.batch);
}

/** Reads a partition's journal until it throws; returns what it read and the error. */
function readUntilError(store: Store, id: number, fromSeq = 1): { read: Batch[]; error: unknown } {
  const read: Batch[] = [];
  try {
    for (const r of store.readJournal(id, fromSeq)) read.push(r.batch);
  } catch (error) {
    return { read, error };
  }
  return { read, error: null };
}

function flipByte(record: Buffer, at: number): Buffer {
  const copy = Buffer.from(record);
  copy[at] = copy[at]! ^ 0x5a;
  return copy;
}

describe("journal", () => {
  it("appends and reads back each partition's batches; lastSeq per partition", async () => {
    const dir = tempDir();
    let store = openStore(dir);
    // Partition 2 stays empty; 0 and 1 sit next to each other in key order.
    const writers = await writeJournal(store, [0, 1, 3], 6);
    for (const [id, w] of writers) {
      const records = [...store.readJournal(id)];
      expect(records.map((r) => r.batch)).toEqual(w.batches);
      for (const r of records) expect(r.bytes).toBeGreaterThan(5);
      expect(store.lastSeq(id)).toBe(w.partition.seq);
      expect(store.rawJournalKeys(id)).toEqual(w.batches.map((b) => [id, b.lastSeq]));
    }
    expect(store.lastSeq(2)).toBe(0);
    expect(readAll(store, 2)).toEqual([]);

    // Durable: a new store on the directory reads the same.
    await closeStore(store);
    store = openStore(dir);
    for (const [id, w] of writers) {
      expect(readAll(store, id)).toEqual(w.batches);
      expect(store.lastSeq(id)).toBe(w.partition.seq);
      // Replaying the journal gives the partition that wrote it.
      const r = recoverPartition(store, id, config, { fromEmpty: true });
      expect(digestPartition(r.partition)).toBe(digestPartition(w.partition));
      expect(r.eventsReplayed).toBe(w.partition.seq);
    }
  });

  it("a batch that spans many events and kilobytes round-trips", async () => {
    const store = openStore(tempDir());
    const w = new JournalWriter(1);
    const big = w.nextBatch(5000);
    await store.append([big]);
    expect(readAll(store, 1)).toEqual([big]);
    expect(encodeBatch(big).length).toBeGreaterThan(64 * 1024);
  });

  it("reads from the middle of a batch: the batch holding fromSeq comes first", async () => {
    const store = openStore(tempDir());
    const writers = await writeJournal(store, [1, 2], 5, 4);
    const w = writers.get(2)!;
    const last = w.partition.seq;
    for (let fromSeq = 1; fromSeq <= last + 1; fromSeq++) {
      const read = readAll(store, 2, fromSeq);
      const expected = w.batches.filter((b) => b.lastSeq >= fromSeq);
      expect(read).toEqual(expected);
      if (read.length > 0) {
        expect(read[0]!.firstSeq).toBeLessThanOrEqual(fromSeq);
        expect(read[0]!.lastSeq).toBeGreaterThanOrEqual(fromSeq);
      }
    }
    expect(readAll(store, 2, last + 1)).toEqual([]);
  });

  it("a damaged record throws CorruptionError naming the partition, its seq and the last good seq", async () => {
    const store = openStore(tempDir());
    const writers = await writeJournal(store, [0, 1, 2], 5);
    const keys = store.rawJournalKeys(1);
    expect(keys).toHaveLength(5);
    for (const [k, key] of keys.entries()) {
      const original = store.rawGetJournal(key)!;
      // The format byte, a checksum byte, the first and the last payload byte.
      for (const at of [0, 2, 5, original.length - 1]) {
        await store.rawPutJournal(key, flipByte(original, at));
        const { read, error } = readUntilError(store, 1);
        expect(error, `record ${k}, byte ${at}`).toBeInstanceOf(CorruptionError);
        const e = error as CorruptionError;
        expect(e.partition).toBe(1);
        expect(e.seq).toBe(key[1]);
        expect(e.lastGoodSeq).toBe(k === 0 ? 0 : keys[k - 1]![1]);
        expect(e.what).toBe("journal");
        expect(e.message).toContain(`partition 1 at seq ${key[1]}`);
        // Every record before the damaged one was read, intact.
        expect(read).toEqual(writers.get(1)!.batches.slice(0, k));
        // Its neighbours are unaffected.
        expect(readAll(store, 0)).toEqual(writers.get(0)!.batches);
        expect(readAll(store, 2)).toEqual(writers.get(2)!.batches);
      }
      await store.rawPutJournal(key, original);
      expect(readAll(store, 1)).toEqual(writers.get(1)!.batches);
    }
    // Recovery reports the damage the same way.
    const key = keys[3]!;
    await store.rawPutJournal(key, flipByte(store.rawGetJournal(key)!, 9));
    expect(() => recoverPartition(store, 1, config, { fromEmpty: true })).toThrow(CorruptionError);
  });

  it("a record whose checksum holds but that is not a batch of its key is CorruptionError", async () => {
    const store = openStore(tempDir());
    const writers = await writeJournal(store, [0, 1], 4);
    const keys = store.rawJournalKeys(1);
    const key = keys[2]!;
    const lastGoodSeq = keys[1]![1];
    const b0 = writers.get(0)!.batches;
    const cases: [string, Buffer][] = [
      ["a truncated batch", frame(encodeBatch(writers.get(1)!.batches[2]!).subarray(0, 20))],
      ["another partition's batch", frame(encodeBatch(b0[2]!))],
      ["a batch with other seqs", frame(encodeBatch(writers.get(1)!.batches[3]!))],
    ];
    for (const [what, record] of cases) {
      await store.rawPutJournal(key, record);
      const { error } = readUntilError(store, 1);
      expect(error, what).toBeInstanceOf(CorruptionError);
      expect((error as CorruptionError).seq, what).toBe(key[1]);
      expect((error as CorruptionError).lastGoodSeq, what).toBe(lastGoodSeq);
    }
  });

  it("a record whose checksum holds but whose string is not UTF-8 is CorruptionError", async () => {
    const store = openStore(tempDir());
    await writeJournal(store, [1], 3);
    const key = store.rawJournalKeys(1)[1]!;
    const payload = Uint8Array.from(
      encodeBatch({
        partition: 1,
        firstSeq: 4,
        lastSeq: key[1],
        epoch: 1,
        events: Array.from({ length: key[1] - 3 }, (_, i) => ({
          type: EventType.StockReceived,
          seq: 4 + i,
          timeMs: startMs,
          productId: "é",
          warehouseId: "w0",
          quantity: 1,
        })),
      }),
    );
    payload[payload.indexOf(0xc3)] = 0xff; // the first byte of "é"
    await store.rawPutJournal(key, frame(payload));
    const { error } = readUntilError(store, 1);
    expect(error).toBeInstanceOf(CorruptionError);
    expect((error as CorruptionError).seq).toBe(key[1]);
  });

  it("a missing record (a gap) is detected, in the middle and at the start", async () => {
    const store = openStore(tempDir());
    const writers = await writeJournal(store, [0, 3], 6);
    const w = writers.get(3)!;
    const keys = store.rawJournalKeys(3);
    const saved = keys.map((k) => [k, store.rawGetJournal(k)!] as const);

    // Delete records 2.. then put back 3..: record 2 is missing.
    expect(await store.truncateFrom(3, keys[2]![1])).toBe(4);
    for (const [k, v] of saved.slice(3)) await store.rawPutJournal(k, v);
    let { read, error } = readUntilError(store, 3);
    expect(error).toBeInstanceOf(CorruptionError);
    expect(error).toMatchObject({ partition: 3, seq: keys[3]![1], lastGoodSeq: keys[1]![1] });
    expect((error as Error).message).toContain("gap");
    expect(read).toEqual(w.batches.slice(0, 2));
    // From a seq after the gap, the journal reads fine.
    expect(readAll(store, 3, keys[2]![1] + 1)).toEqual(w.batches.slice(3));

    // The first record missing: the journal starts after seq 1.
    await store.truncateFrom(3, 1);
    for (const [k, v] of saved.slice(1)) await store.rawPutJournal(k, v);
    ({ read, error } = readUntilError(store, 3));
    expect(error).toMatchObject({ partition: 3, seq: keys[1]![1], lastGoodSeq: 0 });
    expect(read).toEqual([]);
    expect(() => recoverPartition(store, 3, config, { fromEmpty: true })).toThrow(CorruptionError);
    // The other partition never noticed.
    expect(readAll(store, 0)).toEqual(writers.get(0)!.batches);
  });

  it("truncateFrom deletes the records ending at or after a seq, in one partition", async () => {
    const store = openStore(tempDir());
    const writers = await writeJournal(store, [1, 2], 6, 3);
    const w = writers.get(1)!;
    const keys = store.rawJournalKeys(1);
    // A seq inside the 4th batch: that batch goes too.
    const inside = w.batches[3]!.firstSeq + 1;
    expect(await store.truncateFrom(1, inside)).toBe(3);
    expect(store.rawJournalKeys(1)).toEqual(keys.slice(0, 3));
    expect(store.lastSeq(1)).toBe(w.batches[2]!.lastSeq);
    expect(readAll(store, 1)).toEqual(w.batches.slice(0, 3));
    expect(readAll(store, 2)).toEqual(writers.get(2)!.batches);
    expect(await store.truncateFrom(1, w.partition.seq + 100)).toBe(0);
    expect(await store.truncateFrom(1, 1)).toBe(3);
    expect(store.lastSeq(1)).toBe(0);
    expect(store.lastSeq(2)).toBe(writers.get(2)!.partition.seq);
  });
});

describe("snapshots", () => {
  /** A journal of 3 x 10 batches for partitions 0 and 1, with a snapshot of
   * each after the first 10 and after 20. */
  async function journalWithSnapshots(store: Store) {
    const writers = await writeJournal(store, [0, 1], 10);
    const seqs: number[] = [];
    for (let stage = 0; stage < 2; stage++) {
      for (const id of [0, 1]) {
        const r = await snapshotPartition(store, id, config);
        expect(r.written).toBe(true);
        if (id === 1) seqs.push(r.seq);
      }
      await writeJournal(store, [0, 1], 10, 3, writers);
    }
    return { writers, seqs, live: digestPartition(writers.get(1)!.partition) };
  }

  it("putSnapshot keeps the two newest of a partition", async () => {
    const store = openStore(tempDir());
    const writers = new Map([0, 1].map((id) => [id, new JournalWriter(id)]));
    const seqs: number[] = [];
    for (let i = 0; i < 5; i++) {
      await writeJournal(store, [0, 1], 2, 3, writers);
      for (const id of [0, 1]) {
        const p = writers.get(id)!.partition;
        await store.putSnapshot(id, p.seq, encodeSnapshot(p));
      }
      seqs.push(writers.get(1)!.partition.seq);
      const kept = seqs.slice(-2).map((s) => [1, s]);
      expect(store.rawSnapshotKeys(1)).toEqual(kept);
    }
    expect(store.rawSnapshotKeys(0)).toHaveLength(2);
    const newestFirst = [...store.snapshotsNewestFirst(1)];
    expect(newestFirst.map((s) => (s instanceof CorruptionError ? -1 : s.seq))).toEqual(
      seqs.slice(-2).reverse(),
    );
  });

  it("snapshotPartition writes nothing when nothing was journaled since", async () => {
    const store = openStore(tempDir());
    expect(await snapshotPartition(store, 1, config)).toMatchObject({ seq: 0, written: false });
    const writers = await writeJournal(store, [1], 4);
    const first = await snapshotPartition(store, 1, config);
    expect(first).toMatchObject({ seq: writers.get(1)!.partition.seq, written: true });
    expect(first.bytes).toBeGreaterThan(0);
    expect(await snapshotPartition(store, 1, config)).toMatchObject({
      seq: first.seq,
      written: false,
    });
  });

  it("recovery uses the newest snapshot and replays the journal after it", async () => {
    const store = openStore(tempDir());
    const { writers, seqs, live } = await journalWithSnapshots(store);
    const skipped: CorruptionError[] = [];
    const r = recoverPartition(store, 1, config, { onSkippedSnapshot: (e) => skipped.push(e) });
    expect(skipped).toEqual([]);
    expect(r.snapshotSeq).toBe(seqs[1]);
    expect(r.eventsReplayed).toBe(writers.get(1)!.partition.seq - seqs[1]!);
    expect(digestPartition(r.partition)).toBe(live);
    // An older state: the snapshot at or before the limit, then the journal.
    const until = seqs[1]! - 2;
    const older = recoverPartition(store, 1, config, { untilSeq: until });
    expect(older.snapshotSeq).toBe(seqs[0]);
    expect(digestPartition(older.partition)).toBe(
      digestPartition(
        recoverPartition(store, 1, config, { fromEmpty: true, untilSeq: until }).partition,
      ),
    );
  });

  it("a damaged newest snapshot is skipped (and reported): the older one, then the journal", async () => {
    const store = openStore(tempDir());
    const { seqs, live } = await journalWithSnapshots(store);
    const [older, newer] = [seqs[0]!, seqs[1]!];
    const newerBytes = store.rawGetSnapshot([1, newer])!;
    await store.rawPutSnapshot([1, newer], flipByte(newerBytes, newerBytes.length >> 1));

    let skipped: CorruptionError[] = [];
    let r = recoverPartition(store, 1, config, { onSkippedSnapshot: (e) => skipped.push(e) });
    expect(skipped).toHaveLength(1);
    expect(skipped[0]).toBeInstanceOf(CorruptionError);
    expect(skipped[0]).toMatchObject({ partition: 1, seq: newer, what: "snapshot" });
    expect(r.snapshotSeq).toBe(older);
    expect(digestPartition(r.partition)).toBe(live);
    // Partition 0's snapshots are untouched.
    expect(recoverPartition(store, 0, config).snapshotSeq).toBeGreaterThan(older);

    const olderBytes = store.rawGetSnapshot([1, older])!;
    await store.rawPutSnapshot([1, older], flipByte(olderBytes, 1));
    skipped = [];
    r = recoverPartition(store, 1, config, { onSkippedSnapshot: (e) => skipped.push(e) });
    expect(skipped.map((e) => [e.partition, e.seq])).toEqual([
      [1, newer],
      [1, older],
    ]);
    expect(r.snapshotSeq).toBe(0);
    expect(digestPartition(r.partition)).toBe(live);
  });

  it("a snapshot with a good checksum but the wrong content is skipped", async () => {
    const store = openStore(tempDir());
    const { seqs, live } = await journalWithSnapshots(store);
    const newer = seqs[1]!;
    const zeroKey = store.rawSnapshotKeys(0).at(-1)!;
    const cases: [string, Buffer][] = [
      ["garbage", frame(Uint8Array.of(0x08, 0x01, 0x2a, 0x7f, 0x01))],
      ["partition 0's snapshot", store.rawGetSnapshot(zeroKey)!],
      ["its older snapshot", store.rawGetSnapshot([1, seqs[0]!])!],
    ];
    const original = store.rawGetSnapshot([1, newer])!;
    for (const [what, bytes] of cases) {
      await store.rawPutSnapshot([1, newer], bytes);
      const skipped: CorruptionError[] = [];
      const r = recoverPartition(store, 1, config, { onSkippedSnapshot: (e) => skipped.push(e) });
      expect(
        skipped.map((e) => [e.partition, e.seq]),
        what,
      ).toEqual([[1, newer]]);
      expect(r.snapshotSeq, what).toBe(seqs[0]);
      expect(digestPartition(r.partition), what).toBe(live);
    }
    await store.rawPutSnapshot([1, newer], original);
    expect(recoverPartition(store, 1, config).snapshotSeq).toBe(newer);
  });
});

describe("the engine on a damaged data directory", () => {
  const engineOptions = (dataDir: string) => ({
    dataDir,
    workerCount: 0,
    partitionCount,
    holdDurationMs,
    // The real clock (worker threads read it too); holds last an hour, so
    // none expires between runs.
    manualPulse: true,
  });

  /** Runs commands through an engine, one journal transaction each. */
  async function fill(dataDir: string): Promise<Record<number, string>> {
    const engine = await openEngine(engineOptions(dataDir));
    for (let i = 0; i < 40; i++) {
      const productId = `sku-${i % 8}`;
      await engine.receiveStock({ productId, warehouseId: "w0", quantity: 5 + i });
      const r = await engine.reserve({ lines: [{ productId, warehouseId: "w0", quantity: 2 }] });
      if (r.ok && i % 3 === 0) await engine.release({ holdId: r.reservation.holdId });
      if (r.ok && i % 3 === 1) await engine.fulfil({ holdId: r.reservation.holdId });
    }
    const digests = await engine.digests();
    await closeEngine(engine);
    return digests;
  }

  /** Damages the middle record of partition `id`; returns its key and the
   * state of the partition just before it. */
  async function damage(dataDir: string, id: number) {
    const store = openStore(dataDir);
    const keys = store.rawJournalKeys(id);
    expect(keys.length).toBeGreaterThanOrEqual(3);
    const k = keys.length >> 1;
    const key = keys[k]!;
    const lastGoodSeq = keys[k - 1]![1];
    const before = recoverPartition(store, id, config, { fromEmpty: true, untilSeq: lastGoodSeq });
    expect(before.partition.seq).toBe(lastGoodSeq);
    await store.rawPutJournal(key, flipByte(store.rawGetJournal(key)!, 7));
    await closeStore(store);
    return {
      key,
      lastGoodSeq,
      recordsFromDamage: keys.length - k,
      before: digestPartition(before.partition),
    };
  }

  /** Every journal record of the directory, keys and bytes. */
  async function journalDump(dataDir: string): Promise<string> {
    const store = openStore(dataDir);
    const out = [];
    for (let id = 0; id < partitionCount; id++) {
      for (const k of store.rawJournalKeys(id)) {
        out.push(`${k}:${store.rawGetJournal(k)!.toString("hex")}`);
      }
    }
    await closeStore(store);
    return out.join("\n");
  }

  it.each([0, 2])(
    "refuses to start (workerCount %i) with StartupError naming partition and seq",
    async (workerCount) => {
      const dir = tempDir();
      await fill(dir);
      const { key } = await damage(dir, 1);
      const journalBefore = await journalDump(dir);
      const failed = await openEngine({ ...engineOptions(dir), workerCount }).then(
        () => null,
        (err: unknown) => err,
      );
      expect(failed).toBeInstanceOf(StartupError);
      expect(failed).toMatchObject({ partition: 1, seq: key[1] });
      expect((failed as Error).message).toContain(`partition 1 at seq ${key[1]}`);
      // It did not start: nothing was truncated or written.
      expect(await journalDump(dir)).toBe(journalBefore);
    },
  );

  it.each([0, 2])(
    "with truncateDamagedTail (workerCount %i) starts with exactly the state before the damaged record",
    async (workerCount) => {
      const dir = tempDir();
      const original = await fill(dir);
      const { lastGoodSeq, recordsFromDamage, before } = await damage(dir, 1);

      let engine = await openEngine({
        ...engineOptions(dir),
        workerCount,
        truncateDamagedTail: true,
      });
      const report = engine.recovered.find((r) => r.partition === 1)!;
      expect(report.truncatedRecords).toBe(recordsFromDamage);
      expect(report.seq).toBe(lastGoodSeq);
      const digests = await engine.digests();
      expect(digests[1]).toBe(before);
      for (const id of [0, 2, 3]) expect(digests[id]).toBe(original[id]);
      await engine.checkInvariants();

      // It goes on from there, and the journal replays cleanly.
      const productId = productsOf(1, 1)[0]!;
      expect((await engine.receiveStock({ productId, warehouseId: "w9", quantity: 4 })).ok).toBe(
        true,
      );
      const after = await engine.digests();
      await closeEngine(engine);
      const store = openStore(dir);
      expect(store.lastSeq(1)).toBe(lastGoodSeq + 1);
      expect(
        digestPartition(recoverPartition(store, 1, config, { fromEmpty: true }).partition),
      ).toBe(after[1]);
      await closeStore(store);
      engine = await openEngine(engineOptions(dir));
      expect(await engine.digests()).toEqual(after);
    },
  );

  it("starts past a damaged snapshot, reporting it, with the same state", async () => {
    const dir = tempDir();
    const original = await fill(dir);
    const store = openStore(dir);
    const r = await snapshotPartition(store, 2, config);
    expect(r.written).toBe(true);
    const bytes = store.rawGetSnapshot([2, r.seq])!;
    await store.rawPutSnapshot([2, r.seq], flipByte(bytes, bytes.length - 1));
    await closeStore(store);
    const engine = await openEngine(engineOptions(dir));
    const report = engine.recovered.find((x) => x.partition === 2)!;
    expect(report.skippedSnapshots).toHaveLength(1);
    expect(report.skippedSnapshots[0]).toContain(`partition 2 at seq ${r.seq}`);
    expect(report.snapshotSeq).toBe(0);
    expect(await engine.digests()).toEqual(original);
  });

  it("refuses a data directory of another partition count with DataDirError", async () => {
    const dir = tempDir();
    const original = await fill(dir);
    const failed = await openEngine({ ...engineOptions(dir), partitionCount: 8 }).then(
      () => null,
      (err: unknown) => err,
    );
    expect(failed).toBeInstanceOf(DataDirError);
    // A clear message: the directory, what it has, what was asked for.
    const message = (failed as Error).message;
    expect(message).toContain(dir);
    expect(message).toMatch(/partition/i);
    expect(message).toMatch(new RegExp(`\\b${partitionCount}\\b[^]*\\b8\\b`));
    // The directory is as it was; without a count it opens with its own.
    const { partitionCount: _, ...withoutCount } = engineOptions(dir);
    const engine = await openEngine(withoutCount);
    expect(engine.partitionCount).toBe(partitionCount);
    expect(await engine.digests()).toEqual(original);
  });
});
