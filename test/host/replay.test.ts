import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterEach, describe, expect, it } from "vitest";
import {
  digestPartition,
  EventType,
  type HoldView,
  type Line,
  limits,
  type PartitionConfig,
  partitionOf,
  ReleaseReason,
} from "../../src/engine/index.ts";
import { Engine, type EngineOptions } from "../../src/host/index.ts";
import {
  encodeSnapshot,
  recoverPartition,
  Store,
  snapshotPartition,
} from "../../src/persistence/index.ts";

// Replay is deterministic: the journal an engine wrote under load, with holds
// expiring through the real pulse while commands run, gives back exactly the
// live state, from empty, from snapshots, and through a reopened engine.

const partitionCount = 8;
const holdDurationMs = 100;
const longHoldMs = 3_600_000;

const dirs: string[] = [];
const engines: Engine[] = [];
const stores: Store[] = [];

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), "stockd-replay-"));
  dirs.push(dir);
  return dir;
}

async function openEngine(options: EngineOptions): Promise<Engine> {
  const engine = await Engine.open(options);
  engines.push(engine);
  return engine;
}

async function closeEngine(engine: Engine): Promise<void> {
  engines.splice(engines.indexOf(engine), 1);
  await engine.close();
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

afterEach(async () => {
  for (const e of engines.splice(0)) await e.close();
  for (const s of stores.splice(0)) await s.close();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

/** A small seeded PRNG (xorshift32): the same run for the same seed. */
function prng(seed: number): (n: number) => number {
  let s = seed >>> 0 || 1;
  return (n) => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) % n;
  };
}

/** Digests of every partition recovered from the store. */
function recoveredDigests(
  store: Store,
  config: PartitionConfig,
  options: Parameters<typeof recoverPartition>[3],
) {
  const out: Record<number, string> = {};
  const snapshotSeqs: number[] = [];
  const replayed: number[] = [];
  for (let id = 0; id < partitionCount; id++) {
    const r = recoverPartition(store, id, config, options);
    r.partition.checkInvariants();
    out[id] = digestPartition(r.partition);
    snapshotSeqs.push(r.snapshotSeq);
    replayed.push(r.eventsReplayed);
  }
  return { digests: out, snapshotSeqs, replayed };
}

/** Counts the journal's expiries (HoldReleased, reason EXPIRED), by hold. */
function expiredInJournal(store: Store): Map<number, number> {
  const out = new Map<number, number>();
  for (let id = 0; id < partitionCount; id++) {
    for (const { batch } of store.readJournal(id)) {
      for (const e of batch.events) {
        if (e.type === EventType.HoldReleased && e.reason === ReleaseReason.Expired) {
          out.set(e.holdId, e.timeMs);
        }
      }
    }
  }
  return out;
}

const products = Array.from({ length: 24 }, (_, i) => `item-${i}`);
const warehouses = ["w-a", "w-b", "w-c"];

interface Held {
  holdId: number;
  lines: Line[];
  long: boolean;
}

describe("replay equality", () => {
  it("thousands of commands with holds expiring meanwhile: replay, snapshots and reopen give the live state", async () => {
    const dir = tempDir();
    const engineOptions: EngineOptions = {
      dataDir: dir,
      workerCount: 2,
      partitionCount,
      durability: "fsync",
      holdDurationMs,
      wheelTickMs: 5,
      snapshotEveryEvents: 0,
    };
    const config: PartitionConfig = {
      partitionCount,
      holdDurationMs,
      idempotencyWindowMs: limits.idempotencyWindowMsDefault,
      wheelTickMs: 5,
    };
    const engine = await openEngine(engineOptions);
    const counts = { commands: 0, reserved: 0, refused: 0, released: 0, fulfilled: 0 };
    const open = new Map<number, Held>();
    const longOpen = new Set<number>();
    const commandCount = 10_000;
    const loops = 64;

    async function loop(seed: number): Promise<void> {
      const rnd = prng(seed);
      while (counts.commands < commandCount) {
        counts.commands++;
        const productId = products[rnd(products.length)]!;
        const roll = rnd(100);
        if (roll < 25) {
          const r = await engine.receiveStock({
            productId,
            warehouseId: warehouses[rnd(3)]!,
            quantity: 1 + rnd(20),
          });
          expect(r.ok).toBe(true);
        } else if (roll < 30) {
          const delta = rnd(2) === 0 ? 1 + rnd(5) : -(1 + rnd(5));
          await engine.adjustStock({
            productId,
            warehouseId: warehouses[rnd(3)]!,
            delta,
            reason: delta > 0 ? 5 : 2,
          });
        } else if (roll < 70) {
          // One to three warehouses of one product (one partition), or now
          // and then two products, which may sit in two partitions.
          const lines: Line[] = [];
          const first = rnd(3);
          const n = 1 + rnd(3);
          for (let k = 0; k < n; k++) {
            lines.push({
              productId,
              warehouseId: warehouses[(first + k) % 3]!,
              quantity: 1 + rnd(4),
            });
          }
          if (rnd(20) === 0) {
            lines.push({
              productId: products[rnd(products.length)]!,
              warehouseId: "w-x",
              quantity: 1,
            });
          }
          const long = rnd(40) === 0;
          const keyed = rnd(3) === 0;
          const r = await engine.reserve({
            lines,
            ...(keyed ? { requestId: `req-${rnd(400)}` } : {}),
            ...(long
              ? { holdDurationMs: longHoldMs }
              : rnd(2) === 0
                ? { holdDurationMs: 30 + rnd(171) }
                : {}),
          });
          if (r.ok) {
            counts.reserved++;
            const id = r.reservation.holdId;
            if (!r.reservation.replayed) {
              open.set(id, { holdId: id, lines, long });
              if (long) longOpen.add(id);
            }
          } else counts.refused++;
        } else {
          const ids = [...open.keys()];
          if (ids.length === 0) continue;
          const held = open.get(ids[rnd(ids.length)]!)!;
          open.delete(held.holdId);
          if (roll < 85) {
            const r = await engine.release({ holdId: held.holdId });
            if (r.ok) counts.released++;
            if (r.ok || held.long) longOpen.delete(held.holdId);
          } else {
            const r = await engine.fulfil({
              holdId: held.holdId,
              ...(rnd(2) === 0
                ? { quantities: held.lines.map((l) => Math.floor(l.quantity / 2)) }
                : {}),
            });
            if (r.ok) counts.fulfilled++;
            if (r.ok || held.long) longOpen.delete(held.holdId);
          }
        }
      }
    }

    // Snapshots taken while commands run, from the store alone: on a
    // snapshot thread, and here through snapshotPartition.
    const snapshotStore = openStore(dir);
    const snapshots = (async () => {
      let taken = 0;
      for (const share of [0.25, 0.45, 0.65, 0.85]) {
        while (counts.commands < commandCount * share) await sleep(10);
        if (taken % 2 === 0) await engine.snapshot();
        else
          for (let id = 0; id < partitionCount; id++)
            await snapshotPartition(snapshotStore, id, config);
        taken++;
      }
      return taken;
    })();

    await Promise.all(Array.from({ length: loops }, (_, i) => loop(1000 + i)));
    const snapshotsTaken = await snapshots;
    await closeStore(snapshotStore);

    // The short holds expire through the pulse; wait for the last of them,
    // so that nothing changes between the digests and close.
    for (let i = 0; (await engine.stats()).holds > longOpen.size; i++) {
      expect(i, "short holds never expired").toBeLessThan(600);
      await sleep(50);
    }
    const stats = await engine.stats();
    await engine.checkInvariants();
    const live = await engine.digests();
    await closeEngine(engine);
    process.stdout.write(
      `replay: ${JSON.stringify(counts)}; expired by the pulse ${stats.expired}; ` +
        `${stats.eventsJournaled} events in ${stats.commits} commits; ${snapshotsTaken} snapshot rounds\n`,
    );
    expect(counts.reserved).toBeGreaterThan(500);
    expect(counts.released + counts.fulfilled).toBeGreaterThan(100);
    expect(stats.expired).toBeGreaterThan(100);
    expect(Object.keys(live)).toHaveLength(partitionCount);

    const store = openStore(dir);
    // The expiries are in the journal, as releases with reason EXPIRED.
    expect(expiredInJournal(store).size).toBe(stats.expired);

    // (a) From empty, partition by partition.
    const fromEmpty = recoveredDigests(store, config, { fromEmpty: true });
    expect(fromEmpty.digests).toEqual(live);
    expect(fromEmpty.replayed).toEqual(
      Array.from({ length: partitionCount }, (_, i) => stats.seqs[i]),
    );

    // (b) From the snapshots taken under load, then the journal after them.
    const fromMidRun = recoveredDigests(store, config, {});
    expect(fromMidRun.digests).toEqual(live);
    expect(fromMidRun.snapshotSeqs.some((s) => s > 0)).toBe(true);
    // From a snapshot half-way, whatever the timing of those: the newer
    // snapshots damaged (recovery skips them), one put at half the seq.
    for (let id = 0; id < partitionCount; id++) {
      const seq = stats.seqs[id]!;
      if (seq < 2) continue;
      const newer = store.rawSnapshotKeys(id);
      for (const key of newer) {
        const bytes = Buffer.from(store.rawGetSnapshot(key)!);
        bytes[bytes.length - 1]! ^= 0xff;
        await store.rawPutSnapshot(key, bytes);
      }
      const mid = Math.floor(seq / 2);
      const half = recoverPartition(store, id, config, { fromEmpty: true, untilSeq: mid });
      await store.putSnapshot(id, mid, encodeSnapshot(half.partition));
      const skipped: number[] = [];
      const r = recoverPartition(store, id, config, {
        onSkippedSnapshot: (e) => skipped.push(e.seq),
      });
      expect(skipped.every((x) => x > mid)).toBe(true);
      expect(skipped.length).toBe(newer.filter(([, x]) => x > mid).length);
      expect(r.snapshotSeq).toBe(mid);
      expect(r.eventsReplayed).toBe(seq - mid);
      expect(digestPartition(r.partition)).toBe(live[id]);
    }
    // And from snapshots of the final state.
    for (let id = 0; id < partitionCount; id++) {
      const r = await snapshotPartition(store, id, config);
      expect(r.seq).toBe(stats.seqs[id]);
    }
    const fromFinal = recoveredDigests(store, config, {});
    expect(fromFinal.digests).toEqual(live);
    expect(fromFinal.replayed).toEqual(Array.from({ length: partitionCount }, () => 0));
    await closeStore(store);

    // (c) A reopened engine.
    const reopened = await openEngine(engineOptions);
    expect(reopened.recovered.map((r) => r.seq)).toEqual(
      Array.from({ length: partitionCount }, (_, i) => stats.seqs[i]),
    );
    expect(reopened.recovered.reduce((n, r) => n + r.expiredAtStart, 0)).toBe(0);
    expect(await reopened.digests()).toEqual(live);
    await reopened.checkInvariants();
  });
});

describe("expiry at start-up", () => {
  const config: PartitionConfig = { partitionCount, holdDurationMs: 1000 };

  /** Product ids in distinct partitions. */
  const spread = (() => {
    const out: string[] = [];
    const seen = new Set<number>();
    for (let i = 0; out.length < partitionCount; i++) {
      const p = partitionOf(`sku-${i}`, partitionCount);
      if (!seen.has(p)) {
        seen.add(p);
        out.push(`sku-${i}`);
      }
    }
    return out;
  })();

  /** Reserves `n` holds of `holdDurationMs` over all partitions; some multi-line. */
  async function reserveMany(engine: Engine, n: number, duration: number): Promise<number[]> {
    const ids: number[] = [];
    for (let i = 0; i < n; i++) {
      const productId = spread[i % spread.length]!;
      const lines: Line[] = [{ productId, warehouseId: "w1", quantity: 1 + (i % 3) }];
      if (i % 2 === 0) lines.push({ productId, warehouseId: "w2", quantity: 1 });
      const r = await engine.reserve({ lines, holdDurationMs: duration });
      if (!r.ok) throw new Error(r.message);
      ids.push(r.reservation.holdId);
    }
    return ids;
  }

  async function receiveEverywhere(engine: Engine): Promise<void> {
    for (const productId of spread) {
      for (const warehouseId of ["w1", "w2"]) {
        const r = await engine.receiveStock({ productId, warehouseId, quantity: 1000 });
        if (!r.ok) throw new Error(r.message);
      }
    }
  }

  async function statuses(engine: Engine, ids: number[]): Promise<string[]> {
    const views = await Promise.all(ids.map((id) => engine.hold(id)));
    return views.map((v: HoldView | null) => v?.status ?? "UNKNOWN");
  }

  it("in-process: holds past their deadline while closed expire at start-up, journaled", async () => {
    const dir = tempDir();
    const t0 = 1_763_900_000_000;
    let nowMs = t0;
    const options: EngineOptions = {
      dataDir: dir,
      workerCount: 0,
      partitionCount,
      holdDurationMs: 1000,
      manualPulse: true,
      now: () => nowMs,
    };
    let engine = await openEngine(options);
    await receiveEverywhere(engine);
    const short = await reserveMany(engine, 20, 1000);
    const long = await reserveMany(engine, 4, longHoldMs);
    const releasedId = short.pop()!;
    expect((await engine.release({ holdId: releasedId })).ok).toBe(true);
    await closeEngine(engine);

    // Reopen after the deadline.
    nowMs = t0 + 5000;
    engine = await openEngine(options);
    expect(engine.recovered.reduce((n, r) => n + r.expiredAtStart, 0)).toBe(short.length);
    for (const r of engine.recovered) {
      const here = short.filter((id) => id % limits.partitionCountMax === r.partition).length;
      expect(r.expiredAtStart, `partition ${r.partition}`).toBe(here);
    }
    expect(new Set(await statuses(engine, short))).toEqual(new Set(["EXPIRED"]));
    expect(await statuses(engine, long)).toEqual(long.map(() => "OPEN"));
    expect(await statuses(engine, [releasedId])).toEqual(["RELEASED"]);
    const afterStart = await engine.digests();
    await engine.checkInvariants();
    await closeEngine(engine);

    // Journaled: the store holds the expiries, at the start-up time.
    const store = openStore(dir);
    const expired = expiredInJournal(store);
    expect([...expired.keys()].sort()).toEqual([...short].sort());
    for (const t of expired.values()) expect(t).toBe(t0 + 5000);
    const replayed = recoveredDigests(store, config, { fromEmpty: true });
    expect(replayed.digests).toEqual(afterStart);
    await closeStore(store);

    // A third start replays them as EXPIRED from the journal.
    nowMs = t0 + 6000;
    engine = await openEngine(options);
    expect(engine.recovered.reduce((n, r) => n + r.expiredAtStart, 0)).toBe(0);
    expect(new Set(await statuses(engine, short))).toEqual(new Set(["EXPIRED"]));
    expect(await engine.digests()).toEqual(afterStart);
  });

  it("worker threads: holds past their deadline while closed expire at start-up, journaled", async () => {
    const dir = tempDir();
    const options: EngineOptions = {
      dataDir: dir,
      workerCount: 2,
      partitionCount,
      holdDurationMs: 1000,
      snapshotEveryEvents: 0,
    };
    let engine = await openEngine(options);
    await receiveEverywhere(engine);
    const short = await reserveMany(engine, 16, 400);
    const long = await reserveMany(engine, 4, longHoldMs);
    await closeEngine(engine);

    // Which holds were still open at close (the pulse may have expired some
    // already), and when the last deadline passes.
    let store = openStore(dir);
    const expiredLive = expiredInJournal(store).size;
    let lastDeadlineMs = 0;
    let openShort = 0;
    for (let id = 0; id < partitionCount; id++) {
      for (const h of recoverPartition(store, id, config, {
        fromEmpty: true,
      }).partition.holdsInOrder()) {
        if (h.expireTimeMs < Date.now() + longHoldMs / 2) {
          openShort++;
          lastDeadlineMs = Math.max(lastDeadlineMs, h.expireTimeMs);
        }
      }
    }
    await closeStore(store);
    expect(openShort + expiredLive).toBe(short.length);
    await sleep(Math.max(0, lastDeadlineMs - Date.now()) + 50);

    engine = await openEngine(options);
    expect(engine.recovered.reduce((n, r) => n + r.expiredAtStart, 0)).toBe(openShort);
    expect(new Set(await statuses(engine, short))).toEqual(new Set(["EXPIRED"]));
    expect(await statuses(engine, long)).toEqual(long.map(() => "OPEN"));
    const afterStart = await engine.digests();
    await closeEngine(engine);

    store = openStore(dir);
    expect(expiredInJournal(store).size).toBe(short.length);
    expect(recoveredDigests(store, config, { fromEmpty: true }).digests).toEqual(afterStart);
    await closeStore(store);

    engine = await openEngine(options);
    expect(engine.recovered.reduce((n, r) => n + r.expiredAtStart, 0)).toBe(0);
    expect(new Set(await statuses(engine, short))).toEqual(new Set(["EXPIRED"]));
    expect(await engine.digests()).toEqual(afterStart);
  });
});
